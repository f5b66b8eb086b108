//! Knowledge update: what RA-CM3 draws for the held-out entities before and after their
//! documents enter the memory, with no retraining in between.
//!
//! It copies the evaluation memory, removes every document of a held-out entity (the
//! Noto drawings), draws each held-out caption, adds the documents back with their keys
//! (the update: `Memory::add` and a commit), and draws again with the same seeds.

use std::path::Path;
use std::time::Instant;

use racm3_data::Document;
use racm3_memory::Memory;
use racm3_retrieve::{ClipEncoder, RetrievalPolicy};
use serde_json::{Value, json};

use super::images::{Drawing, ImageScoring, Prompting};
use crate::Error;
use crate::error::WithContext;
use crate::progress::Observer;
use crate::tasks::{Generator, Retriever};

/// Copies the memory folder `from` into `to` (replaced if present).
fn copy_memory(from: &Path, to: &Path) -> Result<(), Error> {
    let io = |err: std::io::Error| Error::BadInput(err.to_string());
    if to.exists() {
        std::fs::remove_dir_all(to)
            .map_err(io)
            .context(|| format!("removing {}", to.display()))?;
    }
    let copy = || -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name()))?;
            }
        }
        Ok(())
    };
    copy().map_err(io).context(|| {
        format!(
            "copying the memory in {} to {}",
            from.display(),
            to.display()
        )
    })
}

/// The RA generator's caption-to-image scores on `held_out` before and after their
/// entities' documents join a copy of the memory in `out/knowledge-memory`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    ra: &Generator,
    clip: &ClipEncoder,
    scoring: &ImageScoring,
    memory_dir: &Path,
    held_out: &[Document],
    policy: RetrievalPolicy,
    draw: &Drawing,
    out: &Path,
    observer: &dyn Observer,
) -> Result<Value, Error> {
    let copy = out.join("knowledge-memory");
    copy_memory(memory_dir, &copy)?;
    let mut memory = Memory::open(&copy)?;
    let entities: std::collections::HashSet<&str> =
        held_out.iter().map(|d| d.source.entity.as_str()).collect();
    let mut removed: Vec<Document> = Vec::new();
    let mut keys: Vec<f32> = Vec::new();
    let rows: Vec<u64> = memory
        .ids()
        .filter_map(|id| memory.row_of(id))
        .collect::<Vec<_>>();
    for row in rows {
        let document = memory.document(row)?;
        if entities.contains(document.source.entity.as_str()) {
            let key = memory.key(row).ok_or_else(|| {
                Error::BadInput(format!("row {row} of {} has no key", copy.display()))
            })?;
            keys.extend_from_slice(key);
            removed.push(document);
        }
    }
    if removed.is_empty() {
        return Err(Error::BadInput(format!(
            "the memory in {} holds no document of a held-out entity: nothing to add back",
            memory_dir.display()
        )));
    }
    for document in &removed {
        memory.remove(document.id())?;
    }
    memory.commit()?;
    let mut phases = serde_json::Map::new();
    let mut update_seconds = 0.0;
    for phase in ["before", "after"] {
        if phase == "after" {
            let started = Instant::now();
            memory.add(&removed, &keys)?;
            memory.commit()?;
            update_seconds = started.elapsed().as_secs_f64();
        }
        let retriever = Retriever {
            encoder: clip,
            memory: &memory,
            policy,
        };
        let label = format!("knowledge update, {phase}");
        let (mut summary, first) = scoring.over_seeds(
            ra,
            held_out,
            Prompting::Retrieved(&retriever),
            draw,
            &label,
            observer,
        )?;
        let same_entity = first.map_or(0, |drawn| drawn.same_entity);
        summary["memory_documents"] = json!(memory.len());
        summary["retrieved_same_entity_share"] = json!(same_entity as f64 / held_out.len() as f64);
        phases.insert(phase.to_owned(), summary);
    }
    Ok(json!({
        "documents_added": removed.len(),
        "update_seconds": update_seconds,
        "phases": phases,
    }))
}
