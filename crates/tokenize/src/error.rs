use std::path::PathBuf;

/// Everything that can go wrong while tokenizing, serializing or masking. Variants name
/// the file, id or position involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tokenizer file that cannot be read or parsed.
    #[error("{path}: not a loadable tokenizer.json: {message}")]
    TokenizerFile {
        /// The file.
        path: PathBuf,
        /// What the tokenizers crate said.
        message: String,
    },
    /// Training, encoding or decoding failed inside the tokenizers crate.
    #[error("text tokenizer: {0}")]
    Tokenizer(String),
    /// Training was given nothing to learn from.
    #[error("no text to train a tokenizer on")]
    NoTrainingText,
    /// An operating-system error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file operation from the data crate (an atomic write).
    #[error(transparent)]
    Data(#[from] racm3_data::Error),
    /// A model checkpoint that does not load: a missing tensor, a wrong shape (candle's
    /// message names the tensor and both shapes), or an unreadable file.
    #[error("{path}: {source}")]
    Model {
        /// The weights file.
        path: PathBuf,
        /// What candle said.
        source: Box<candle_core::Error>,
    },
    /// A tensor computation failed.
    #[error("tensor computation: {0}")]
    Tensor(Box<candle_core::Error>),
    /// Optimizer, checkpoint or loss-log trouble during training.
    #[error(transparent)]
    Training(Box<racm3_train::Error>),
    /// A model configuration that is unreadable or inconsistent.
    #[error("{path}: bad model config: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An image code past the codebook.
    #[error("image code {code} is outside the codebook of {codebook} entries")]
    CodeOutOfRange {
        /// The code.
        code: u32,
        /// The codebook size.
        codebook: u32,
    },
    /// A token id past the end of the id space.
    #[error("token id {id} is outside the id space of {len} ids")]
    IdOutOfRange {
        /// The id.
        id: u32,
        /// The id space's size.
        len: u32,
    },
    /// More mask sentinels than exist.
    #[error("{asked} mask sentinels asked for, only 16 exist")]
    TooManyMasks {
        /// How many were needed.
        asked: u32,
    },
    /// A token sequence that is not a well-formed document.
    #[error("not a well-formed document at token {position}: {problem}")]
    Malformed {
        /// The index of the offending token.
        position: usize,
        /// What was expected there.
        problem: String,
    },
}

// Boxed: candle's error is large, and every Result of this crate would carry its size.
impl From<candle_core::Error> for Error {
    fn from(err: candle_core::Error) -> Self {
        Error::Tensor(Box::new(err))
    }
}

impl From<racm3_train::Error> for Error {
    fn from(err: racm3_train::Error) -> Self {
        Error::Training(Box::new(err))
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
