//! racm3-data: the documents racm3 reads, writes and retrieves, and the readers that make
//! them from real data.
//!
//! This is the first stage of the pipeline (data → tokenize → retrieve → generate →
//! evaluate). A [`Document`] is ordered text and captioned images with a stable id and its
//! [`Source`]; every reader yields documents with a deterministic [`Split`] by entity, so a
//! held-out entity never reaches training. Readers cover the emoji npm packages, Fashion-MNIST
//! IDX files, and a user's own image-caption pairs as a folder or as WebDataset shards.
//! Every bad sample is an [`Error`] naming its file; readers fail on the first one or skip
//! and count them ([`OnBadSample`]). This crate knows nothing of tokens or tensors.
#![deny(missing_docs)]

mod atomic;
mod catalog;
mod document;
pub mod emoji;
mod error;
pub mod fashion_mnist;
pub mod fetch;
mod load;
mod pairs;
mod pixels;
mod split;
mod stats;

pub use atomic::write_atomic;
pub use catalog::{Dataset, Home};
pub use document::{Document, ImagePart, Part, Source, printable};
pub use error::{Error, Result};
pub use load::{Loaded, OnBadSample, Progress, Silent};
pub use pairs::{PairFolder, WebDataset};
pub use pixels::{
    IMAGE_EXTENSIONS, decode_rgb, encode_png, image_grid, read_image, read_image_folder, save_png,
};
pub use split::Split;
pub use stats::{SplitCounts, Stats};
