//! VQGAN configuration, stored as `config.json` beside the weights.

use serde::{Deserialize, Serialize};

/// How the quantizer finds a latent's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodebookKind {
    /// Nearest code by Euclidean distance, as taming's `VectorQuantizer`.
    #[default]
    Euclidean,
    /// Latents and codes l2-normalized, nearest by cosine (Yu et al., ViT-VQGAN, 2022):
    /// every code sits on the unit sphere, which keeps far more of the codebook in use.
    Cosine,
}

/// A VQGAN's shape. Field names follow taming's `ddconfig` so its YAML maps over directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VqganConfig {
    /// Side of the (square) input image, pixels.
    pub resolution: usize,
    /// Image channels in (3).
    pub in_channels: usize,
    /// Image channels out (3).
    pub out_ch: usize,
    /// Base channel count.
    pub ch: usize,
    /// Channel multiplier per level; each level but the last halves the resolution.
    pub ch_mult: Vec<usize>,
    /// Residual blocks per encoder level (the decoder has one more).
    pub num_res_blocks: usize,
    /// Resolutions at which blocks are followed by self-attention.
    pub attn_resolutions: Vec<usize>,
    /// Latent channels out of the encoder.
    pub z_channels: usize,
    /// Code vector size.
    pub embed_dim: usize,
    /// Codebook entries: the image vocabulary.
    pub n_embed: usize,
    /// GroupNorm groups; taming uses 32.
    #[serde(default = "default_norm_groups")]
    pub norm_groups: usize,
    /// How codes are looked up.
    #[serde(default)]
    pub codebook: CodebookKind,
    /// Base channel count of the decoder where it differs from the encoder's `ch`: a
    /// decoder widened after the encoder and codebook were trained (`vq train
    /// --decoder-only --decoder-ch N`), which keeps every image's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_ch: Option<usize>,
}

fn default_norm_groups() -> usize {
    32
}

impl VqganConfig {
    /// 64x64 RGB to an 8x8 grid (64 tokens) over 512 codes: the emoji tokenizer.
    pub fn emoji64_f8() -> Self {
        Self {
            resolution: 64,
            in_channels: 3,
            out_ch: 3,
            // 16 channels, trained on two CPU cores, reached 18.0 dB on val; 32, trained on
            // a GPU, 20.45 dB with the same grid and codebook, and 22.04 once trained on with
            // an L2 loss (BENCHMARKS.md).
            ch: 32,
            ch_mult: vec![1, 2, 4, 4],
            num_res_blocks: 1,
            attn_resolutions: vec![8],
            z_channels: 32,
            // Small code vectors on the unit sphere: cosine lookup keeps most codes alive.
            embed_dim: 32,
            n_embed: 512,
            norm_groups: 8,
            codebook: CodebookKind::Cosine,
            decoder_ch: None,
        }
    }

    /// taming's `vqgan_imagenet_f16_1024` (configs/imagenet_vqgan.yaml): 256x256 to 16x16.
    pub fn taming_f16_1024() -> Self {
        Self {
            resolution: 256,
            in_channels: 3,
            out_ch: 3,
            ch: 128,
            ch_mult: vec![1, 1, 2, 2, 4],
            num_res_blocks: 2,
            attn_resolutions: vec![16],
            z_channels: 256,
            embed_dim: 256,
            n_embed: 1024,
            norm_groups: 32,
            codebook: CodebookKind::Euclidean,
            decoder_ch: None,
        }
    }

    /// taming's `vqgan_imagenet_f16_16384`: as `taming_f16_1024` with 16,384 codes.
    pub fn taming_f16_16384() -> Self {
        Self {
            n_embed: 16384,
            ..Self::taming_f16_1024()
        }
    }

