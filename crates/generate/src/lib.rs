//! racm3-generate: the CM3 decoder that writes images and text while reading retrieved
//! documents.
//!
//! The generation stage of the pipeline (data → tokenize → retrieve → **generate** →
//! evaluate). [`Cm3Model`] is the transformer over one id space ([`racm3_tokenize::IdSpace`]);
//! its decoding state is a [`KvCache`] the caller owns. [`sampler`] turns logits into
//! tokens, apart from the model: temperature, top-k, top-p, classifier-free guidance and
//! the constraint that image spans hold exactly a grid of image codes.
//! [`training_sequence`] lays out `[retrieved… main]` and [`rag_loss`] weighs its parts.
#![deny(missing_docs)]

mod config;
pub mod decode;
mod model;
pub mod sampler;
mod sequence;
#[cfg(feature = "train")]
mod train;

pub use config::{CaptionCopy, Config, ImageCopy, ImagePositions};
pub use model::{Cm3Model, Cm3Output, CopyMix, KvCache};
pub use sequence::{Loss, RETRIEVED_LOSS_WEIGHT, Role, Sequence, rag_loss, training_sequence};
#[cfg(feature = "train")]
pub use train::{Cm3TrainConfig, Cm3Trainer, CopyProbe, StepReport};
