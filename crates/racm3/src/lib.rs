//! racm3: retrieval-augmented multimodal language modeling (the RA-CM3 design,
//! Yasunaga et al., ICML 2023, arXiv:2211.12561), in Rust.
//!
//! This crate is the library's front door. It composes the pipeline's stages and
//! re-exports each one under its stage name, so a user depends on one crate:
//!
//! - [`data`]: documents and the readers that make them from real data;
//! - [`tokenize`]: text BPE, the VQGAN image tokenizer, the shared id space, CM3
//!   serialization and causal masking;
//! - [`train`]: training mechanics shared by every model (optimizer, checkpoints, logs);
//! - [`memory`]: the on-disk memory of documents and keys, with exact and HNSW search;
//! - [`retrieve`]: the CLIP encoder, document and query keys, and the retrieval policy;
//! - [`generate`]: the CM3 decoder, its KV cache, and the sampler's logits steps;
//! - [`evaluate`]: caption metrics with pycocoevalcap's numbers.
//!
//! It also composes them: [`corpus`] turns documents, a memory and the tokenizers into
//! the generator's retrieval-augmented training sequences, and [`tasks`] runs RA-CM3's
//! tasks (caption to image, image to caption, infilling, few-shot in context) with the
//! retrieved documents in front of each prompt, and [`scores`] has the scores that need
//! racm3's CLIP (CLIPScore, RefCLIPScore, CLIP-FID).
#![deny(missing_docs)]

pub mod corpus;
mod error;
pub mod scores;
pub mod tasks;

pub use candle_core::Device;
pub use error::Error;
pub use racm3_data as data;
pub use racm3_evaluate as evaluate;
pub use racm3_generate as generate;
pub use racm3_memory as memory;
pub use racm3_retrieve as retrieve;
pub use racm3_tokenize as tokenize;
pub use racm3_train as train;
