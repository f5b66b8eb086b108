//! The image tokenizer: a VQGAN (Esser et al., CVPR 2021, arXiv:2012.09841) in candle.
//!
//! Encoder, vector quantizer and decoder follow taming-transformers' `VQModel`
//! (CompVis/taming-transformers@3ba01b2, `taming/models/vqgan.py`) parameter for parameter,
//! so a taming checkpoint converted to safetensors loads unchanged. racm3 trains its own
//! small one ([`VqganConfig::emoji64_f8`]) since no pretrained weights exist here.

mod blocks;
mod config;
mod discriminator;
mod quantize;
mod train;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;

pub use config::{CodebookKind, VqganConfig};
pub use discriminator::{Discriminator, DiscriminatorConfig};
pub use quantize::Quantized;
pub use train::{Evaluation, ReconstructionLoss, StepReport, VqTrainConfig, VqTrainer, evaluate};

use crate::error::{Error, Result};
use blocks::{Decoder, Encoder};
use quantize::Quantizer;
use racm3_kernels::conv::Conv;

/// The file names of a saved VQGAN.
pub const CONFIG_FILE: &str = "config.json";
/// The weights, in taming's parameter names.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// The parameter groups that decide an image's codes; the rest (`post_quant_conv.`,
/// `decoder.`) only draws them.
pub const CODE_PARTS: [&str; 3] = ["encoder.", "quant_conv.", "quantize."];

/// A checksum of what decides the codes of the model in `dir`: the codebook lookup and the
/// [`CODE_PARTS`] weights. Caches of codes key on it, so they stay valid while a decoder
/// trains on (`--decoder-only`) and are made again for any other model.
pub fn codes_fingerprint(dir: &Path) -> Result<u32> {
    let config = read_config(dir)?;
    let weights = dir.join(WEIGHTS_FILE);
    let model_error = |source| Error::Model {
        path: weights.clone(),
        source: Box::new(source),
    };
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu).map_err(model_error)?;
    let mut names: Vec<&String> = tensors
        .keys()
        .filter(|name| CODE_PARTS.iter().any(|part| name.starts_with(part)))
        .collect();
    names.sort();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(format!("{:?}", config.codebook).as_bytes());
    for name in names {
        let tensor = &tensors[name];
        let values = tensor
            .flatten_all()
            .and_then(|flat| flat.to_dtype(DType::F32)?.to_vec1::<f32>())
            .map_err(model_error)?;
        hasher.update(format!("{name} {:?}", tensor.dims()).as_bytes());
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        hasher.update(&bytes);
    }
    Ok(hasher.finalize())
}

/// A VQGAN: images to code grids and back.
#[derive(Debug)]
pub struct Vqgan {
    encoder: Encoder,
    decoder: Decoder,
    quantize: Quantizer,
    quant_conv: Conv,
    post_quant_conv: Conv,
    config: VqganConfig,
}

impl Vqgan {
    /// Builds the model from `vb`: fresh weights from a `VarMap`, or a checkpoint's.
    pub fn new(cfg: &VqganConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        cfg.validate().map_err(candle_core::Error::msg)?;
        let conv1x1 = |in_ch, out_ch, name: &str| {
            Conv::new(in_ch, out_ch, 1, Default::default(), vb.pp(name))
        };
        Ok(Self {
            encoder: Encoder::new(cfg, vb.pp("encoder"))?,
            decoder: Decoder::new(cfg, vb.pp("decoder"))?,
            quantize: Quantizer::new(cfg, vb.pp("quantize"))?,
            quant_conv: conv1x1(cfg.z_channels, cfg.embed_dim, "quant_conv")?,
            post_quant_conv: conv1x1(cfg.embed_dim, cfg.z_channels, "post_quant_conv")?,
            config: cfg.clone(),
        })
    }

    /// Loads `config.json` and `model.safetensors` from `dir`. A missing tensor or a wrong
    /// shape is an error naming the tensor (and both shapes).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config = read_config(dir)?;
        let weights = dir.join(WEIGHTS_FILE);
        let model_error = |source| Error::Model {
            path: weights.clone(),
            source: Box::new(source),
        };
        // SAFETY: the file is mapped read-only and not modified while the model lives.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
            .map_err(model_error)?;
        Self::new(&config, vb).map_err(model_error)
    }

    /// The configuration.
    pub fn config(&self) -> &VqganConfig {
        &self.config
    }

    /// Images (b, 3, res, res) in [-1, 1] to quantized latents and code indices.
    pub fn encode(&self, xs: &Tensor) -> candle_core::Result<Quantized> {
        let z = xs.apply(&self.encoder)?.apply(&self.quant_conv)?;
        self.quantize.quantize(&z)
    }

    /// Quantized latents (b, embed_dim, h, w) to images in about [-1, 1].
    pub fn decode(&self, z_q: &Tensor) -> candle_core::Result<Tensor> {
        z_q.apply(&self.post_quant_conv)?.apply(&self.decoder)
    }

    /// Code indices (b, h, w) to images in about [-1, 1].
    pub fn decode_indices(&self, indices: &Tensor) -> candle_core::Result<Tensor> {
        self.decode(&self.quantize.lookup(indices)?)
    }

    /// Reconstruction and quantization of a batch, for training.
    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<(Tensor, Quantized)> {
        let quantized = self.encode(xs)?;
        let reconstruction = self.decode(&quantized.z_q)?;
        Ok((reconstruction, quantized))
    }

    /// Encoder outputs before quantization (b, embed_dim, h, w): what dead codes restart from.
    pub fn latents(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        xs.apply(&self.encoder)?.apply(&self.quant_conv)
    }
}

