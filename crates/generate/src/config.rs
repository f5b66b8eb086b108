//! The CM3 decoder's shape, stored as `config.json` beside its weights.

use serde::{Deserialize, Serialize};

/// A CM3 decoder's hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Token ids are `0..vocab_size`: text BPE, image codes and specials (an `IdSpace`).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Width of each MLP's hidden layer.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub num_layers: usize,
    /// Attention heads; `hidden_size` must divide evenly.
    pub num_heads: usize,
    /// Longest sequence, retrieved documents included.
    pub max_seq_len: usize,
    /// Rotary embedding base (RoFormer's 10000).
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
}

impl Config {
    /// For tests: a few hundred thousand parameters.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 64,
            intermediate_size: 256,
            num_layers: 2,
            num_heads: 4,
            max_seq_len: 256,
            rope_theta: 10_000.0,
            norm_eps: 1e-5,
        }
    }

    /// Trains on emoji on two cores in under an hour: 4 layers of width 256. Its context
    /// holds three documents of 64 image tokens plus captions (K = 2 retrieved + main).
    pub fn small(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 256,
            intermediate_size: 1024,
            num_layers: 4,
            num_heads: 4,
            max_seq_len: 512,
            rope_theta: 10_000.0,
            norm_eps: 1e-5,
        }
    }

    /// The paper's RA-CM3 shape (Yasunaga et al., 2023, §4.1): 2.7B parameters, 32
    /// layers of width 2560 with 32 heads, for GPUs.
    pub fn ra_cm3_2_7b(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 2560,
            intermediate_size: 4 * 2560,
            num_layers: 32,
            num_heads: 32,
            max_seq_len: 4096,
            rope_theta: 10_000.0,
            norm_eps: 1e-5,
        }
    }

    /// A preset by name: `tiny`, `small` or `ra-cm3-2.7b`.
    pub fn preset(name: &str, vocab_size: usize) -> Option<Self> {
        match name {
            "tiny" => Some(Self::tiny(vocab_size)),
            "small" => Some(Self::small(vocab_size)),
            "ra-cm3-2.7b" => Some(Self::ra_cm3_2_7b(vocab_size)),
            _ => None,
        }
    }

    /// The preset names.
    pub const PRESETS: [&'static str; 3] = ["tiny", "small", "ra-cm3-2.7b"];

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Why this config cannot build a model, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.num_heads == 0 || !self.hidden_size.is_multiple_of(self.num_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_heads {}",
                self.hidden_size, self.num_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "head_dim {} must be even for rotary embeddings",
                self.head_dim()
            ));
        }
        if self.vocab_size == 0 || self.max_seq_len == 0 || self.num_layers == 0 {
            return Err("vocab_size, max_seq_len and num_layers must be positive".into());
        }
        Ok(())
    }
}
