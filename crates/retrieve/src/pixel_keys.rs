//! Image keys that find an entity across renditions: a linear map of a small RGB thumbnail,
//! fitted by linear discriminant analysis on renditions labelled by entity.
//!
//! A small CLIP's image tower, trained mostly against captions, groups drawings by style
//! (BENCHMARKS.md, "Image keys", "Pixel keys"): among the experiment's memory a held-out
//! Twemoji drawing finds a document of its entity among the first 2 (plain top-k) for 14% of
//! drawings by its CLIP image embedding, 39% by a centred 8x8 thumbnail and 51% through this
//! map. Renditions of one emoji share layout and colours, which a thumbnail keeps; the
//! discriminant map keeps the directions along which entities differ more than renditions
//! of one entity.
//! The map is fitted on the train entities only, so held-out entities are never seen.
//!
//! A CLIP folder may carry one as [`PIXEL_KEYS_FILE`]; memories built with
//! [`crate::KeyLayout::JointAndPixels`] or [`crate::KeyLayout::JointTextAndPixels`] score
//! image-only queries by it.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use image::RgbImage;
use nalgebra::{DMatrix, SymmetricEigen};
use racm3_tokenize::vqgan::fit_image;

use crate::error::{Error, Result};

/// The file in a CLIP folder that holds its pixel keys.
pub const PIXEL_KEYS_FILE: &str = "pixel-keys.safetensors";

/// Each thumbnail pixel is the mean of a block this wide of the image fitted to
/// `BLOCK · side` (a 64x64 image gives a 16x16 thumbnail of 4x4 block means).
const BLOCK: usize = 4;

/// How a map is fitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelKeyOptions {
    /// Thumbnail side in pixels.
    pub side: usize,
    /// Values per key: the discriminant directions kept.
    pub dims: usize,
    /// Added to the within-entity scatter, as a share of its mean eigenvalue, before it
    /// is whitened: larger trusts the thumbnail's raw geometry more.
    pub regularization: f64,
    /// Each image is also fitted on shrunk by this share and grown by it about its centre,
    /// as renditions of one entity draw it at different sizes (0: only as it is).
    pub zoom: f64,
}

impl Default for PixelKeyOptions {
    /// The settings measured best on the held-out val drawings (BENCHMARKS.md).
    fn default() -> Self {
        Self {
            side: 16,
            dims: 64,
            regularization: 1.0,
            zoom: 0.15,
        }
    }
}

/// A fitted map from images to unit keys.
#[derive(Debug, Clone)]
pub struct PixelKeys {
    side: usize,
    /// The training thumbnails' mean (3 · side² values).
    center: Tensor,
    /// (3 · side², dims).
    projection: Tensor,
}

