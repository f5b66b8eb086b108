//! The memory folder: documents and their keys in append-only segments, one index over
//! the keys, and a manifest that says which files make up the current state.
//!
//! ```text
//! MEM/manifest.bin            which segments, graph and removals are live (JSON payload)
//! MEM/documents-000001.bin    a segment's documents (JSON + PNG records)
//! MEM/keys-000001.bin         the same segment's keys, n × d f32
//! MEM/graph-000001.bin        the HNSW graph over all keys (hnsw memories only)
//! ```
//! A commit writes the new segment and graph, then replaces the manifest: that rename is
//! the commit point. A crash before it leaves the previous manifest and its files intact,
//! so the memory reopens in its last committed state; the stray files are overwritten or
//! removed by the next commit.
//!
//! Writers take the folder's write lock (`MEM/writer.lock`, [`crate::lock`]) at their first
//! change, reloading the committed state if another writer committed since they opened it;
//! readers never lock.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use racm3_data::Document;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::file::{self, Kind};
use crate::index::{
    FlatIndex, Hit, HnswConfig, HnswIndex, IndexSpec, PgVectorIndex, SearchParams, VectorIndex,
    check_k, check_rows,
};
use crate::lock::WriterLock;
use crate::record;

const MANIFEST: &str = "manifest.bin";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    dim: usize,
    /// "flat" or "hnsw<M>".
    index: String,
    generation: u64,
    segments: Vec<Segment>,
    graph: Option<String>,
    /// Rows removed since they were added; their ids no longer resolve.
    removed: Vec<u64>,
    /// Who made the keys (the encoder's name and settings); queries must use the same.
    encoder: serde_json::Value,
    /// For a pgvector memory: the servers' connection strings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    servers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Segment {
    documents: String,
    keys: String,
    count: usize,
}

/// The keys with the chosen index over them. An HNSW index owns its flat storage, so the
/// keys are held once either way. A pgvector memory searches on its servers and keeps the
/// committed keys here too, as the truth the servers are re-synced from.
enum Keys {
    Flat(FlatIndex),
    Hnsw(HnswIndex),
    Remote {
        local: FlatIndex,
        remote: PgVectorIndex,
    },
}

impl Keys {
    fn exact(&self) -> &FlatIndex {
        match self {
            Keys::Flat(flat) => flat,
            Keys::Hnsw(hnsw) => hnsw.storage(),
            Keys::Remote { local, .. } => local,
        }
    }

    fn index(&self) -> &dyn VectorIndex {
        match self {
            Keys::Flat(flat) => flat,
            Keys::Hnsw(hnsw) => hnsw,
            Keys::Remote { remote, .. } => remote,
        }
    }

    fn add(&mut self, keys: &[f32]) -> Result<()> {
        match self {
            Keys::Flat(flat) => flat.add(keys),
            Keys::Hnsw(hnsw) => hnsw.add(keys),
            Keys::Remote { local, remote } => {
                remote.add(keys)?;
                local.add(keys)
            }
        }
    }
}

/// Where a document's record lives: its segment's payload and byte range.
struct Row {
    id: String,
    segment: usize,
    range: Range<usize>,
}

/// How to search a memory.
#[derive(Clone, Copy, Default)]
pub struct MemorySearch<'a> {
    /// Use exact search even when the memory has an approximate index.
    pub exact: bool,
    /// HNSW's candidate list size, `None` for the index's default.
    pub ef_search: Option<usize>,
    /// Rows for which this returns false are skipped (a query document's own row).
    pub keep: Option<&'a (dyn Fn(u64) -> bool + Sync)>,
}

