use std::path::PathBuf;

/// An error from any stage, as the composed pipeline meets it. Stage errors are boxed:
/// they carry paths and messages, and a result should stay small.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading data failed.
    #[error(transparent)]
    Data(Box<racm3_data::Error>),
    /// Tokenizing failed.
    #[error(transparent)]
    Tokenize(Box<racm3_tokenize::Error>),
    /// Retrieval failed.
    #[error(transparent)]
    Retrieve(Box<racm3_retrieve::Error>),
    /// The memory failed.
    #[error(transparent)]
    Memory(Box<racm3_memory::Error>),
    /// Evaluation failed.
    #[error(transparent)]
    Evaluate(Box<racm3_evaluate::Error>),
    /// Training mechanics failed.
    #[error(transparent)]
    Train(Box<racm3_train::Error>),
    /// The generator failed: a checkpoint that does not load, or a tensor operation.
    #[error("generator: {0}")]
    Model(Box<candle_core::Error>),
    /// A request the pipeline cannot serve as asked.
    #[error("{0}")]
    BadInput(String),
    /// What the pipeline was doing when the error under it happened ("opening the memory
    /// in mem/emoji"), printed before it as anyhow's context is.
    #[error("{what}")]
    Context {
        /// The work that failed.
        what: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// A cache file that cannot be read or written.
    #[error("{path}: {problem}")]
    Cache {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

macro_rules! from_stage {
    ($($variant:ident: $error:ty),*) => {$(
        impl From<$error> for Error {
            fn from(err: $error) -> Self {
                Error::$variant(Box::new(err))
            }
        }
    )*};
}

impl Error {
    /// Wraps a candle error from the generator.
    pub fn model(err: candle_core::Error) -> Self {
        Error::Model(Box::new(err))
    }
}

impl From<candle_core::Error> for Error {
    fn from(err: candle_core::Error) -> Self {
        Error::model(err)
    }
}

from_stage!(
    Data: racm3_data::Error,
    Tokenize: racm3_tokenize::Error,
    Retrieve: racm3_retrieve::Error,
    Memory: racm3_memory::Error,
    Train: racm3_train::Error,
    Evaluate: racm3_evaluate::Error
);

/// Says what was being done when an error happened, as anyhow's `with_context` does.
pub(crate) trait WithContext<T> {
    /// The error, if any, under `what()`.
    fn context(self, what: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T, E: Into<Error>> WithContext<T> for Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Context {
            what: what(),
            source: Box::new(source.into()),
        })
    }
}
