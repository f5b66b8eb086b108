//! What every reader shares: the bad-sample policy, progress reporting and the result.

use rayon::prelude::*;

use crate::document::Document;
use crate::error::{Error, Result};
use crate::split::Split;

/// What a reader does with a sample it cannot read (a corrupt image, a missing caption).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnBadSample {
    /// Stop at the first bad sample with its error.
    #[default]
    Fail,
    /// Leave it out, and count it in [`Loaded::skipped`].
    Skip,
}

/// Receives progress from a reader; the CLI draws it as a progress bar. The data crate
/// knows nothing of terminals.
pub trait Progress: Sync {
    /// The number of samples expected, once known.
    fn set_total(&self, total: u64);
    /// `n` more samples were read.
    fn advance(&self, n: u64);
}

/// Progress that goes nowhere, for library use and tests.
pub struct Silent;

impl Progress for Silent {
    fn set_total(&self, _total: u64) {}
    fn advance(&self, _n: u64) {}
}

/// The documents a reader produced, and the samples it skipped with the reason for each.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Documents in the reader's order.
    pub documents: Vec<Document>,
    /// Samples left out under [`OnBadSample::Skip`].
    pub skipped: Vec<Error>,
}

impl Loaded {
    /// Captions of the documents in `split`, for training text models.
    pub fn captions(&self, split: Split) -> Vec<String> {
        self.documents
            .iter()
            .filter(|doc| doc.source.split == split)
            .map(Document::caption)
            .collect()
    }

    /// Adds one sample's outcome under `policy`.
    pub(crate) fn push(&mut self, outcome: Result<Document>, policy: OnBadSample) -> Result<()> {
        match (outcome, policy) {
            (Ok(document), _) => self.documents.push(document),
            (Err(error), OnBadSample::Skip) => self.skipped.push(error),
            (Err(error), OnBadSample::Fail) => return Err(error),
        }
        Ok(())
    }
}

/// Reads `items` on all cores with `read`, keeping the items' order.
pub(crate) fn load_parallel<T: Send>(
    items: Vec<T>,
    read: impl Fn(T) -> Result<Document> + Sync,
    policy: OnBadSample,
    progress: &dyn Progress,
) -> Result<Loaded> {
    progress.set_total(items.len() as u64);
    let outcomes: Vec<Result<Document>> = items
        .into_par_iter()
        .map(|item| {
            let outcome = read(item);
            progress.advance(1);
            outcome
        })
        .collect();
    let mut loaded = Loaded::default();
    for outcome in outcomes {
        loaded.push(outcome, policy)?;
    }
    Ok(loaded)
}
