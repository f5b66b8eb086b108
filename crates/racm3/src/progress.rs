//! How long library work reports itself: counted stages and notes for a person, without the
//! library knowing whether a terminal, a log or nothing at all receives them.

use racm3_data::Progress;

/// Receives what long work reports. The CLI draws stages as progress bars and prints notes
/// on stderr; [`Quiet`] drops everything.
pub trait Observer: Sync {
    /// A stage labelled `label` ("tokenizing", "training") that counts its items; it ends
    /// when the returned value is dropped.
    fn stage(&self, label: &str) -> Box<dyn Stage + '_>;
    /// A stage with no count, such as a download; it ends when dropped.
    fn waiting(&self, label: &str) -> Box<dyn Stage + '_> {
        self.stage(label)
    }
    /// A line for the person running the work: what was fetched, what was skipped.
    fn note(&self, line: &str);
}

/// A stage of `total` items of which `done` are done already (a resumed run's steps).
pub fn stage_from<'a>(
    observer: &'a dyn Observer,
    label: &str,
    total: u64,
    done: u64,
) -> Box<dyn Stage + 'a> {
    let stage = observer.stage(label);
    stage.set_total(total);
    stage.advance(done);
    stage
}

/// A running stage: a [`Progress`] count and a short status message.
pub trait Stage: Progress {
    /// Shows `text` beside the count: the latest loss, say.
    fn message(&self, _text: &str) {}
}

/// An observer that reports nothing, for library use and tests.
pub struct Quiet;

impl Observer for Quiet {
    fn stage(&self, _label: &str) -> Box<dyn Stage + '_> {
        Box::new(Quiet)
    }

    fn note(&self, _line: &str) {}
}

impl Progress for Quiet {
    fn set_total(&self, _total: u64) {}
    fn advance(&self, _n: u64) {}
}

impl Stage for Quiet {}
