use std::path::PathBuf;

/// An error from any stage, as the composed pipeline meets it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading data failed.
    #[error(transparent)]
    Data(#[from] racm3_data::Error),
    /// Tokenizing failed.
    #[error(transparent)]
    Tokenize(#[from] racm3_tokenize::Error),
    /// Retrieval failed.
    #[error(transparent)]
    Retrieve(#[from] racm3_retrieve::Error),
    /// The memory failed.
    #[error(transparent)]
    Memory(#[from] racm3_memory::Error),
    /// Training mechanics failed.
    #[error(transparent)]
    Train(#[from] racm3_train::Error),
    /// A cache file that cannot be read or written.
    #[error("{path}: {problem}")]
    Cache {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}
