//! The VQGAN encoder and decoder, block for block as taming-transformers builds them
//! (`taming/modules/diffusionmodules/model.py`, CompVis/taming-transformers@3ba01b2), so
//! that taming's parameter names load unchanged.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use super::config::VqganConfig;
use racm3_kernels::conv::{Conv, Resample};
use racm3_kernels::norm::Norm;

/// A "same"-padded stride-1 convolution.
fn conv(in_ch: usize, out_ch: usize, kernel: usize, vb: VarBuilder) -> Result<Conv> {
    let cfg = Conv2dConfig {
        padding: kernel / 2,
        ..Default::default()
    };
    Conv::new(in_ch, out_ch, kernel, cfg, vb)
}

/// taming's `Downsample`: one zero row and column at the bottom and right, then a 3x3
/// convolution of stride 2 without padding, halving the map.
fn downsample(channels: usize, vb: VarBuilder) -> Result<Conv> {
    let cfg = Conv2dConfig {
        stride: 2,
        ..Default::default()
    };
    Ok(Conv::new(channels, channels, 3, cfg, vb)?.resampling(Resample::PadBottomRight))
}

/// taming's `Upsample`: nearest-neighbour upsampling by 2, then a 3x3 convolution.
fn upsample(channels: usize, vb: VarBuilder) -> Result<Conv> {
    Ok(conv(channels, channels, 3, vb)?.resampling(Resample::Upsample))
}

fn norm(cfg: &VqganConfig, channels: usize, vb: VarBuilder) -> Result<Norm> {
    // eps 1e-6 as taming's Normalize().
    Norm::new(cfg.norm_groups, channels, 1e-6, vb)
}

/// Pre-activation residual block: norm, swish, conv, twice, plus a 1x1 shortcut when the
/// channel count changes.
#[derive(Debug)]
struct ResnetBlock {
    norm1: Norm,
    conv1: Conv,
    norm2: Norm,
    conv2: Conv,
    nin_shortcut: Option<Conv>,
}

impl ResnetBlock {
    fn new(cfg: &VqganConfig, in_ch: usize, out_ch: usize, vb: VarBuilder) -> Result<Self> {
        let nin_shortcut = if in_ch != out_ch {
            Some(conv(in_ch, out_ch, 1, vb.pp("nin_shortcut"))?)
        } else {
            None
        };
        Ok(Self {
            norm1: norm(cfg, in_ch, vb.pp("norm1"))?,
            conv1: conv(in_ch, out_ch, 3, vb.pp("conv1"))?,
            norm2: norm(cfg, out_ch, vb.pp("norm2"))?,
            conv2: conv(out_ch, out_ch, 3, vb.pp("conv2"))?,
            nin_shortcut,
        })
    }
}

impl Module for ResnetBlock {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let hs = self.norm1.forward_silu(xs)?.apply(&self.conv1)?;
        let hs = self.norm2.forward_silu(&hs)?.apply(&self.conv2)?;
        let shortcut = match &self.nin_shortcut {
            Some(nin) => xs.apply(nin)?,
            None => xs.clone(),
        };
        shortcut + hs
    }
}

/// Single-head self-attention over the pixels of a feature map, with 1x1 convs as the
/// projections.
#[derive(Debug)]
struct AttnBlock {
    norm: Norm,
    q: Conv,
    k: Conv,
    v: Conv,
    proj_out: Conv,
}

impl AttnBlock {
    fn new(cfg: &VqganConfig, channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm: norm(cfg, channels, vb.pp("norm"))?,
            q: conv(channels, channels, 1, vb.pp("q"))?,
            k: conv(channels, channels, 1, vb.pp("k"))?,
            v: conv(channels, channels, 1, vb.pp("v"))?,
            proj_out: conv(channels, channels, 1, vb.pp("proj_out"))?,
        })
    }
}

impl Module for AttnBlock {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b_sz, channels, height, width) = xs.dims4()?;
        let hs = xs.apply(&self.norm)?;
        let flat = |t: Tensor| t.reshape((b_sz, channels, height * width)); // (b, c, hw)
        let q = flat(hs.apply(&self.q)?)?.transpose(1, 2)?.contiguous()?; // (b, hw, c)
        let k = flat(hs.apply(&self.k)?)?; // (b, c, hw)
        let v = flat(hs.apply(&self.v)?)?; // (b, c, hw)
        let weights = (q.matmul(&k)? * (channels as f64).powf(-0.5))?; // (b, hw_q, hw_k)
        // The generic softmax: candle's softmax_last_dim passes back no gradient.
        let weights = candle_nn::ops::softmax(&weights, D::Minus1)?;
        let attended = v.matmul(&weights.transpose(1, 2)?.contiguous()?)?; // (b, c, hw_q)
        let attended = attended.reshape((b_sz, channels, height, width))?;
        xs + attended.apply(&self.proj_out)?
    }
}

/// The blocks of one resolution level.
#[derive(Debug)]
struct Level {
    block: Vec<ResnetBlock>,
    attn: Vec<AttnBlock>,
    /// The stride-2 conv (encoder) or nearest-upsample conv (decoder) leaving this level.
    resample: Option<Conv>,
}

impl Level {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut hs = xs.clone();
        for (i, block) in self.block.iter().enumerate() {
            hs = hs.apply(block)?;
            if let Some(attn) = self.attn.get(i) {
                hs = hs.apply(attn)?;
            }
        }
        match &self.resample {
            Some(resample) => hs.apply(resample),
            None => Ok(hs),
        }
    }
}

/// Middle: resnet, attention, resnet at the lowest resolution.
#[derive(Debug)]
struct Mid {
    block_1: ResnetBlock,
    attn_1: AttnBlock,
    block_2: ResnetBlock,
}

