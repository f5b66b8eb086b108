//! racm3-retrieve: the retriever of RA-CM3.
//!
//! The retrieval stage of the pipeline (data → tokenize → **retrieve** → generate →
//! evaluate). A CLIP dual encoder ([`clip`]) loads Hugging Face checkpoints or trains here
//! contrastively ([`train`]); [`ClipEncoder`] turns documents and text/image queries into
//! unit keys; [`policy`] applies RA-CM3's retrieval rules over a
//! [`racm3_memory::Memory`]; [`recall_at_k`] measures a CLIP on held-out pairs.
#![deny(missing_docs)]

pub mod clip;
mod encoder;
mod error;
mod pixel_keys;
pub mod policy;
mod preprocess;
mod recall;
pub mod train;

pub use encoder::{
    CAPTION_SCORE_WEIGHT, ClipEncoder, ClipTokenizer, END_TOKEN, KeyLayout, Query, START_TOKEN,
    SearchQuery, document_text,
};
pub use error::{Error, Result};
pub use pixel_keys::{PIXEL_KEYS_FILE, PixelKeyOptions, PixelKeys};
pub use policy::{
    DEFAULT_K, DEFAULT_SEARCH_K, DEFAULT_THRESHOLD, MAX_PROMPT_K, QUERY_DROPOUT, Retrieval,
    RetrievalPolicy, Retrieved, TrainingQuery, retrieve, retrieve_for_query, retrieve_for_training,
};
pub use preprocess::{OPENAI_MEAN, OPENAI_STD, pixel_values};
pub use recall::{ENTITY_RECALL_AT, EntityRecall, Recall, entity_recall, recall_at_k};
pub use train::{ClipTrainConfig, ClipTrainer};
