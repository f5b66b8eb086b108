use std::path::PathBuf;

/// What can go wrong while training or checkpointing; variants name the file and tensor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error("tensor computation: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A safetensors file that cannot be read or written.
    #[error("{path}: {source}")]
    Tensors {
        /// The file.
        path: PathBuf,
        /// What candle said.
        source: candle_core::Error,
    },
    /// A checkpoint lacks a tensor the model has.
    #[error("{path}: no tensor '{name}'")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// A checkpoint tensor of another shape than the model's.
    #[error("{path}: tensor '{name}' has shape {got:?}, the model expects {expected:?}")]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The file's shape.
        got: Vec<usize>,
    },
    /// A trainer state file that cannot be read.
    #[error("{path}: bad trainer state: {message}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A fresh run pointed at a folder whose trained model it would replace.
    #[error(
        "{path} is a trained model and the folder has no checkpoint to resume; a new run there would overwrite it, so train into another folder (or start from this model with --init where the command has it)"
    )]
    WouldOverwrite {
        /// The model's weights.
        path: PathBuf,
    },
    /// A plot that could not be drawn.
    #[error("{path}: could not draw the plot: {message}")]
    Plot {
        /// The PNG.
        path: PathBuf,
        /// What plotters said.
        message: String,
    },
    /// An operating-system error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file operation from the data crate.
    #[error(transparent)]
    Data(#[from] racm3_data::Error),
    /// A lock held by a thread that panicked.
    #[error("a variable store's lock was poisoned by a panic elsewhere")]
    Poisoned,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
