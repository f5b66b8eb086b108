//! The external memory ([`racm3_memory`], re-exported whole) with what every front end
//! needs on top: opening one with the CLIP that keyed it, checked against its key size, and
//! adding documents in committed chunks, so the CLI, the server and the demo add the same
//! way.

use std::path::{Path, PathBuf};

use candle_core::Device;
use racm3_data::{Document, Progress};
use racm3_retrieve::ClipEncoder;

pub use racm3_memory::*;

use crate::error::WithContext;

/// Documents keyed in one batch and written in one commit: a crash loses at most one chunk.
pub const ADD_CHUNK: usize = 2048;

/// Opens the memory in `dir`, naming the folder in the error.
pub fn open(dir: &Path) -> Result<Memory, crate::Error> {
    Memory::open(dir).context(|| format!("opening the memory in {}", dir.display()))
}

/// Loads the CLIP folder `dir` on the CPU, naming it in the error.
pub fn load_clip(dir: &Path) -> Result<ClipEncoder, crate::Error> {
    ClipEncoder::load(dir, &Device::Cpu).context(|| {
        format!(
            "loading the CLIP in {} (train one with `racm3 clip train`)",
            dir.display()
        )
    })
}

/// The CLIP in `clip` if given, else the one `memory` records as its keys' maker; either way
/// one whose keys have the memory's size, laid out as the memory records.
pub fn encoder_for(memory: &Memory, clip: Option<&Path>) -> Result<ClipEncoder, crate::Error> {
    let recorded = memory.encoder()["name"].as_str().map(PathBuf::from);
    let Some(dir) = clip.map(Path::to_owned).or(recorded) else {
        return Err(crate::Error::BadInput(format!(
            "the memory in {} does not record its CLIP; pass --clip",
            memory.dir().display()
        )));
    };
    let layout = racm3_retrieve::KeyLayout::of_description(memory.encoder())
        .context(|| format!("opening the memory in {}", memory.dir().display()))?;
    let encoder = load_clip(&dir)?
        .with_layout(layout)
        .context(|| format!("opening the memory in {}", memory.dir().display()))?;
    if encoder.key_dim() != memory.dim() {
        return Err(crate::Error::BadInput(format!(
            "the CLIP in {} makes {}-d keys but the memory in {} holds {}-d keys; pass the --clip that built it",
            dir.display(),
            encoder.key_dim(),
            memory.dir().display(),
            memory.dim()
        )));
    }
    Ok(encoder)
}

/// Keys `documents` with `encoder` and adds them to `memory`, [`ADD_CHUNK`] at a time, each
/// chunk committed before the next: every id must be new. A chunk whose commit fails is
/// taken back out, so what a search sees is what is on disk; the chunks before it stay.
pub fn add_documents(
    memory: &mut Memory,
    encoder: &ClipEncoder,
    documents: &[Document],
    progress: &dyn Progress,
) -> Result<(), crate::Error> {
    progress.set_total(documents.len() as u64);
    for chunk in documents.chunks(ADD_CHUNK) {
        let keys = encoder.document_keys(chunk)?;
        add_keyed(memory, chunk, &keys)?;
        progress.advance(chunk.len() as u64);
    }
    Ok(())
}

/// Adds `documents` with their `keys` (n × dim) and commits; every id must be new. If the
/// commit fails the documents are taken back out, so what a search sees is what is on disk.
/// Keying apart from adding lets a server key without holding the memory's write lock.
pub fn add_keyed(
    memory: &mut Memory,
    documents: &[Document],
    keys: &[f32],
) -> Result<(), crate::Error> {
    memory.add(documents, keys)?;
    if let Err(error) = memory.commit() {
        for document in documents {
            // The documents were added just above, so each id is there to remove.
            let _ = memory.remove(document.id());
        }
        return Err(error.into());
    }
    Ok(())
}

/// What [`add_new_documents`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addition {
    /// Documents keyed and stored.
    pub added: usize,
    /// Documents left out because their ids were stored already.
    pub already_stored: usize,
}

/// [`add_documents`] for the documents whose ids `memory` does not hold yet (a knowledge
/// update that may be repeated).
pub fn add_new_documents(
    memory: &mut Memory,
    encoder: &ClipEncoder,
    documents: Vec<Document>,
    progress: &dyn Progress,
) -> Result<Addition, crate::Error> {
    let (fresh, present): (Vec<Document>, Vec<Document>) = documents
        .into_iter()
        .partition(|document| memory.row_of(document.id()).is_none());
    add_documents(memory, encoder, &fresh, progress)?;
    Ok(Addition {
        added: fresh.len(),
        already_stored: present.len(),
    })
}

/// Removes the documents `ids` and commits once; an unknown id is an error and removes
/// nothing on disk.
pub fn remove_documents(memory: &mut Memory, ids: &[String]) -> Result<(), crate::Error> {
    for id in ids {
        memory.remove(id)?;
    }
    memory.commit()?;
    Ok(())
}
