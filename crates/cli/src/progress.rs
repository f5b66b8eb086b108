//! Progress bars for long steps. indicatif hides them when stderr is not a terminal, so
//! piped and `--json` output stays clean.

use indicatif::{ProgressBar, ProgressStyle};
use racm3::progress::{Observer, Stage};

/// A bar that shows items per second and the time left; it leaves the terminal when
/// dropped.
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar labelled `label`, waiting for its total.
    pub fn new(label: &str) -> Self {
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.to_owned());
        Self(bar)
    }

    /// A spinner for a step with no count, such as a download.
    pub fn spinner(label: &str) -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_message(label.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Self(bar)
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

impl racm3::data::Progress for Bar {
    fn set_total(&self, total: u64) {
        self.0.set_length(total);
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

impl Stage for Bar {
    fn message(&self, text: &str) {
        self.0.set_message(text.to_owned());
    }
}

/// What the library reports, on the terminal: stages as bars, notes on stderr.
pub struct Terminal;

impl Observer for Terminal {
    fn stage(&self, label: &str) -> Box<dyn Stage + '_> {
        Box::new(Bar::new(label))
    }

    fn waiting(&self, label: &str) -> Box<dyn Stage + '_> {
        Box::new(Bar::spinner(label))
    }

    fn note(&self, line: &str) {
        eprintln!("{line}");
    }
}
