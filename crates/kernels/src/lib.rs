//! racm3-kernels: the CPU kernels under racm3's models and memory, in one place.
//!
//! candle's CPU backend runs a model as a chain of small generic ops, each with its own
//! pass over memory and its own allocation; where a profile showed one of those chains
//! dominating a step, racm3 replaced it with one fused kernel here (a candle custom op with
//! its backward pass, where training needs one). Each kernel keeps candle's result to float
//! noise and is tested against candle's own ops. Hot loops are compiled twice and the
//! AVX2 + FMA build is chosen at run time where the CPU has it.
//!
//! - [`dot`]: inner products for search, four rows at a time, and of quantized codes (the
//!   memory's flat and HNSW indexes); plain slices, no tensor library needed.
//! - [`attention`]: one new query per sequence over its KV cache (decoding).
//! - [`gelu`] and [`cross_entropy`]: the transformer's activation and its loss.
//! - [`dense`]: a linear layer as one matrix product over all leading dimensions.
//! - [`row_norm`]: LayerNorm's and RMSNorm's normalization over the last dimension.
//! - [`conv`] and [`norm`]: the VQGAN's convolutions (im2col and products, resampling
//!   folded in) and GroupNorm (with the SiLU after it).
//!
//! The `candle` feature (on by default) brings the model kernels; without it only [`dot`]
//! remains.
#![deny(missing_docs)]

pub mod dot;
#[cfg(feature = "candle")]
mod simd;

#[cfg(feature = "candle")]
pub mod attention;
#[cfg(feature = "candle")]
pub mod conv;
#[cfg(feature = "candle")]
pub mod cross_entropy;
#[cfg(feature = "candle")]
pub mod dense;
#[cfg(feature = "candle")]
pub mod gelu;
#[cfg(feature = "candle")]
pub mod norm;
#[cfg(feature = "candle")]
mod parity;
#[cfg(feature = "candle")]
pub mod row_norm;
#[cfg(feature = "candle")]
mod storage;

pub use dot::dot;
#[cfg(feature = "candle")]
pub use parity::max_abs_diff;
#[cfg(feature = "candle")]
pub use storage::{contiguous_f32, storage_f32};
