//! racm3-memory: the external memory that RA-CM3 retrieves from.
//!
//! The retrieval stage of the pipeline (data → tokenize → **retrieve** → generate →
//! evaluate) needs a store of documents and their dense keys with maximum-inner-product
//! search (MIPS). This crate is that store, independent of how keys are made: it works in
//! `f32` rows and document ids and never runs a model.
//!
//! - [`index`]: vector indexes shaped like faiss's `Index` ([`VectorIndex`]): exact
//!   [`FlatIndex`] and approximate [`HnswIndex`], built from a spec by [`index_factory`],
//!   and [`PgVectorIndex`], keys sharded over PostgreSQL + pgvector servers.
//! - [`Memory`]: a folder of documents, keys and an index, with versioned, checksummed
//!   files, atomic commits, `add` after the build and `remove` by id, one writer at a
//!   time.
#![deny(missing_docs)]

mod error;
mod file;
pub mod index;
mod lock;
mod record;
mod store;
#[cfg(any(test, feature = "testing"))]
pub mod synthetic;
mod topk;

pub use error::{Error, Result};
pub use index::{
    FlatIndex, Hit, HnswConfig, HnswIndex, IndexSpec, PgVectorIndex, SearchParams, VectorIndex,
    index_factory,
};
pub use racm3_kernels::dot;
#[cfg(feature = "testing")]
pub use store::parse_any_file;
pub use store::{AUTO_MERGE_SEGMENTS, Compaction, MAX_ID_BYTES, Memory, MemorySearch};
