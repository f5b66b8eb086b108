//! A PatchGAN discriminator (Isola et al., 2017, arXiv:1611.07004), as VQGAN trains with:
//! it scores overlapping patches real or fake, which pushes the decoder toward sharp
//! edges that an L1 loss alone blurs. GroupNorm stands in for taming's BatchNorm so that
//! training and evaluation behave the same at small batch sizes.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, GroupNorm, VarBuilder};

/// Base channels and depth of the discriminator.
#[derive(Debug, Clone, Copy)]
pub struct DiscriminatorConfig {
    /// Channels of the first layer.
    pub ndf: usize,
    /// Stride-2 layers after the first.
    pub n_layers: usize,
}

impl Default for DiscriminatorConfig {
    fn default() -> Self {
        // Two stride-2 layers: 16x16 patch scores from a 64x64 image.
        Self {
            ndf: 32,
            n_layers: 2,
        }
    }
}

#[derive(Debug)]
struct Layer {
    conv: Conv2d,
    norm: Option<GroupNorm>,
}

/// The discriminator: (b, 3, h, w) images to (b, 1, h', w') patch logits.
#[derive(Debug)]
pub struct Discriminator {
    layers: Vec<Layer>,
    head: Conv2d,
}

impl Discriminator {
    /// Builds it from `vb`.
    pub fn new(cfg: &DiscriminatorConfig, vb: VarBuilder) -> Result<Self> {
        let conv = |in_ch, out_ch, stride, vb: VarBuilder| {
            let cfg = Conv2dConfig {
                padding: 1,
                stride,
                ..Default::default()
            };
            candle_nn::conv2d(in_ch, out_ch, 4, cfg, vb)
        };
        let mut layers = vec![Layer {
            conv: conv(3, cfg.ndf, 2, vb.pp("layers.0.conv"))?,
            norm: None,
        }];
        let mut channels = cfg.ndf;
        for i in 1..=cfg.n_layers {
            let out_ch = cfg.ndf * (1 << i.min(3));
            let stride = if i == cfg.n_layers { 1 } else { 2 };
            let vb_layer = vb.pp(format!("layers.{i}"));
            layers.push(Layer {
                conv: conv(channels, out_ch, stride, vb_layer.pp("conv"))?,
                norm: Some(candle_nn::group_norm(8, out_ch, 1e-5, vb_layer.pp("norm"))?),
            });
            channels = out_ch;
        }
        Ok(Self {
            layers,
            head: conv(channels, 1, 1, vb.pp("head"))?,
        })
    }
}

impl Module for Discriminator {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut hs = xs.clone();
        for layer in &self.layers {
            hs = hs.apply(&layer.conv)?;
            if let Some(norm) = &layer.norm {
                hs = hs.apply(norm)?;
            }
            // leaky ReLU(0.2) from max/min, both of which pass gradients back.
            hs = candle_nn::ops::leaky_relu(&hs, 0.2)?;
        }
        hs.apply(&self.head)
    }
}
