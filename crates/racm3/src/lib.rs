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
//! - [`kernels`]: the CPU kernels the models and the memory run on;
//! - [`retrieve`]: the CLIP encoder, document and query keys, and the retrieval policy;
//! - [`generate`]: the CM3 decoder, its KV cache, and the sampler's logits steps;
//! - [`evaluate`]: caption metrics with pycocoevalcap's numbers.
//!
//! It also composes them, so the CLI, the server and other programs share one library:
//! - [`memory`]: the memory crate, plus opening a memory with the CLIP that keyed it and
//!   adding documents in committed chunks;
//! - [`datasets`]: datasets by name, fetched on first use;
//! - [`run`]: a generator training run: its one settings struct, the retrieval-augmented
//!   corpus and its caches ([`run::corpus`]), and resuming;
//! - [`tasks`]: RA-CM3's tasks (caption to image, image to caption, infilling, few-shot in
//!   context) with the retrieved documents in front of each prompt;
//! - [`training`]: training the VQGAN and the CLIP on datasets by name;
//! - [`experiment`]: what `racm3 eval` measures, as a report value;
//! - [`scores`]: the scores that need racm3's CLIP (CLIPScore, RefCLIPScore, CLIP-FID);
//! - [`progress`]: how long work reports itself ([`progress::Observer`]).
#![deny(missing_docs)]

pub mod datasets;
mod error;
pub mod experiment;
pub mod memory;
pub mod progress;
pub mod run;
pub mod scores;
pub mod tasks;
pub mod training;

pub use candle_core::Device;
pub use error::Error;
pub use racm3_data as data;
pub use racm3_evaluate as evaluate;
pub use racm3_generate as generate;
pub use racm3_kernels as kernels;
pub use racm3_retrieve as retrieve;
pub use racm3_tokenize as tokenize;
pub use racm3_train as train;

/// The device a `--device` flag names: `cpu`, or `cuda` (GPU 0), `cuda:N`.
pub fn device(name: &str) -> Result<Device, Error> {
    let ordinal = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(ordinal)) => ordinal,
            _ => {
                return Err(Error::BadInput(format!(
                    "unknown device '{name}': expected cpu, cuda or cuda:N"
                )));
            }
        },
    };
    Device::new_cuda(ordinal).map_err(|err| {
        Error::BadInput(format!(
            "cannot use {name}: {err} (a GPU build needs `cargo build --release -p racm3-cli --features cuda`)"
        ))
    })
}