/// A persistent store of documents and their keys with maximum-inner-product search.
/// Changes ([`Memory::add`], [`Memory::remove`]) are visible to searches at once and
/// reach the disk at [`Memory::commit`]; dropping the memory without committing discards
/// them.
pub struct Memory {
    dir: PathBuf,
    manifest: Manifest,
    /// Documents payloads: one per committed segment, then the uncommitted one.
    payloads: Vec<Vec<u8>>,
    rows: Vec<Row>,
    removed: Vec<bool>,
    live: HashMap<String, u64>,
    keys: Keys,
    /// Rows added since the last commit start here.
    committed_rows: usize,
    dirty: bool,
    /// Held from this process's first change until the memory is dropped.
    writer: Option<WriterLock>,
    /// Whether taking the write lock waits for another writer instead of failing.
    wait_for_writer: bool,
}

impl Memory {
    /// Creates an empty memory in `dir` (created if missing, and must not hold a memory)
    /// whose keys have dimension `dim`, searched with the index `spec` ("flat", "hnsw32").
    /// `encoder` records what makes the keys, for the queries to match.
    pub fn create(dir: &Path, dim: usize, spec: &str, encoder: serde_json::Value) -> Result<Self> {
        Self::create_on_servers(dir, dim, spec, &[], encoder)
    }