impl PixelKeys {
    /// Fits a map on `images`, each labelled with its entity: images of one entity are
    /// pulled together, entities apart. Needs at least two entities and one entity with
    /// two images.
    pub fn fit(images: &[RgbImage], entities: &[&str], options: PixelKeyOptions) -> Result<Self> {
        let PixelKeyOptions {
            side,
            dims,
            regularization,
            zoom,
        } = options;
        let features = 3 * side * side;
        let valid = side > 0
            && dims > 0
            && dims <= features
            && regularization > 0.0
            && (0.0..0.5).contains(&zoom);
        if !valid {
            return Err(Error::BadInput(format!(
                "pixel keys need side >= 1, 1 <= dims <= 3 · side² ({features}), a positive \
                 regularization and a zoom in [0, 0.5); got side {side}, dims {dims}, \
                 regularization {regularization}, zoom {zoom}"
            )));
        }
        if images.len() != entities.len() {
            return Err(Error::BadInput(format!(
                "{} images but {} entity labels",
                images.len(),
                entities.len()
            )));
        }
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        let labels: Vec<usize> = entities
            .iter()
            .map(|entity| {
                let next = index_of.len();
                *index_of.entry(entity).or_insert(next)
            })
            .collect();
        let classes = index_of.len();
        if classes < 2 || classes == images.len() {
            return Err(Error::BadInput(format!(
                "pixel keys are fitted on several images of each of several entities; got {} \
                 images of {classes} entities",
                images.len()
            )));
        }
        let scales: &[f64] = if zoom > 0.0 {
            &[1.0, 1.0 - zoom, 1.0 + zoom]
        } else {
            &[1.0]
        };
        let x: Vec<f64> = scales
            .iter()
            .flat_map(|&scale| {
                images
                    .iter()
                    .flat_map(move |image| thumbnail(&zoomed(image, side, scale), side))
            })
            .collect();
        let labels = labels.repeat(scales.len());
        let n = labels.len();
        let mut means = vec![0f64; classes * features];
        let mut counts = vec![0f64; classes];
        for (row, &label) in x.chunks_exact(features).zip(&labels) {
            counts[label] += 1.0;
            for (mean, value) in means[label * features..].iter_mut().zip(row) {
                *mean += value;
            }
        }
        for (mean, count) in means.chunks_exact_mut(features).zip(&counts) {
            mean.iter_mut().for_each(|m| *m /= count);
        }
        let center: Vec<f64> = (0..features)
            .map(|f| x.iter().skip(f).step_by(features).sum::<f64>() / n as f64)
            .collect();
        let within: Vec<f64> = x
            .chunks_exact(features)
            .zip(&labels)
            .flat_map(|(row, &label)| {
                let mean = &means[label * features..(label + 1) * features];
                row.iter().zip(mean).map(|(v, m)| v - m)
            })
            .collect();
        // Each entity's mean, weighted by the square root of its count, so that the
        // product below is the between-entity scatter.
        let between: Vec<f64> = means
            .chunks_exact(features)
            .zip(&counts)
            .flat_map(|(mean, count)| {
                mean.iter()
                    .zip(&center)
                    .map(move |(m, c)| (m - c) * count.sqrt())
            })
            .collect();
        let mut within = gram(&within, n, features)?;
        let trace = (0..features).map(|i| within[(i, i)]).sum::<f64>();
        within /= n as f64;
        let ridge = regularization * trace / n as f64 / features as f64;
        for i in 0..features {
            within[(i, i)] += ridge;
        }
        let within = SymmetricEigen::new(within);
        let whiten = &within.eigenvectors
            * DMatrix::from_diagonal(
                &within
                    .eigenvalues
                    .map(|v| v.max(f64::MIN_POSITIVE).powf(-0.5)),
            )
            * within.eigenvectors.transpose();
        let between = gram(&between, classes, features)?;
        let separation = SymmetricEigen::new(&whiten * between * &whiten);
        let mut order: Vec<usize> = (0..features).collect();
        order.sort_by(|&a, &b| separation.eigenvalues[b].total_cmp(&separation.eigenvalues[a]));
        let directions = DMatrix::from_fn(features, dims, |r, c| {
            separation.eigenvectors[(r, order[c])]
        });
        let projection = whiten * directions;
        let projection: Vec<f32> = (0..features)
            .flat_map(|r| (0..dims).map(move |c| (r, c)))
            .map(|(r, c)| projection[(r, c)] as f32)
            .collect();
        let center: Vec<f32> = center.into_iter().map(|v| v as f32).collect();
        Ok(Self {
            side,
            center: Tensor::from_vec(center, features, &Device::Cpu)?,
            projection: Tensor::from_vec(projection, (features, dims), &Device::Cpu)?,
        })
    }

    /// Values per key.
    pub fn dims(&self) -> usize {
        self.projection.dims()[1]
    }

    /// Thumbnail side in pixels.
    pub fn side(&self) -> usize {
        self.side
    }

