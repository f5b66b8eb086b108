use std::path::PathBuf;

/// What can go wrong while evaluating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file that cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file that is not what its format requires.
    #[error("{path}: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field or entry.
        problem: String,
    },
    /// Inputs that cannot be scored together.
    #[error("{0}")]
    Mismatch(String),
}
