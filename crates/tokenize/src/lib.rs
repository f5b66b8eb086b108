//! racm3-tokenize: turns documents into one sequence of token ids and back.
//!
//! The second stage of the pipeline (data → **tokenize** → retrieve → generate →
//! evaluate). Text goes through a byte-level BPE ([`TextTokenizer`], the `tokenizers`
//! crate); images go through a codebook (the VQGAN); both share one [`IdSpace`] with
//! racm3's special tokens. [`Cm3Codec`] writes a document CM3-style,
//! `<img alt="caption" src="[image tokens]">`, and reads it back exactly; [`causal_mask`]
//! applies CM3's causal-masking objective and [`restore`] undoes it.
#![deny(missing_docs)]

mod cm3;
mod error;
mod ids;
mod masking;
mod text;
pub mod vqgan;

pub use cm3::{Cm3Codec, Segment, canonical, segments_of};
pub use error::{Error, Result};
pub use ids::{IdSpace, MASK_COUNT, Special, Token};
pub use masking::{CausalMasked, caption_mask, causal_mask, causal_mask_seeded, restore};
pub use text::{TextTokenizer, TrainOptions};
