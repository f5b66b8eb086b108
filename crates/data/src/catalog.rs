//! Resolving a dataset name ("emoji", "fashion-mnist", a path) to a reader.

use std::path::{Path, PathBuf};

use crate::emoji::{EmojiDataset, Vendor};
use crate::error::{Error, Result};
use crate::fashion_mnist::{DEBIAN_DIR, FashionMnist};
use crate::fetch::fashion_mnist_dir;
use crate::load::{Loaded, OnBadSample, Progress};
use crate::pairs::{PairFolder, WebDataset};

/// racm3's cache folder: `$RACM3_HOME`, else `~/.cache/racm3`. Fetched data lives here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home(PathBuf);

impl Home {
    /// A cache folder at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// `$RACM3_HOME`, else `$HOME/.cache/racm3`, else `./.racm3`.
    pub fn from_env() -> Self {
        if let Some(path) = std::env::var_os("RACM3_HOME").filter(|p| !p.is_empty()) {
            return Self::new(path);
        }
        match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
            Some(home) => Self::new(Path::new(&home).join(".cache").join("racm3")),
            None => Self::new(".racm3"),
        }
    }

    /// The folder itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Where the emoji packages go.
    pub fn emoji_root(&self) -> PathBuf {
        self.0.join("emoji")
    }

    /// The folders searched for Fashion-MNIST, in order.
    pub fn fashion_mnist_candidates(&self) -> Vec<PathBuf> {
        vec![PathBuf::from(DEBIAN_DIR), fashion_mnist_dir(&self.0)]
    }
}

/// A dataset to read: a built-in one or a user's files.
#[derive(Debug, Clone)]
pub enum Dataset {
    /// Emoji of one or more renditions.
    Emoji(EmojiDataset),
    /// Fashion-MNIST.
    FashionMnist(FashionMnist),
    /// A folder of image-caption pairs.
    Folder(PairFolder),
    /// WebDataset `.tar` shards.
    WebDataset(WebDataset),
}

impl Dataset {
    /// The built-in names, for help texts.
    pub const BUILT_IN: [&str; 7] = [
        "emoji",
        "emoji-twitter",
        "emoji-google",
        "emoji-openmoji",
        "emoji-fluent",
        "emoji-noto-v1",
        "fashion-mnist",
    ];

    /// Resolves `name`: a built-in name (looked up under `home`), a `.tar` file, a folder of
    /// `.tar` shards, or a folder of image-caption pairs.
    pub fn resolve(name: &str, home: &Home) -> Result<Self> {
        let emoji = |vendors: &[Vendor]| {
            EmojiDataset::from_fetched(&home.emoji_root(), vendors).map(Dataset::Emoji)
        };
        let vendor = name.strip_prefix("emoji-").and_then(Vendor::from_name);
        match (name, vendor) {
            ("emoji", _) => return emoji(&Vendor::ALL),
            (_, Some(vendor)) => return emoji(&[vendor]),
            ("fashion-mnist", _) => {
                return FashionMnist::find(&home.fashion_mnist_candidates())
                    .map(Dataset::FashionMnist);
            }
            _ => {}
        }
        let path = Path::new(name);
        if path.is_file() && path.extension().is_some_and(|ext| ext == "tar") {
            return WebDataset::open(path).map(Dataset::WebDataset);
        }
        if path.is_dir() {
            let has_shards = std::fs::read_dir(path)
                .map_err(Error::io(path))?
                .filter_map(|entry| entry.ok())
                .any(|entry| entry.path().extension().is_some_and(|ext| ext == "tar"));
            return Ok(if has_shards {
                Dataset::WebDataset(WebDataset::open(path)?)
            } else {
                Dataset::Folder(PairFolder::new(path))
            });
        }
        Err(Error::UnknownDataset {
            name: name.to_owned(),
        })
    }

    /// Reads every document.
    pub fn load(&self, policy: OnBadSample, progress: &dyn Progress) -> Result<Loaded> {
        match self {
            Dataset::Emoji(dataset) => dataset.load(policy, progress),
            Dataset::FashionMnist(dataset) => dataset.load(policy, progress),
            Dataset::Folder(dataset) => dataset.load(policy, progress),
            Dataset::WebDataset(dataset) => dataset.load(policy, progress),
        }
    }
}
