//! racm3-train: the training mechanics every racm3 model shares, and nothing about any
//! model.
//!
//! The VQGAN, CLIP and CM3 trainers each own their loss and data; they share [`AdamW`]
//! with state that saves and restores (candle's own keeps its moments private, so a run
//! could not resume exactly), seeded initialization, [`Checkpoints`] that are never half-written, learning-rate
//! schedules, gradient clipping, a [`LossLog`] written as CSV and drawn as PNG, and
//! [`max_abs_diff`] for parity checks, [`contiguous_f32`] for the models' CPU kernels, and
//! [`keep_freed_memory`], which spares candle's CPU training the kernel's page faults.
#![deny(missing_docs)]

mod allocator;
mod checkpoint;
mod error;
mod init;
mod kernel;
mod log;
mod optim;
mod parity;
mod schedule;

pub use allocator::keep_freed_memory;
pub use checkpoint::{
    Checkpoints, OPTIMIZER_FILE, STATE_FILE, WEIGHTS_FILE, load_training_state, load_vars,
    load_vars_where, save_tensors, save_training_state, save_vars,
};
pub use error::{Error, Result};
pub use init::seeded_var_builder;
pub use kernel::{contiguous_f32, storage_f32};
pub use log::LossLog;
pub use optim::{AdamW, AdamWConfig, clip_grad_norm};
pub use parity::max_abs_diff;
pub use schedule::warmup_cosine;