    /// [`Memory::create`] for any spec, including `pgvector:<table>`, whose keys are
    /// searched on `servers` (libpq connection strings, recorded in the manifest).
    pub fn create_on_servers(
        dir: &Path,
        dim: usize,
        spec: &str,
        servers: &[String],
        encoder: serde_json::Value,
    ) -> Result<Self> {
        if dir.join(MANIFEST).exists() {
            return Err(Error::Io {
                path: dir.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already holds a memory; open it to add documents, or choose another folder",
                ),
            });
        }
        let spec = IndexSpec::parse(spec)?;
        let keys = new_keys(&spec, dim, servers, FlatIndex::new(dim))?;
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let writer = WriterLock::take(dir, false)?;
        let manifest = Manifest {
            dim,
            index: spec.to_string(),
            generation: 0,
            segments: Vec::new(),
            graph: None,
            removed: Vec::new(),
            encoder,
            servers: servers.to_vec(),
        };
        let mut memory = Self::from_parts(dir, manifest, keys);
        memory.write_manifest()?;
        memory.writer = Some(writer);
        Ok(memory)
    }

    fn from_parts(dir: &Path, manifest: Manifest, keys: Keys) -> Self {
        Self {
            writer: None,
            wait_for_writer: false,
            dir: dir.to_owned(),
            manifest,
            payloads: vec![Vec::new()],
            rows: Vec::new(),
            removed: Vec::new(),
            live: HashMap::new(),
            keys,
            committed_rows: 0,
            dirty: false,
        }
    }

    /// Opens the last committed state of the memory in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut tries = 0;
        loop {
            let manifest = read_manifest(dir)?;
            let generation = manifest.generation;
            match Self::open_manifest(dir, manifest) {
                Ok(memory) => return Ok(memory),
                // A writer committed (and removed the files this manifest named) while
                // they were read: the newer state is the one to open.
                Err(_)
                    if tries < 3
                        && read_manifest(dir).is_ok_and(|now| now.generation != generation) =>
                {
                    tries += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn open_manifest(dir: &Path, manifest: Manifest) -> Result<Self> {
        let manifest_path = dir.join(MANIFEST);
        let mut payloads = Vec::new();
        let mut rows = Vec::new();
        let mut vectors = Vec::new();
        for (number, segment) in manifest.segments.iter().enumerate() {
            let docs_path = dir.join(&segment.documents);
            let docs = file::read(&docs_path, Kind::Documents)?;
            let records = record::index(&docs, &docs_path)?;
            let keys_path = dir.join(&segment.keys);
            let keys = FlatIndex::load(&keys_path)?;
            if records.len() != segment.count
                || keys.len() != segment.count
                || keys.dim() != manifest.dim
            {
                return Err(Error::corrupt(
                    &keys_path,
                    format!(
                        "segment holds {} documents and {} keys of dimension {}, the manifest says {} of dimension {}",
                        records.len(),
                        keys.len(),
                        keys.dim(),
                        segment.count,
                        manifest.dim
                    ),
                ));
            }
            rows.extend(records.into_iter().map(|(id, range)| Row {
                id,
                segment: number,
                range,
            }));
            vectors.extend_from_slice(keys.vectors());
            payloads.push(docs);
        }
        payloads.push(Vec::new());
        let storage = FlatIndex::from_vectors(manifest.dim, vectors)
            .map_err(|err| Error::corrupt(&manifest_path, err.to_string()))?;
        let spec = IndexSpec::parse(&manifest.index)
            .map_err(|err| Error::corrupt(&manifest_path, err.to_string()))?;
        let keys = match (&manifest.graph, &spec) {
            (Some(graph), IndexSpec::Hnsw { .. }) => {
                let path = dir.join(graph);
                let payload = file::read(&path, Kind::Graph)?;
                Keys::Hnsw(HnswIndex::from_graph(storage, &payload, &path)?)
            }
            // An hnsw memory with no graph has no rows yet; a pgvector one re-syncs.
            _ => new_keys(&spec, manifest.dim, &manifest.servers, storage)?,
        };
        let mut removed = vec![false; rows.len()];
        for &row in &manifest.removed {
            *removed.get_mut(row as usize).ok_or_else(|| {
                Error::corrupt(&manifest_path, format!("removed row {row} does not exist"))
            })? = true;
        }
        let live = rows
            .iter()
            .enumerate()
            .filter(|(row, _)| !removed[*row])
            .map(|(row, r)| (r.id.clone(), row as u64))
            .collect();
        let committed_rows = rows.len();
        Ok(Self {
            writer: None,
            wait_for_writer: false,
            dir: dir.to_owned(),
            manifest,
            payloads,
            rows,
            removed,
            live,
            keys,
            committed_rows,
            dirty: false,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key dimension.
    pub fn dim(&self) -> usize {
        self.manifest.dim
    }

    /// The index spec ("flat", "hnsw32").
    pub fn index_spec(&self) -> &str {
        &self.manifest.index
    }

    /// What made the keys, as recorded at creation.
    pub fn encoder(&self) -> &serde_json::Value {
        &self.manifest.encoder
    }

    /// How many documents the memory holds (removed ones excluded).
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True when the memory holds no document.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// True when there are changes that [`Memory::commit`] has not written.
    pub fn has_uncommitted(&self) -> bool {
        self.dirty
    }

    /// Whether this process's first change waits for another process's write lock
    /// ([`Error::Locked`] otherwise). Off by default.
    pub fn wait_for_writer(&mut self, wait: bool) {
        self.wait_for_writer = wait;
    }

    /// Takes the write lock for this process's first change. When another writer
    /// committed since the memory was opened here, first reloads its committed state (there
    /// is nothing uncommitted here yet), so this process's commit never drops that one.
    fn lock_for_writing(&mut self) -> Result<()> {
        if self.writer.is_some() {
            return Ok(());
        }
        let lock = WriterLock::take(&self.dir, self.wait_for_writer)?;
        if read_manifest(&self.dir)?.generation != self.manifest.generation {
            let wait_for_writer = self.wait_for_writer;
            *self = Memory::open(&self.dir)?;
            self.wait_for_writer = wait_for_writer;
        }
        self.writer = Some(lock);
        Ok(())
    }

    /// Adds documents and their keys (one row of `dim` per document, in order). Ids must
    /// be new to the memory. The first change takes the memory's write lock
    /// ([`Error::Locked`] while another process writes).
    pub fn add(&mut self, documents: &[Document], keys: &[f32]) -> Result<()> {
        self.lock_for_writing()?;
        if keys.len() != documents.len() * self.dim() {
            return Err(Error::Dimension {
                what: format!("keys for {} documents", documents.len()),
                expected: self.dim(),
                got: keys.len(),
            });
        }
        let mut fresh = std::collections::HashSet::new();
        for document in documents {
            check_id(document.id())?;
            if self.live.contains_key(document.id()) || !fresh.insert(document.id()) {
                return Err(Error::DuplicateId {
                    id: document.id().to_owned(),
                });
            }
        }
        // Encode everything before changing anything, so a bad image leaves no trace.
        let segment = self.payloads.len() - 1;
        let mut encoded = Vec::new();
        let mut ranges = Vec::with_capacity(documents.len());
        let base = self.payloads[segment].len();
        for document in documents {
            let start = encoded.len();
            record::encode(document, &mut encoded)?;
            ranges.push(base + start + 4..base + encoded.len());
        }
        self.keys.add(keys)?;
        self.payloads[segment].extend_from_slice(&encoded);
        for (document, range) in documents.iter().zip(ranges) {
            let row = self.rows.len() as u64;
            self.rows.push(Row {
                id: document.id().to_owned(),
                segment,
                range,
            });
            self.removed.push(false);
            self.live.insert(document.id().to_owned(), row);
        }
        self.dirty |= !documents.is_empty();
        Ok(())
    }

    /// Removes a document by id. Its row stays on disk, skipped by every search.
    pub fn remove(&mut self, id: &str) -> Result<()> {
        self.lock_for_writing()?;
        let row = self
            .live
            .remove(id)
            .ok_or_else(|| Error::NoSuchId { id: id.to_owned() })?;
        self.removed[row as usize] = true;
        self.dirty = true;
        Ok(())
    }

    /// Writes every change since the last commit; on success they survive a crash.
    pub fn commit(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let generation = self.manifest.generation + 1;
        let mut manifest = self.manifest.clone();
        manifest.generation = generation;
        let new_rows = self.rows.len() - self.committed_rows;
        if new_rows > 0 {
            let documents = format!("documents-{generation:06}.bin");
            let keys = format!("keys-{generation:06}.bin");
            let payload = self.payloads.last().expect("an open segment");
            file::write(&self.dir.join(&documents), Kind::Documents, payload)?;
            let dim = self.dim();
            let new_keys = FlatIndex::from_vectors(
                dim,
                self.keys.exact().vectors()[self.committed_rows * dim..].to_vec(),
            )?;
            file::write(&self.dir.join(&keys), Kind::Keys, &new_keys.to_payload())?;
            manifest.segments.push(Segment {
                documents,
                keys,
                count: new_rows,
            });
            if let Keys::Hnsw(hnsw) = &self.keys {
                let graph = format!("graph-{generation:06}.bin");
                file::write(&self.dir.join(&graph), Kind::Graph, &hnsw.graph_payload())?;
                manifest.graph = Some(graph);
            }
        }
        manifest.removed = (0..self.rows.len() as u64)
            .filter(|&row| self.removed[row as usize])
            .collect();
        let previous = std::mem::replace(&mut self.manifest, manifest);
        if let Err(err) = self.write_manifest() {
            self.manifest = previous;
            return Err(err);
        }
        if new_rows > 0 {
            // The open segment is now committed; later rows go to a fresh one.
            self.payloads.push(Vec::new());
        }
        self.committed_rows = self.rows.len();
        self.dirty = false;
        if self.manifest.segments.len() > AUTO_MERGE_SEGMENTS {
            // The commit above is durable whatever happens here; a failed merge leaves the
            // segments as they were, to be merged at the next commit or by `compact`.
            let _ = self.rewrite(false);
        }
        self.remove_stray_files();
        Ok(())
    }

    /// Rewrites the memory as one segment without the records of removed documents (a
    /// pgvector memory keeps them, as its servers number rows as they were added), and
    /// rebuilds an HNSW graph that held removed rows. Uncommitted changes are committed
    /// first. Atomic like a commit: a crash leaves the memory as it was before or after.
    /// Rows are renumbered; ids are not.
    pub fn compact(&mut self) -> Result<Compaction> {
        self.lock_for_writing()?;
        self.commit()?;
        let remote = matches!(self.keys, Keys::Remote { .. });
        let compaction = self.rewrite(!remote)?;
        self.remove_stray_files();
        Ok(compaction)
    }

    /// Merges the committed segments into one, dropping removed rows when `drop_removed`.
    /// Needs the write lock and nothing uncommitted.
    fn rewrite(&mut self, drop_removed: bool) -> Result<Compaction> {
        let segments_before = self.manifest.segments.len();
        let removed = self.removed.iter().filter(|removed| **removed).count();
        let dropped = if drop_removed { removed } else { 0 };
        if segments_before <= 1 && dropped == 0 {
            return Ok(Compaction {
                segments_before,
                segments_after: segments_before,
                removed_dropped: 0,
                documents: self.len(),
            });
        }
        let dim = self.dim();
        let vectors = self.keys.exact().vectors();
        let mut payload = Vec::new();
        let mut kept = Vec::with_capacity(self.rows.len() * dim);
        // Where each kept record's bytes land in the merged segment.
        let mut ranges = Vec::with_capacity(self.rows.len());
        for (row, stored) in self.rows.iter().enumerate() {
            if dropped > 0 && self.removed[row] {
                continue;
            }
            // A record is its u32 length, then the bytes its range covers.
            let record = stored.range.start - 4..stored.range.end;
            let start = payload.len() + 4;
            payload.extend_from_slice(&self.payloads[stored.segment][record]);
            ranges.push(start..payload.len());
            kept.extend_from_slice(&vectors[row * dim..(row + 1) * dim]);
        }
        let count = ranges.len();
        let generation = self.manifest.generation + 1;
        let mut manifest = self.manifest.clone();
        manifest.generation = generation;
        let segment = Segment {
            documents: format!("documents-{generation:06}.bin"),
            keys: format!("keys-{generation:06}.bin"),
            count,
        };
        file::write(
            &self.dir.join(&segment.documents),
            Kind::Documents,
            &payload,
        )?;
        let keys = FlatIndex::from_vectors(dim, kept)?;
        file::write(
            &self.dir.join(&segment.keys),
            Kind::Keys,
            &keys.to_payload(),
        )?;
        if dropped > 0 {
            manifest.removed.clear();
            if let Keys::Hnsw(hnsw) = &self.keys {
                let mut rebuilt = HnswIndex::new(dim, hnsw.config());
                rebuilt.add(keys.vectors())?;
                let graph = format!("graph-{generation:06}.bin");
                file::write(
                    &self.dir.join(&graph),
                    Kind::Graph,
                    &rebuilt.graph_payload(),
                )?;
                manifest.graph = Some(graph);
            }
        }
        manifest.segments = vec![segment];
        let previous = std::mem::replace(&mut self.manifest, manifest);
        if let Err(err) = self.write_manifest() {
            self.manifest = previous;
            return Err(err);
        }
        if dropped == 0 {
            // The same rows in the same order, keys and graph unchanged: only where each
            // record's bytes live has moved, so the state is updated in place.
            for (stored, range) in self.rows.iter_mut().zip(ranges) {
                stored.segment = 0;
                stored.range = range;
            }
            self.payloads = vec![payload, Vec::new()];
        } else {
            // Rows are renumbered and the graph rebuilt: what is searched from now on is
            // what the disk holds.
            let writer = self.writer.take();
            let wait_for_writer = self.wait_for_writer;
            *self = Memory::open(&self.dir)?;
            self.writer = writer;
            self.wait_for_writer = wait_for_writer;
        }
        Ok(Compaction {
            segments_before,
            segments_after: 1,
            removed_dropped: dropped,
            documents: self.len(),
        })
    }

    fn write_manifest(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.manifest).expect("plain data serializes");
        file::write(&self.dir.join(MANIFEST), Kind::Manifest, &json)
    }

    /// Deletes segment and graph files that the manifest no longer names (left by an
    /// interrupted commit, or an older graph). Failing to delete one is harmless.
    fn remove_stray_files(&self) {
        let mut named: Vec<&str> = vec![MANIFEST];
        for segment in &self.manifest.segments {
            named.push(&segment.documents);
            named.push(&segment.keys);
        }
        if let Some(graph) = &self.manifest.graph {
            named.push(graph);
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = ["documents-", "keys-", "graph-"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
                && name.ends_with(".bin");
            if ours && !named.contains(&name.as_str()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// For each of the n × dim queries, the k best live rows, best first.
    pub fn search(&self, queries: &[f32], k: usize, how: &MemorySearch) -> Result<Vec<Vec<Hit>>> {
        check_k(
            k,
            self.len(),
            &format!("the memory at {}", self.dir.display()),
        )?;
        let keep =
            |label: u64| !self.removed[label as usize] && how.keep.is_none_or(|keep| keep(label));
        let params = SearchParams {
            ef_search: how.ef_search,
            keep: Some(&keep),
        };
        let index: &dyn VectorIndex = if how.exact {
            self.keys.exact()
        } else {
            self.keys.index()
        };
        index
            .search_with(queries, k, &params)
            .map_err(|err| match err {
                Error::Dimension { expected, got, .. } => Error::Dimension {
                    what: format!("query for the memory at {}", self.dir.display()),
                    expected,
                    got,
                },
                other => other,
            })
    }

    /// The row of a live document id.
    pub fn row_of(&self, id: &str) -> Option<u64> {
        self.live.get(id).copied()
    }

    /// The id of a row.
    pub fn id(&self, row: u64) -> Option<&str> {
        self.rows.get(row as usize).map(|r| r.id.as_str())
    }

    /// The key of a row.
    pub fn key(&self, row: u64) -> Option<&[f32]> {
        self.keys.exact().row(row as usize)
    }

    /// The ids of the live documents, in row order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.rows
            .iter()
            .zip(&self.removed)
            .filter(|(_, removed)| !**removed)
            .map(|(row, _)| row.id.as_str())
    }

    /// The document of a row.
    pub fn document(&self, row: u64) -> Result<Document> {
        let stored = self.rows.get(row as usize).ok_or_else(|| Error::NoSuchId {
            id: format!("row {row}"),
        })?;
        let path = self.segment_path(stored.segment);
        record::decode(&self.payloads[stored.segment][stored.range.clone()], &path)
    }

    fn segment_path(&self, segment: usize) -> PathBuf {
        match self.manifest.segments.get(segment) {
            Some(committed) => self.dir.join(&committed.documents),
            None => self.dir.join("(uncommitted documents)"),
        }
    }
}

/// Committed segments past which a commit merges them into one (keeping removed rows,
/// so no index is rebuilt): every `POST /documents` commits a segment of its own.
pub const AUTO_MERGE_SEGMENTS: usize = 16;

/// What [`Memory::compact`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// Committed segments before.
    pub segments_before: usize,
    /// Committed segments after.
    pub segments_after: usize,
    /// Removed documents whose records were dropped.
    pub removed_dropped: usize,
    /// Live documents.
    pub documents: usize,
}

/// Longest document id, in bytes.
pub const MAX_ID_BYTES: usize = 512;

/// Refuses an id that is empty, longer than [`MAX_ID_BYTES`] or holds control
/// characters: ids are printed and sent back in every answer.
fn check_id(id: &str) -> Result<()> {
    let problem = if id.is_empty() {
        "an empty id".to_owned()
    } else if id.len() > MAX_ID_BYTES {
        format!(
            "an id of {} bytes, over the {MAX_ID_BYTES} allowed",
            id.len()
        )
    } else if id.chars().any(char::is_control) {
        "an id with control characters".to_owned()
    } else {
        return Ok(());
    };
    Err(Error::Document {
        id: racm3_data::printable(&id.chars().take(80).collect::<String>()),
        problem,
    })
}

/// The committed manifest of the memory in `dir`.
fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    if !path.exists() {
        return Err(Error::NotAMemory {
            path: dir.to_owned(),
        });
    }
    parse_manifest(&file::read(&path, Kind::Manifest)?, &path)
}

/// A manifest from its payload, read from `path`; refused if it names files elsewhere.
fn parse_manifest(payload: &[u8], path: &Path) -> Result<Manifest> {
    let manifest: Manifest =
        serde_json::from_slice(payload).map_err(|err| Error::corrupt(path, err.to_string()))?;
    // Every file a manifest names is a plain name inside the memory's folder: a manifest
    // written by anything else must not make racm3 read elsewhere.
    let names = manifest
        .segments
        .iter()
        .flat_map(|segment| [&segment.documents, &segment.keys])
        .chain(&manifest.graph);
    for name in names {
        let plain = Path::new(name)
            .file_name()
            .is_some_and(|file| file == name.as_str());
        if !plain || name.starts_with('.') {
            return Err(Error::corrupt(
                path,
                format!(
                    "names the file '{name}', which is not a plain file name in the memory's folder"
                ),
            ));
        }
    }
    Ok(manifest)
}

/// Every reader of the memory's files on arbitrary bytes, for the fuzz targets: the first
/// byte picks the file (container, manifest, documents, keys, graph), the rest is its
/// content. Errors are the expected answer to most inputs; a panic or a hang is a bug.
#[cfg(feature = "testing")]
pub fn parse_any_file(data: &[u8]) -> Result<()> {
    let Some((&which, bytes)) = data.split_first() else {
        return Ok(());
    };
    let path = Path::new("fuzzed.bin");
    match which % 5 {
        0 => file::open_container(bytes.to_vec(), Kind::Documents, path).map(drop),
        1 => parse_manifest(bytes, path).map(drop),
        2 => {
            for (_, range) in record::index(bytes, path)? {
                record::decode(&bytes[range], path)?;
            }
            Ok(())
        }
        3 => FlatIndex::from_payload(bytes, path).map(drop),
        _ => HnswIndex::from_payload(bytes, path).map(drop),
    }
}

/// The keys of `spec` over `storage`'s rows (all committed).
fn new_keys(spec: &IndexSpec, dim: usize, servers: &[String], storage: FlatIndex) -> Result<Keys> {
    check_rows(&[], dim, "memory keys")?;
    Ok(match spec {
        IndexSpec::Flat => Keys::Flat(storage),
        IndexSpec::Hnsw { m } => {
            let mut hnsw = HnswIndex::new(
                dim,
                HnswConfig {
                    m: *m,
                    ..HnswConfig::default()
                },
            );
            hnsw.add(storage.vectors())?;
            Keys::Hnsw(hnsw)
        }
        IndexSpec::PgVector { table } => {
            let mut remote = PgVectorIndex::open(servers, table, dim)?;
            // Rows past the last commit (an interrupted add) go; missing rows are re-sent.
            if remote.len() > storage.len() {
                remote.truncate(storage.len())?;
            }
            if remote.len() < storage.len() {
                remote.add(&storage.vectors()[remote.len() * dim..])?;
            }
            Keys::Remote {
                local: storage,
                remote,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A manifest naming a file outside the folder is refused before anything is read.
    #[test]
    fn manifest_paths_stay_in_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Memory::create(dir.path(), 2, "flat", serde_json::Value::Null).unwrap();
        let mut manifest = memory.manifest.clone();
        drop(memory);
        for name in [
            "../outside.bin",
            "/etc/passwd",
            "sub/documents-000001.bin",
            "..",
        ] {
            manifest.segments = vec![Segment {
                documents: name.into(),
                keys: "keys-000001.bin".into(),
                count: 0,
            }];
            let json = serde_json::to_vec(&manifest).unwrap();
            file::write(&dir.path().join(MANIFEST), Kind::Manifest, &json).unwrap();
            let err = Memory::open(dir.path()).err().unwrap().to_string();
            assert!(err.contains("not a plain file name"), "{name}: {err}");
        }
    }
}
