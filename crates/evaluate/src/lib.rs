//! racm3-evaluate: the metrics RA-CM3 is judged by, computed as their reference
//! implementations compute them.
//!
//! The evaluation stage of the pipeline (data → tokenize → retrieve → generate →
//! **evaluate**). [`captions`] scores captions against references: the PTB tokenization
//! that pycocoevalcap applies first ([`ptb_tokenize`]), CIDEr-D ([`cider_d`]) and ROUGE-L
//! ([`rouge_l`]), with per-image scores equal to pycocoevalcap's within 1e-9 (a test checks
//! them against a committed fixture made with pycocoevalcap 1.2). [`coco`] reads COCO's
//! caption formats, so a user's own files score unchanged. [`fid`] is FID with the
//! standard Inception-v3 (features within 1e-3 of the TorchScript network's), its
//! Frechet distance in f64 (within 1e-6 of scipy's sqrtm), and KID.
#![deny(missing_docs)]

pub mod captions;
pub mod coco;
mod error;
pub mod fid;

pub use captions::{CaptionScores, bleu, cider_d, ptb_tokenize, rouge_l, score_captions};
pub use error::Error;
