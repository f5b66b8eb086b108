//! racm3-train: the training mechanics every racm3 model shares, and nothing about any
//! model.
//!
//! The VQGAN, CLIP and CM3 trainers each own their loss and data; they share one [`Run`]
//! (a folder opened fresh or resumed, its variables and their optimizers, step, loss log
//! and checkpoints), [`AdamW`]
//! with state that saves and restores (candle's own keeps its moments private, so a run
//! could not resume exactly), seeded initialization, [`Checkpoints`] that are never half-written, learning-rate
//! schedules, gradient clipping, a [`LossLog`] written as CSV and drawn as PNG, and
//! [`keep_freed_memory`], which spares candle's CPU training the kernel's page faults.
#![deny(missing_docs)]

mod allocator;
mod checkpoint;
mod error;
mod init;
mod log;
mod optim;
mod run;
mod schedule;

pub use allocator::keep_freed_memory;
pub use checkpoint::{
    Checkpoints, OPTIMIZER_FILE, STATE_FILE, WEIGHTS_FILE, load_vars, load_vars_where,
    save_tensors, save_vars,
};
pub use error::{Error, Result};
pub use init::seeded_var_builder;
pub use log::LossLog;
pub use optim::{AdamW, AdamWConfig, clip_grad_norm};
pub use run::{MODEL, Run};
pub use schedule::warmup_cosine;
