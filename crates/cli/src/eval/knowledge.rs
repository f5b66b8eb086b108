//! Knowledge update: what RA-CM3 draws for the held-out entities before and after their
//! documents enter the memory, with no retraining in between.
//!
//! It copies the evaluation memory, removes every document of a held-out entity (the
//! Noto drawings), draws each held-out caption, adds the documents back with their keys
//! (the update: `Memory::add` and a commit), and draws again with the same seeds.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result};
use racm3::data::Document;
use racm3::memory::Memory;
use racm3::retrieve::{ClipEncoder, RetrievalPolicy};
use racm3::tasks::{Generator, Retriever};
use serde_json::{Value, json};

use super::ImageScoring;

/// Copies the memory folder `from` into `to` (replaced if present).
fn copy_memory(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to).with_context(|| format!("removing {}", to.display()))?;
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    ra: &Generator,
    clip: &ClipEncoder,
    scoring: &ImageScoring,
    memory_dir: &Path,
    held_out: &[Document],
    policy: RetrievalPolicy,
    seeds: u64,
    cfg: f32,
    out: &Path,
) -> Result<Value> {
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
            keys.extend_from_slice(memory.key(row).context("a live row has a key")?);
            removed.push(document);
        }
    }
    anyhow::ensure!(
        !removed.is_empty(),
        "the memory in {} holds no document of a held-out entity: nothing to add back",
        memory_dir.display()
    );
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
        let (mut summary, first) =
            scoring.over_seeds(ra, held_out, Some(&retriever), seeds, cfg, &label)?;
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
