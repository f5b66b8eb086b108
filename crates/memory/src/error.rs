use std::path::PathBuf;

/// Everything that can go wrong in the memory. Each variant names the file, index, id or
/// shape involved.
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
    /// A file that is truncated, fails its checksum or does not parse.
    #[error("{path}: corrupt memory file: {problem}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A file written by another program or another format version.
    #[error("{path}: {found}, but this racm3 reads {supported}")]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What the file says it is.
        found: String,
        /// What this build understands.
        supported: String,
    },
    /// A folder that holds no memory.
    #[error("{path}: not a racm3 memory (no manifest); build one with `racm3 memory build`")]
    NotAMemory {
        /// The folder.
        path: PathBuf,
    },
    /// A key width no index takes (0, or past [`crate::index::MAX_KEY_DIM`]).
    #[error("{what}: keys of dimension {dim}, where an index takes 1 to {max}")]
    KeyWidth {
        /// What has the width ("memory keys", a file).
        what: String,
        /// The width asked for.
        dim: usize,
        /// The widest key an index takes.
        max: usize,
    },
    /// Vectors whose length is not a multiple of the index dimension, or a query of the
    /// wrong dimension.
    #[error("{what}: expected vectors of dimension {expected}, got {got} values")]
    Dimension {
        /// What was passed ("query", "keys to add").
        what: String,
        /// The index dimension.
        expected: usize,
        /// The number of values given.
        got: usize,
    },
    /// A search in a memory or index that holds nothing.
    #[error("{what} is empty: add documents before searching")]
    Empty {
        /// The memory or index.
        what: String,
    },
    /// k outside 1..=len.
    #[error("k = {k} is out of range: {what} holds {len} vectors, so k must be in 1..={len}")]
    BadK {
        /// The k asked for.
        k: usize,
        /// How many vectors could be returned.
        len: usize,
        /// The memory or index.
        what: String,
    },
    /// An index spec that the factory does not know.
    #[error("unknown index spec '{spec}': expected 'flat' or 'hnsw<M>' such as 'hnsw32'")]
    BadSpec {
        /// The spec given.
        spec: String,
    },
    /// An optional operation the index does not support (faiss throws here).
    #[error("{op} is not supported by the {index} index")]
    Unsupported {
        /// The operation.
        op: &'static str,
        /// The index's spec.
        index: String,
    },
    /// A document id added twice.
    #[error("document id '{id}' is already in the memory (remove it first to replace it)")]
    DuplicateId {
        /// The id.
        id: String,
    },
    /// A document id that the memory does not hold.
    #[error("no document with id '{id}' in the memory")]
    NoSuchId {
        /// The id.
        id: String,
    },
    /// A document that cannot be stored (an image that does not encode).
    #[error("document '{id}': {problem}")]
    Document {
        /// The document's id.
        id: String,
        /// What went wrong.
        problem: String,
    },
    /// Another process holds the memory's write lock.
    #[error(
        "{path}: another process is writing to this memory ({holder}); wait for it to finish, or let this command wait for it (--wait)"
    )]
    Locked {
        /// The memory folder.
        path: PathBuf,
        /// Who holds the lock, as the lock file names it.
        holder: String,
    },
    /// A failure in a remote backend (pgvector), naming the server.
    #[error("{server}: {problem}")]
    Backend {
        /// The server, as host:port.
        server: String,
        /// What went wrong.
        problem: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, problem: impl Into<String>) -> Error {
        Error::Corrupt {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
