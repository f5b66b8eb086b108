use std::path::PathBuf;

/// Everything that can go wrong while reading or fetching a dataset. Each variant names the
/// file, member or dataset involved, so a message alone tells the user where to look.
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
    /// Bytes that do not decode as an image.
    #[error("{path}: not a readable image: {source}")]
    Image {
        /// The file (or `archive.tar:member`) holding the bytes.
        path: String,
        /// What the decoder said.
        source: image::ImageError,
    },
    /// An SVG that cannot be drawn, or holds what an emoji should not (a script, a
    /// reference outside the file, a huge canvas).
    #[error("{what}: {problem}")]
    Svg {
        /// The file and icon.
        what: String,
        /// What is wrong.
        problem: String,
    },
    /// Pixels that do not encode as PNG.
    #[error("{what}: could not encode as PNG: {source}")]
    Encode {
        /// The image, or the file it was meant for.
        what: String,
        /// What the encoder said.
        source: image::ImageError,
    },
    /// A caption that is not valid UTF-8.
    #[error("{path}: caption is not valid UTF-8 (byte {valid_up_to} starts an invalid sequence)")]
    CaptionNotUtf8 {
        /// The caption file (or `archive.tar:member`).
        path: String,
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// An image with no caption beside it.
    #[error("{image}: no caption beside it (expected {expected})")]
    MissingCaption {
        /// The image file (or `archive.tar:member`).
        image: String,
        /// The caption file that was looked for.
        expected: String,
    },
    /// A folder or archive with no usable samples at all.
    #[error(
        "{path}: no image-caption pairs found (expected files like 00001.jpg beside 00001.txt)"
    )]
    Empty {
        /// The folder or archive.
        path: PathBuf,
    },
    /// A member of a WebDataset archive that is not part of an image-caption pair.
    #[error("{archive}: member '{member}': {problem}")]
    TarMember {
        /// The archive.
        archive: PathBuf,
        /// The member's name inside the archive.
        member: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A file whose structure is wrong (a truncated IDX file, an emoji.json entry without a name).
    #[error("{path}: {problem}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Malformed JSON.
    #[error("{path}: malformed JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        source: serde_json::Error,
    },
    /// A dataset name that is neither built in nor an existing path.
    #[error(
        "unknown dataset '{name}': expected emoji, emoji-twitter, emoji-google, fashion-mnist, \
         or the path of a folder of image-caption pairs or of .tar shards"
    )]
    UnknownDataset {
        /// What the user asked for.
        name: String,
    },
    /// A built-in dataset whose files are not on this machine yet.
    #[error(
        "{dataset} is not on this machine (looked in {looked_in}); run `racm3 data fetch {dataset}`"
    )]
    NotFetched {
        /// The dataset's name.
        dataset: String,
        /// The places searched.
        looked_in: String,
    },
    /// Fetching a dataset with an external client (npm, apt-get) failed.
    #[error("fetching {dataset}: {problem}")]
    Fetch {
        /// The dataset's name.
        dataset: String,
        /// What failed, with the client's own message.
        problem: String,
    },
    /// A document id that the dataset does not hold.
    #[error("no document with id '{id}' in {dataset}")]
    NoSuchDocument {
        /// The id asked for.
        id: String,
        /// The dataset searched.
        dataset: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