impl Mid {
    fn new(cfg: &VqganConfig, channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            block_1: ResnetBlock::new(cfg, channels, channels, vb.pp("block_1"))?,
            attn_1: AttnBlock::new(cfg, channels, vb.pp("attn_1"))?,
            block_2: ResnetBlock::new(cfg, channels, channels, vb.pp("block_2"))?,
        })
    }
}

impl Module for Mid {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        xs.apply(&self.block_1)?
            .apply(&self.attn_1)?
            .apply(&self.block_2)
    }
}

/// The residual blocks of one level (the first changes the channel count), each followed
/// by attention when the level's resolution is in `attn_resolutions`.
fn level_blocks(
    cfg: &VqganConfig,
    vb_level: &VarBuilder,
    block_in: usize,
    block_out: usize,
    count: usize,
    resolution: usize,
) -> Result<(Vec<ResnetBlock>, Vec<AttnBlock>)> {
    let mut block = Vec::with_capacity(count);
    let mut attn = Vec::new();
    for i_block in 0..count {
        let in_ch = if i_block == 0 { block_in } else { block_out };
        block.push(ResnetBlock::new(
            cfg,
            in_ch,
            block_out,
            vb_level.pp(format!("block.{i_block}")),
        )?);
        if cfg.attn_resolutions.contains(&resolution) {
            attn.push(AttnBlock::new(
                cfg,
                block_out,
                vb_level.pp(format!("attn.{i_block}")),
            )?);
        }
    }
    Ok((block, attn))
}

/// Image (b, 3, res, res) in [-1, 1] to latents (b, z_channels, grid, grid).
#[derive(Debug)]
pub(crate) struct Encoder {
    conv_in: Conv,
    down: Vec<Level>,
    mid: Mid,
    norm_out: Norm,
    conv_out: Conv,
}

impl Encoder {
    pub(crate) fn new(cfg: &VqganConfig, vb: VarBuilder) -> Result<Self> {
        let conv_in = conv(cfg.in_channels, cfg.ch, 3, vb.pp("conv_in"))?;
        let levels = cfg.ch_mult.len();
        let mut resolution = cfg.resolution;
        let mut block_in = cfg.ch;
        let mut down = Vec::with_capacity(levels);
        for (i_level, &mult) in cfg.ch_mult.iter().enumerate() {
            let vb_level = vb.pp(format!("down.{i_level}"));
            let block_out = cfg.ch * mult;
            let (block, attn) = level_blocks(
                cfg,
                &vb_level,
                block_in,
                block_out,
                cfg.num_res_blocks,
                resolution,
            )?;
            block_in = block_out;
            let resample = if i_level + 1 != levels {
                resolution /= 2;
                Some(downsample(block_in, vb_level.pp("downsample.conv"))?)
            } else {
                None
            };
            down.push(Level {
                block,
                attn,
                resample,
            });
        }
        Ok(Self {
            conv_in,
            down,
            mid: Mid::new(cfg, block_in, vb.pp("mid"))?,
            norm_out: norm(cfg, block_in, vb.pp("norm_out"))?,
            conv_out: conv(block_in, cfg.z_channels, 3, vb.pp("conv_out"))?,
        })
    }
}

impl Module for Encoder {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut hs = xs.apply(&self.conv_in)?;
        for level in &self.down {
            hs = level.forward(&hs)?;
        }
        self.norm_out
            .forward_silu(&hs.apply(&self.mid)?)?
            .apply(&self.conv_out)
    }
}

/// Latents (b, z_channels, grid, grid) to an image (b, 3, res, res) in about [-1, 1].
#[derive(Debug)]
pub(crate) struct Decoder {
    conv_in: Conv,
    mid: Mid,
    /// Stored lowest resolution last, as taming numbers them (`up.0` is the full size).
    up: Vec<Level>,
    norm_out: Norm,
    conv_out: Conv,
}

impl Decoder {
    pub(crate) fn new(cfg: &VqganConfig, vb: VarBuilder) -> Result<Self> {
        let levels = cfg.ch_mult.len();
        let mut block_in = cfg.decoder_base() * cfg.ch_mult[levels - 1];
        let mut resolution = cfg.grid_size();
        let conv_in = conv(cfg.z_channels, block_in, 3, vb.pp("conv_in"))?;
        let mid = Mid::new(cfg, block_in, vb.pp("mid"))?;
        let mut up = Vec::with_capacity(levels);
        for i_level in (0..levels).rev() {
            let vb_level = vb.pp(format!("up.{i_level}"));
            let block_out = cfg.decoder_base() * cfg.ch_mult[i_level];
            // One more block per level than the encoder, as taming has it.
            let blocks = cfg.num_res_blocks + 1;
            let (block, attn) =
                level_blocks(cfg, &vb_level, block_in, block_out, blocks, resolution)?;
            block_in = block_out;
            let resample = if i_level != 0 {
                resolution *= 2;
                Some(upsample(block_in, vb_level.pp("upsample.conv"))?)
            } else {
                None
            };
            up.push(Level {
                block,
                attn,
                resample,
            });
        }
        Ok(Self {
            conv_in,
            mid,
            up,
            norm_out: norm(cfg, block_in, vb.pp("norm_out"))?,
            conv_out: conv(block_in, cfg.out_ch, 3, vb.pp("conv_out"))?,
        })
    }
}

impl Module for Decoder {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut hs = xs.apply(&self.conv_in)?.apply(&self.mid)?;
        for level in &self.up {
            hs = level.forward(&hs)?;
        }
        self.norm_out.forward_silu(&hs)?.apply(&self.conv_out)
    }
}