/// Reads and checks `config.json` in `dir`.
pub fn read_config(dir: &Path) -> Result<VqganConfig> {
    let path = dir.join(CONFIG_FILE);
    let bytes = std::fs::read(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let config: VqganConfig = serde_json::from_slice(&bytes).map_err(|err| Error::Config {
        path: path.clone(),
        message: err.to_string(),
    })?;
    config
        .validate()
        .map_err(|message| Error::Config { path, message })?;
    Ok(config)
}

/// How images of another size or shape are fitted to the model: the short side is resized
/// to the model's resolution (Catmull-Rom), then the center square is cropped. Colour is
/// RGB already (the data crate composites transparency over white and expands grey).
pub fn fit_image(image: &RgbImage, resolution: u32) -> RgbImage {
    let (width, height) = image.dimensions();
    if width == resolution && height == resolution {
        return image.clone();
    }
    let scale = resolution as f64 / width.min(height) as f64;
    let new_width = ((width as f64 * scale).round() as u32).max(resolution);
    let new_height = ((height as f64 * scale).round() as u32).max(resolution);
    let resized = image::imageops::resize(
        image,
        new_width,
        new_height,
        image::imageops::FilterType::CatmullRom,
    );
    let left = (new_width - resolution) / 2;
    let top = (new_height - resolution) / 2;
    image::imageops::crop_imm(&resized, left, top, resolution, resolution).to_image()
}

/// Images to a batch (b, 3, res, res) in [-1, 1], fitted by [`fit_image`].
pub fn images_to_tensor(
    images: &[RgbImage],
    resolution: u32,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let side = resolution as usize;
    let mut data = Vec::with_capacity(images.len() * 3 * side * side);
    for image in images {
        let fitted = fit_image(image, resolution);
        data.extend(fitted.as_raw().iter().map(|&v| f32::from(v) / 127.5 - 1.0));
    }
    Tensor::from_vec(data, (images.len(), side, side, 3), device)?
        .permute((0, 3, 1, 2))?
        .contiguous()
}

/// A batch (b, 3, h, w) in about [-1, 1] to images, clamped.
pub fn tensor_to_images(xs: &Tensor) -> candle_core::Result<Vec<RgbImage>> {
    let (b_sz, _, height, width) = xs.dims4()?;
    let pixels = ((xs.clamp(-1f32, 1f32)? + 1.0)? * 127.5)?
        .round()?
        .permute((0, 2, 3, 1))?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_vec1::<u8>()?;
    let per_image = height * width * 3;
    (0..b_sz)
        .map(|i| {
            RgbImage::from_raw(
                width as u32,
                height as u32,
                pixels[i * per_image..(i + 1) * per_image].to_vec(),
            )
            .ok_or_else(|| candle_core::Error::msg("image buffer size mismatch"))
        })
        .collect()
}

/// The VQGAN as racm3's image tokenizer: RGB images to codebook indices and back.
#[derive(Debug)]
pub struct ImageTokenizer {
    model: Vqgan,
    device: Device,
}

impl ImageTokenizer {
    /// Wraps a model.
    pub fn new(model: Vqgan, device: Device) -> Self {
        Self { model, device }
    }

    /// Loads a saved VQGAN folder.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Ok(Self::new(Vqgan::load(dir, device)?, device.clone()))
    }

    /// The model.
    pub fn model(&self) -> &Vqgan {
        &self.model
    }

    /// Codebook entries.
    pub fn codebook_size(&self) -> u32 {
        self.model.config.n_embed as u32
    }

    /// Codes per image.
    pub fn tokens_per_image(&self) -> usize {
        self.model.config.tokens_per_image()
    }

    /// Code indices of each image, in raster order, in batches of `batch_size`.
    pub fn encode(&self, images: &[RgbImage], batch_size: usize) -> Result<Vec<Vec<u32>>> {
        let resolution = self.model.config.resolution as u32;
        let mut codes = Vec::with_capacity(images.len());
        for chunk in images.chunks(batch_size.max(1)) {
            let batch = images_to_tensor(chunk, resolution, &self.device)?;
            let indices = self.model.encode(&batch)?.indices;
            let grid = self.tokens_per_image();
            let flat = indices.flatten_all()?.to_vec1::<u32>()?;
            codes.extend(flat.chunks(grid).map(<[u32]>::to_vec));
        }
        Ok(codes)
    }

    /// Images of code grids. Every grid must have exactly `tokens_per_image` codes, each
    /// inside the codebook.
    pub fn decode(&self, grids: &[Vec<u32>]) -> Result<Vec<RgbImage>> {
        let side = self.model.config.grid_size();
        let mut flat = Vec::with_capacity(grids.len() * side * side);
        for grid in grids {
            if grid.len() != side * side {
                return Err(Error::Malformed {
                    position: grid.len().min(side * side),
                    problem: format!(
                        "a code grid needs {} codes, got {}",
                        side * side,
                        grid.len()
                    ),
                });
            }
            if let Some(&code) = grid.iter().find(|&&code| code >= self.codebook_size()) {
                return Err(Error::CodeOutOfRange {
                    code,
                    codebook: self.codebook_size(),
                });
            }
            flat.extend_from_slice(grid);
        }
        if grids.is_empty() {
            return Ok(Vec::new());
        }
        let indices = Tensor::from_vec(flat, (grids.len(), side, side), &self.device)?;
        Ok(tensor_to_images(&self.model.decode_indices(&indices)?)?)
    }
}