    /// Unit keys of `images` (any size; fitted as CLIP fits them), n × dims row-major.
    pub fn embed(&self, images: &[RgbImage]) -> Result<Vec<f32>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let features = 3 * self.side * self.side;
        let x: Vec<f32> = images
            .iter()
            .flat_map(|image| thumbnail(image, self.side).into_iter().map(|v| v as f32))
            .collect();
        let x = Tensor::from_vec(x, (images.len(), features), &Device::Cpu)?;
        let keys = x.broadcast_sub(&self.center)?.matmul(&self.projection)?;
        Ok(crate::clip::l2_normalize(&keys)?.flatten_all()?.to_vec1()?)
    }

    /// Saves the map (atomically) as safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors = HashMap::from([
            ("center".to_owned(), self.center.clone()),
            ("projection".to_owned(), self.projection.clone()),
        ]);
        racm3_train::save_tensors(&tensors, path)?;
        Ok(())
    }

    /// Loads a map saved by [`PixelKeys::save`]; tensors of the wrong shape are an error
    /// naming the file.
    pub fn load(path: &Path) -> Result<Self> {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|err| Error::checkpoint(path, err))?;
        let get = |name: &str| {
            tensors
                .get(name)
                .ok_or_else(|| Error::Checkpoint {
                    path: path.to_owned(),
                    message: format!("no tensor '{name}'"),
                })?
                .to_dtype(DType::F32)
                .map_err(|err| Error::checkpoint(path, err))
        };
        let (center, projection) = (get("center")?, get("projection")?);
        let features = center.elem_count();
        let side = ((features / 3) as f64).sqrt().round() as usize;
        let fits = center.rank() == 1
            && side > 0
            && 3 * side * side == features
            && projection.rank() == 2
            && projection.dims()[0] == features
            && projection.dims()[1] > 0;
        if !fits {
            return Err(Error::Checkpoint {
                path: path.to_owned(),
                message: format!(
                    "center {:?} and projection {:?} are not a thumbnail of 3 · side² values and \
                     a (3 · side², dims) map",
                    center.dims(),
                    projection.dims()
                ),
            });
        }
        Ok(Self {
            side,
            center,
            projection,
        })
    }
}

/// The image fitted to `BLOCK · side` and scaled by `scale` about its centre: cropped when
/// grown, framed in the colour of its corners when shrunk.
fn zoomed(image: &RgbImage, side: usize, scale: f64) -> RgbImage {
    let size = (BLOCK * side) as u32;
    let fitted = fit_image(image, size);
    if scale == 1.0 {
        return fitted;
    }
    let scaled_size = ((f64::from(size) * scale).round() as u32).max(1);
    let scaled = image::imageops::resize(
        &fitted,
        scaled_size,
        scaled_size,
        image::imageops::FilterType::Triangle,
    );
    let corners = [(0, 0), (size - 1, 0), (0, size - 1), (size - 1, size - 1)];
    let background = image::Rgb(std::array::from_fn(|channel| {
        let sum: u32 = corners
            .iter()
            .map(|&(x, y)| u32::from(fitted.get_pixel(x, y)[channel]))
            .sum();
        (sum / 4) as u8
    }));
    let mut out = RgbImage::from_pixel(size, size, background);
    // Offsets of the scaled image's top-left corner in the frame (negative when grown).
    let offset = (i64::from(size) - i64::from(scaled_size)) / 2;
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let (sx, sy) = (i64::from(x) - offset, i64::from(y) - offset);
        if (0..i64::from(scaled_size)).contains(&sx) && (0..i64::from(scaled_size)).contains(&sy) {
            *pixel = *scaled.get_pixel(sx as u32, sy as u32);
        }
    }
    out
}

/// RGB means of `side` x `side` blocks of the image fitted to `BLOCK · side`, in [0, 1],
/// row by row, channels innermost.
fn thumbnail(image: &RgbImage, side: usize) -> Vec<f64> {
    let fitted = fit_image(image, (BLOCK * side) as u32);
    let mut sums = vec![0f64; 3 * side * side];
    for (x, y, pixel) in fitted.enumerate_pixels() {
        let cell = (y as usize / BLOCK) * side + x as usize / BLOCK;
        for channel in 0..3 {
            sums[3 * cell + channel] += f64::from(pixel[channel]);
        }
    }
    let scale = 1.0 / (255.0 * (BLOCK * BLOCK) as f64);
    sums.into_iter().map(|sum| sum * scale).collect()
}

/// XᵀX of an n × f row-major matrix, as one matrix product.
fn gram(x: &[f64], n: usize, features: usize) -> Result<DMatrix<f64>> {
    let x = Tensor::from_slice(x, (n, features), &Device::Cpu)?;
    let product = x.t()?.matmul(&x)?.flatten_all()?.to_vec1::<f64>()?;
    Ok(DMatrix::from_row_slice(features, features, &product))
}
