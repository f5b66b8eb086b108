//! racm3-generate: the CM3 decoder that writes images and text while reading retrieved
//! documents.
//!
//! The generation stage of the pipeline (data → tokenize → retrieve → **generate** →
//! evaluate). [`Cm3Model`] is the transformer over one id space ([`racm3_tokenize::IdSpace`]);
//! its decoding state is a [`KvCache`] the caller owns. [`sampler`] turns logits into
//! tokens, apart from the model: temperature, top-k, top-p, classifier-free guidance and
//! the constraint that image spans hold exactly a grid of image codes.
#![deny(missing_docs)]

mod config;
mod model;
pub mod sampler;

pub use config::Config;
pub use model::{Cm3Model, KvCache};