    /// A tiny shape for tests: 16x16 to a 4x4 grid.
    pub fn tiny() -> Self {
        Self {
            resolution: 16,
            in_channels: 3,
            out_ch: 3,
            ch: 8,
            ch_mult: vec![1, 2, 2],
            num_res_blocks: 1,
            attn_resolutions: vec![4],
            z_channels: 8,
            embed_dim: 4,
            n_embed: 32,
            norm_groups: 4,
            codebook: CodebookKind::Euclidean,
            decoder_ch: None,
        }
    }

    /// A preset by name.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "emoji64-f8" => Some(Self::emoji64_f8()),
            "taming-f16-1024" => Some(Self::taming_f16_1024()),
            "taming-f16-16384" => Some(Self::taming_f16_16384()),
            "tiny" => Some(Self::tiny()),
            _ => None,
        }
    }

    /// The preset names, for help texts.
    pub const PRESETS: [&str; 4] = ["emoji64-f8", "taming-f16-1024", "taming-f16-16384", "tiny"];

    /// Side of the latent grid.
    pub fn grid_size(&self) -> usize {
        self.resolution >> (self.ch_mult.len() - 1)
    }

    /// Base channel count of the decoder.
    pub fn decoder_base(&self) -> usize {
        self.decoder_ch.unwrap_or(self.ch)
    }

    /// Image tokens per image.
    pub fn tokens_per_image(&self) -> usize {
        self.grid_size() * self.grid_size()
    }

    /// The widest layer a config may ask for: 8 times taming's widest (512), a 3x3
    /// convolution of 600 MB.
    pub const MAX_CHANNELS: usize = 4096;

    /// Checks what the model code relies on, naming the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.ch_mult.is_empty() {
            return Err("ch_mult is empty".into());
        }
        let downsampling = 1 << (self.ch_mult.len() - 1);
        if self.resolution == 0 || !self.resolution.is_multiple_of(downsampling) {
            return Err(format!(
                "resolution {} is not a multiple of the downsampling factor {downsampling}",
                self.resolution
            ));
        }
        if self.ch == 0 || self.decoder_base() == 0 {
            return Err("ch and decoder_ch must be positive".into());
        }
        let mut channels: Vec<usize> = [self.ch, self.decoder_base()]
            .iter()
            .flat_map(|&base| self.ch_mult.iter().map(move |m| m.saturating_mul(base)))
            .collect();
        channels.extend([self.ch, self.decoder_base()]);
        // A typo such as ch 100000 would otherwise abort on allocating its weights.
        if let Some(bad) = channels.iter().find(|&&c| c > Self::MAX_CHANNELS) {
            return Err(format!(
                "a layer of {bad} channels is wider than the {} allowed",
                Self::MAX_CHANNELS
            ));
        }
        if let Some(bad) = channels
            .iter()
            .find(|&&c| self.norm_groups == 0 || c % self.norm_groups != 0)
        {
            return Err(format!(
                "{bad} channels do not split into {} norm groups",
                self.norm_groups
            ));
        }
        if self.n_embed == 0 || self.embed_dim == 0 {
            return Err("n_embed and embed_dim must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shapes the model code cannot build are refused, each naming what is wrong.
    #[test]
    fn validate_names_the_bad_field() {
        assert!(VqganConfig::emoji64_f8().validate().is_ok());
        let zero_decoder = VqganConfig {
            decoder_ch: Some(0),
            ..VqganConfig::tiny()
        };
        assert_eq!(
            zero_decoder.validate().unwrap_err(),
            "ch and decoder_ch must be positive"
        );
        let odd_decoder = VqganConfig {
            decoder_ch: Some(6),
            ..VqganConfig::tiny()
        };
        assert_eq!(
            odd_decoder.validate().unwrap_err(),
            "6 channels do not split into 4 norm groups"
        );
        let huge = VqganConfig {
            ch: 100_000,
            ..VqganConfig::tiny()
        };
        assert_eq!(
            huge.validate().unwrap_err(),
            "a layer of 100000 channels is wider than the 4096 allowed"
        );
    }
}
