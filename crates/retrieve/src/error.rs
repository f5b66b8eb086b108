use std::path::PathBuf;

/// Everything that can go wrong while encoding, training or retrieving. Each variant names
/// the file, tensor or input involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Malformed JSON in a named file.
    #[error("{path}: malformed JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        source: serde_json::Error,
    },
    /// A checkpoint that does not fit the model: a missing tensor or a wrong shape (the
    /// message names the tensor and both shapes).
    #[error("{path}: {message}")]
    Checkpoint {
        /// The weights file.
        path: PathBuf,
        /// candle's message, naming the tensor.
        message: String,
    },
    /// A tokenizer that lacks what CLIP needs, or fails on a text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A query with neither text nor an image, or an input that cannot be used.
    #[error("{0}")]
    BadInput(String),
    /// A memory whose keys were not made by this encoder.
    #[error(
        "the memory at {memory} holds {memory_layout} keys of dimension {memory_dim}, but this CLIP makes \
         {clip_layout} keys of dimension {clip_dim}: query it with the CLIP that built it"
    )]
    EncoderMismatch {
        /// The memory folder.
        memory: PathBuf,
        /// Its key dimension.
        memory_dim: usize,
        /// Its key layout's name.
        memory_layout: &'static str,
        /// The encoder's key dimension.
        clip_dim: usize,
        /// The encoder's key layout's name.
        clip_layout: &'static str,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The memory failed.
    #[error(transparent)]
    Memory(#[from] racm3_memory::Error),
    /// Reading a dataset failed.
    #[error(transparent)]
    Data(#[from] racm3_data::Error),
    /// Training infrastructure (checkpoints, logs) failed.
    #[error(transparent)]
    Train(#[from] racm3_train::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, err: candle_core::Error) -> Error {
        Error::Checkpoint {
            path: path.into(),
            message: err.to_string(),
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
