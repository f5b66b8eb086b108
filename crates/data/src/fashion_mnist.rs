//! Fashion-MNIST as image-caption documents, read from its IDX files.
//!
//! The caption is the class name ("ankle boot"); the class index is kept as the `label`
//! attribute for few-shot classification. The official test set is the test split; the
//! official training set is split 90/10 into train and val (every tenth image is val).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use image::{GrayImage, RgbImage};

use crate::document::{Document, Source};
use crate::error::{Error, Result};
use crate::load::{Loaded, OnBadSample, Progress};
use crate::split::Split;

/// The ten class names, in label order.
pub const CLASS_NAMES: [&str; 10] = [
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// Where Debian's `dataset-fashion-mnist` package installs the files.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Fashion-MNIST read from a folder holding the four IDX files (gzipped or not).
#[derive(Debug, Clone)]
pub struct FashionMnist {
    dir: PathBuf,
}

impl FashionMnist {
    /// Reads the IDX files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The first folder of `candidates` that holds the training images, or
    /// [`Error::NotFetched`] naming them all.
    pub fn find(candidates: &[PathBuf]) -> Result<Self> {
        candidates
            .iter()
            .find(|dir| idx_path(dir, "train-images-idx3-ubyte").is_some())
            .map(|dir| Self::new(dir.clone()))
            .ok_or_else(|| Error::NotFetched {
                dataset: "fashion-mnist".into(),
                looked_in: candidates
                    .iter()
                    .map(|dir| dir.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The folder read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads all 70,000 documents: the official training set, then the test set. The IDX
    /// files are checked whole, so a truncated file is an error under either policy.
    pub fn load(&self, _policy: OnBadSample, progress: &dyn Progress) -> Result<Loaded> {
        let mut loaded = Loaded::default();
        let mut total = 0;
        for (set, is_test) in [("train", false), ("t10k", true)] {
            let images = read_idx(&self.dir, &format!("{set}-images-idx3-ubyte"), 3)?;
            let labels = read_idx(&self.dir, &format!("{set}-labels-idx1-ubyte"), 1)?;
            let (count, rows, cols) = (images.dims[0], images.dims[1], images.dims[2]);
            if labels.dims[0] != count {
                return Err(Error::Corrupt {
                    path: labels.path,
                    problem: format!("{} labels for {count} images", labels.dims[0]),
                });
            }
            total += count;
            progress.set_total(total as u64);
            let pixels_per_image = rows * cols;
            for (index, pixels) in images.data.chunks_exact(pixels_per_image).enumerate() {
                let label = usize::from(labels.data[index]);
                let class = CLASS_NAMES.get(label).ok_or_else(|| Error::Corrupt {
                    path: labels.path.clone(),
                    problem: format!("label {label} at index {index} is not a class (0-9)"),
                })?;
                let gray = GrayImage::from_raw(cols as u32, rows as u32, pixels.to_vec())
                    .ok_or_else(|| Error::Corrupt {
                        path: images.path.clone(),
                        problem: format!("image {index} is short"),
                    })?;
                let id = format!("fashion-mnist/{set}/{index:05}");
                // Every tenth training image is val: exactly 6,000, and stable forever.
                let split = match (is_test, index % 10) {
                    (true, _) => Split::Test,
                    (false, 0) => Split::Val,
                    (false, _) => Split::Train,
                };
                let source = Source {
                    dataset: "fashion-mnist".into(),
                    entity: id.clone(),
                    split,
                    references: vec![],
                    attributes: BTreeMap::from([("label".to_owned(), label.to_string())]),
                };
                let rgb: RgbImage = image::DynamicImage::ImageLuma8(gray).into_rgb8();
                loaded
                    .documents
                    .push(Document::image_caption(id, *class, rgb, source));
                progress.advance(1);
            }
        }
        Ok(loaded)
    }
}

struct Idx {
    path: PathBuf,
    dims: Vec<usize>,
    data: Vec<u8>,
}

fn idx_path(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_owned()]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// Reads an unsigned-byte IDX file: magic `00 00 08 <ndim>`, big-endian u32 sizes, data.
fn read_idx(dir: &Path, stem: &str, expected_dims: u8) -> Result<Idx> {
    let path = idx_path(dir, stem).ok_or_else(|| Error::Io {
        path: dir.join(format!("{stem}.gz")),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "IDX file not found"),
    })?;
    let file = std::fs::File::open(&path).map_err(Error::io(&path))?;
    let mut bytes = Vec::new();
    let read = if path.extension().is_some_and(|ext| ext == "gz") {
        GzDecoder::new(file).read_to_end(&mut bytes)
    } else {
        std::io::BufReader::new(file).read_to_end(&mut bytes)
    };
    read.map_err(Error::io(&path))?;
    let corrupt = |problem: String| Error::Corrupt {
        path: path.clone(),
        problem,
    };
    if bytes.len() < 4 || bytes[..3] != [0, 0, 8] || bytes[3] != expected_dims {
        return Err(corrupt(format!(
            "not an unsigned-byte IDX file with {expected_dims} dimensions"
        )));
    }
    let header_len = 4 + 4 * usize::from(expected_dims);
    if bytes.len() < header_len {
        return Err(corrupt("header is truncated".into()));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected_len: usize = dims.iter().product();
    let data = bytes.split_off(header_len);
    if data.len() != expected_len {
        return Err(corrupt(format!(
            "holds {} data bytes, its header says {expected_len}",
            data.len()
        )));
    }
    Ok(Idx { path, dims, data })
}
