//! Approximate search on a hierarchical navigable small-world graph (HNSW).
//!
//! Malkov and Yashunin, "Efficient and robust approximate nearest neighbor search using
//! Hierarchical Navigable Small World graphs" (2016), arXiv:1603.09320. Layout and
//! defaults follow faiss's `IndexHNSWFlat` (faiss v1.8.0, `faiss/impl/HNSW.cpp`): level 0
//! keeps 2·M links a node, upper levels M, neighbours are chosen with the paper's
//! heuristic (algorithm 4), and the graph sits over a flat storage of the vectors.
//! Links live in atomics with one lock per node so insertions run on every core, as in
//! hnswlib; a search never takes a lock.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Mutex, RwLock};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::codes::Codes;
use super::{FlatIndex, Hit, SearchParams, VectorIndex, check_k, check_rows};
use crate::error::{Error, Result};
use crate::file::{self, Kind};
use racm3_kernels::dot::{dot, dot4, dot4_codes, prefetch};

/// How the graph is built and searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswConfig {
    /// Links per node on the upper levels; level 0 keeps twice as many (faiss's M).
    pub m: usize,
    /// Candidate list size while inserting (faiss `efConstruction`).
    pub ef_construction: usize,
    /// Default candidate list size while searching (faiss `efSearch`); raise it for recall.
    pub ef_search: usize,
    /// Seeds each node's level and the insertion order, so a build is reproducible up to
    /// insertion races.
    pub seed: u64,
}

impl Default for HnswConfig {
    /// M = 32 as faiss's `HNSW32`; efConstruction 80 and efSearch 64 reach recall@10 above
    /// 0.95 on clustered 512-d CLIP-like keys (see BENCHMARKS.md).
    fn default() -> Self {
        Self {
            m: 32,
            ef_construction: 80,
            ef_search: 64,
            seed: 0x5eed,
        }
    }
}

const NO_NODE: u32 = u32::MAX;

/// A search re-scores exactly the best `RESCORED_PER_RESULT · k` nodes its walk found,
/// and at least `RESCORED_MIN`, not all `ef` of them.
const RESCORED_PER_RESULT: usize = 4;
const RESCORED_MIN: usize = 32;

/// A node with its similarity to the query; ordered by similarity.
#[derive(Debug, Clone, Copy)]
struct Scored {
    score: f32,
    node: u32,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.node.cmp(&self.node))
    }
}

/// Marks of the nodes one search has seen; reset by bumping the stamp, not by clearing.
/// A byte a node (cleared once every 255 searches, as faiss's `VisitedTable`): at 1M nodes
/// the table is 1 MB and stays in the L2 cache, where 4-byte stamps would not.
struct Visited {
    stamps: Vec<u8>,
    current: u8,
}

impl Visited {
    fn start(&mut self, len: usize) {
        if self.stamps.len() < len {
            self.stamps.resize(len, 0);
        }
        self.current = self.current.wrapping_add(1);
        if self.current == 0 {
            self.stamps.fill(0);
            self.current = 1;
        }
    }

    /// True the first time a node is seen in this search.
    #[inline]
    fn insert(&mut self, node: u32) -> bool {
        let stamp = &mut self.stamps[node as usize];
        let first = *stamp != self.current;
        *stamp = self.current;
        first
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { stamps: Vec::new(), current: 0 }) };
}

/// How a walk scores nodes: exactly (while building, so links follow true similarity) or
/// through the 8-bit codes with a query scaled per dimension (while searching).
enum Scorer<'a> {
    Exact(&'a [f32]),
    Codes(&'a [f32]),
}

/// An HNSW graph over a flat storage of the vectors, and their 8-bit codes, which a
/// search walks before re-scoring what it found exactly.
pub struct HnswIndex {
    config: HnswConfig,
    storage: FlatIndex,
    codes: Codes,
    /// The top level of each node.
    levels: Vec<u8>,
    /// Level-0 links: for each node, a count then `2·m` slots.
    links0: Vec<AtomicU32>,
    /// Links above level 0: for a node of level L, L runs of a count then `m` slots.
    upper: Vec<Box<[AtomicU32]>>,
    /// Held while a node's links are rewritten.
    locks: Vec<Mutex<()>>,
    /// The entry node and the graph's top level.
    entry: RwLock<(u32, u8)>,
}

impl HnswIndex {
    /// An empty graph over vectors of dimension `dim`.
    pub fn new(dim: usize, config: HnswConfig) -> Self {
        Self {
            config,
            storage: FlatIndex::new(dim),
            codes: Codes::new(dim),
            levels: Vec::new(),
            links0: Vec::new(),
            upper: Vec::new(),
            locks: Vec::new(),
            entry: RwLock::new((NO_NODE, 0)),
        }
    }

    /// The build settings.
    pub fn config(&self) -> HnswConfig {
        self.config
    }

    /// Sets the default candidate list size of later searches.
    pub fn set_ef_search(&mut self, ef_search: usize) {
        self.config.ef_search = ef_search.max(1);
    }

    /// The flat storage under the graph, for exact search over the same rows.
    pub fn storage(&self) -> &FlatIndex {
        &self.storage
    }

    fn m0(&self) -> usize {
        2 * self.config.m
    }

    /// The level of node `node`: floor(-ln(u) / ln(M)), with u drawn from a hash of the
    /// seed and the node so that it does not depend on insertion order or threads.
    fn draw_level(&self, node: u64) -> u8 {
        let mut x = self.config.seed ^ node.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // splitmix64 finalizer.
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        let uniform = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let level = -uniform.ln() / (self.config.m as f64).ln();
        level.min(30.0) as u8
    }

    fn slots(&self, node: u32, level: usize) -> &[AtomicU32] {
        if level == 0 {
            let stride = self.m0() + 1;
            &self.links0[node as usize * stride..(node as usize + 1) * stride]
        } else {
            let stride = self.config.m + 1;
            &self.upper[node as usize][(level - 1) * stride..level * stride]
        }
    }

    /// Calls `visit` on each neighbour of `node` at `level`.
    #[inline]
    fn for_each_neighbor(&self, node: u32, level: usize, mut visit: impl FnMut(u32)) {
        let slots = self.slots(node, level);
        let count = slots[0].load(Relaxed) as usize;
        for slot in &slots[1..=count.min(slots.len() - 1)] {
            visit(slot.load(Relaxed));
        }
    }

    fn set_links(&self, node: u32, level: usize, links: &[u32]) {
        let slots = self.slots(node, level);
        for (slot, &link) in slots[1..].iter().zip(links) {
            slot.store(link, Relaxed);
        }
        slots[0].store(links.len() as u32, Relaxed);
    }

    fn vector(&self, node: u32) -> &[f32] {
        let dim = self.storage.dim();
        &self.storage.vectors()[node as usize * dim..(node as usize + 1) * dim]
    }

    /// The scores of `nodes`, four rows a kernel call; a remainder of one to three is
    /// padded with its last row, which costs less than scoring it alone.
    fn score_into(&self, scorer: &Scorer, nodes: &[u32], scores: &mut Vec<f32>) {
        scores.clear();
        // The next group's rows load while this group is scored: at a million keys the
        // codes outgrow the caches, and each row read unannounced is a wait on memory
        // (+30% to +45% queries a second at 1M keys, BENCHMARKS.md).
        for &node in nodes.iter().take(4) {
            self.prefetch_row(scorer, node);
        }
        for (index, group) in nodes.chunks(4).enumerate() {
            for &node in nodes.iter().skip(4 * index + 4).take(4) {
                self.prefetch_row(scorer, node);
            }
            let pick = |i: usize| group[i.min(group.len() - 1)];
            let four = match scorer {
                Scorer::Exact(query) => dot4(query, [0, 1, 2, 3].map(|i| self.vector(pick(i)))),
                Scorer::Codes(scaled) => {
                    dot4_codes(scaled, [0, 1, 2, 3].map(|i| self.codes.row(pick(i))))
                }
            };
            scores.extend_from_slice(&four[..group.len()]);
        }
    }

    fn prefetch_row(&self, scorer: &Scorer, node: u32) {
        match scorer {
            Scorer::Exact(_) => prefetch(self.vector(node)),
            Scorer::Codes(_) => prefetch(self.codes.row(node)),
        }
    }

    fn score_one(&self, scorer: &Scorer, node: u32) -> f32 {
        let mut score = Vec::with_capacity(1);
        self.score_into(scorer, &[node], &mut score);
        score[0]
    }

    /// Walks greedily toward the query on one level.
    fn greedy(&self, scorer: &Scorer, mut best: Scored, level: usize) -> Scored {
        let mut neighbors = Vec::with_capacity(self.config.m);
        let mut scores = Vec::with_capacity(self.config.m);
        loop {
            neighbors.clear();
            self.for_each_neighbor(best.node, level, |neighbor| neighbors.push(neighbor));
            self.score_into(scorer, &neighbors, &mut scores);
            let mut improved = false;
            for (&node, &score) in neighbors.iter().zip(&scores) {
                if score > best.score {
                    best = Scored { score, node };
                    improved = true;
                }
            }
            if !improved {
                return best;
            }
        }
    }

    /// The paper's SEARCH-LAYER: the `ef` best nodes found from `entries`, best first.
    /// Only nodes that `keep` accepts enter the result; all are walked.
    fn search_layer(
        &self,
        scorer: &Scorer,
        entries: &[Scored],
        ef: usize,
        level: usize,
        keep: &dyn Fn(u32) -> bool,
        visited: &mut Visited,
    ) -> Vec<Scored> {
        visited.start(self.levels.len());
        let mut candidates: BinaryHeap<Scored> = BinaryHeap::new();
        let mut results: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef + 1);
        for &entry in entries {
            visited.insert(entry.node);
            candidates.push(entry);
            if keep(entry.node) {
                results.push(Reverse(entry));
            }
        }
        while results.len() > ef {
            results.pop();
        }
        let mut fresh: Vec<u32> = Vec::with_capacity(self.m0());
        let mut scores: Vec<f32> = Vec::with_capacity(self.m0());
        while let Some(candidate) = candidates.pop() {
            // Likewise the links of the candidate expanded next.
            if let Some(next) = candidates.peek() {
                prefetch(self.slots(next.node, level));
            }
            let worst = results.peek().map_or(f32::NEG_INFINITY, |w| w.0.score);
            if results.len() >= ef && candidate.score < worst {
                break;
            }
            fresh.clear();
            self.for_each_neighbor(candidate.node, level, |neighbor| {
                if visited.insert(neighbor) {
                    fresh.push(neighbor);
                }
            });
            let mut offer = |node: u32, score: f32| {
                let worst = results.peek().map_or(f32::NEG_INFINITY, |w| w.0.score);
                if results.len() < ef || score > worst {
                    let scored = Scored { score, node };
                    candidates.push(scored);
                    if keep(node) {
                        results.push(Reverse(scored));
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            };
            self.score_into(scorer, &fresh, &mut scores);
            for (&node, &score) in fresh.iter().zip(&scores) {
                offer(node, score);
            }
        }
        let mut found: Vec<Scored> = results.into_iter().map(|r| r.0).collect();
        found.sort_unstable_by(|a, b| b.cmp(a));
        found
    }

    /// The paper's heuristic (algorithm 4): take candidates best first, skipping one that
    /// is closer to an already chosen neighbour than to the base node, so links spread out
    /// in different directions.
    fn select_neighbors(&self, candidates: &[Scored], max_links: usize) -> Vec<u32> {
        let mut chosen: Vec<u32> = Vec::with_capacity(max_links);
        for candidate in candidates {
            if chosen.len() >= max_links {
                break;
            }
            let vector = self.vector(candidate.node);
            let diverse = chosen
                .iter()
                .all(|&other| dot(vector, self.vector(other)) <= candidate.score);
            if diverse {
                chosen.push(candidate.node);
            }
        }
        chosen
    }

    /// Adds a link `node → new` at `level`, re-choosing `node`'s links when it is full.
    fn link_back(&self, node: u32, new: u32, level: usize) {
        let max_links = if level == 0 { self.m0() } else { self.config.m };
        let _guard = self.locks[node as usize]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut current: Vec<u32> = Vec::with_capacity(max_links + 1);
        self.for_each_neighbor(node, level, |n| current.push(n));
        if current.contains(&new) {
            return;
        }
        if current.len() < max_links {
            let slots = self.slots(node, level);
            slots[current.len() + 1].store(new, Relaxed);
            slots[0].store(current.len() as u32 + 1, Relaxed);
            return;
        }
        current.push(new);
        let base = self.vector(node);
        let mut scored: Vec<Scored> = current
            .into_iter()
            .map(|n| Scored {
                score: dot(base, self.vector(n)),
                node: n,
            })
            .collect();
        scored.sort_unstable_by(|a, b| b.cmp(a));
        let chosen = self.select_neighbors(&scored, max_links);
        self.set_links(node, level, &chosen);
    }

    /// The paper's INSERT for a node whose vector, level and empty link lists exist.
    fn insert(&self, node: u32, visited: &mut Visited) {
        let scorer = Scorer::Exact(self.vector(node));
        let level = self.levels[node as usize] as usize;
        let (entry, top) = *self.entry.read().unwrap_or_else(|p| p.into_inner());
        let top = top as usize;
        let mut best = Scored {
            score: self.score_one(&scorer, entry),
            node: entry,
        };
        for layer in (level + 1..=top).rev() {
            best = self.greedy(&scorer, best, layer);
        }
        let mut entries = vec![best];
        for layer in (0..=level.min(top)).rev() {
            let found = self.search_layer(
                &scorer,
                &entries,
                self.config.ef_construction,
                layer,
                &|_| true,
                visited,
            );
            let max_links = if layer == 0 { self.m0() } else { self.config.m };
            let candidates: Vec<Scored> =
                found.iter().copied().filter(|s| s.node != node).collect();
            let chosen = self.select_neighbors(&candidates, max_links);
            {
                let _guard = self.locks[node as usize]
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                self.set_links(node, layer, &chosen);
            }
            for &neighbor in &chosen {
                self.link_back(neighbor, node, layer);
            }
            entries = found;
        }
        if level > top {
            let mut entry = self.entry.write().unwrap_or_else(|p| p.into_inner());
            if level > entry.1 as usize {
                *entry = (node, level as u8);
            }
        }
    }

    /// Grows the per-node arrays for `count` new nodes and draws their levels.
    fn reserve_nodes(&mut self, count: usize) {
        let start = self.levels.len();
        let (m0, m) = (self.m0(), self.config.m);
        for node in start..start + count {
            let level = self.draw_level(node as u64);
            self.levels.push(level);
            self.links0.extend((0..=m0).map(|_| AtomicU32::new(0)));
            self.upper.push(
                (0..level as usize * (m + 1))
                    .map(|_| AtomicU32::new(0))
                    .collect(),
            );
            self.locks.push(Mutex::new(()));
        }
    }

    /// Walks the graph through the codes, then re-scores the best of the `ef` nodes found
    /// exactly (see [`RESCORED_PER_RESULT`]) and returns the best `k` of those.
    fn search_one(&self, query: &[f32], k: usize, ef: usize, params: &SearchParams) -> Vec<Hit> {
        let scaled = self.codes.scale_query(query);
        let scorer = Scorer::Codes(&scaled);
        let (entry, top) = *self.entry.read().unwrap_or_else(|p| p.into_inner());
        let mut best = Scored {
            score: self.score_one(&scorer, entry),
            node: entry,
        };
        for layer in (1..=top as usize).rev() {
            best = self.greedy(&scorer, best, layer);
        }
        let keep = |node: u32| params.keeps(node as u64);
        let found = VISITED.with_borrow_mut(|visited| {
            self.search_layer(&scorer, &[best], ef.max(k), 0, &keep, visited)
        });
        // The codes rank well enough that the true top k lie among the walk's best few
        // multiples of k. Re-scoring all `ef` nodes reads their f32 keys (2 KB a row at
        // 512-d, rarely cached at a million keys): at efSearch 96 that was about 15% of a
        // batch-64 search, for the same recall@10 (BENCHMARKS.md).
        let rescored = (RESCORED_PER_RESULT * k).max(RESCORED_MIN);
        let nodes: Vec<u32> = found.iter().take(rescored).map(|s| s.node).collect();
        let mut exact = Vec::with_capacity(nodes.len());
        self.score_into(&Scorer::Exact(query), &nodes, &mut exact);
        let mut rescored: Vec<Scored> = nodes
            .into_iter()
            .zip(exact)
            .map(|(node, score)| Scored { score, node })
            .collect();
        rescored.sort_unstable_by(|a, b| b.cmp(a));
        rescored
            .into_iter()
            .take(k)
            .map(|s| Hit {
                label: s.node as u64,
                score: s.score,
            })
            .collect()
    }

    /// The graph as bytes (without the vectors): settings, levels and links.
    pub(crate) fn graph_payload(&self) -> Vec<u8> {
        let (entry, top) = *self.entry.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        file::put_u32s(
            &mut out,
            &[
                self.config.m as u32,
                self.config.ef_construction as u32,
                self.config.ef_search as u32,
                entry,
                top as u32,
            ],
        );
        out.extend_from_slice(&self.config.seed.to_le_bytes());
        out.extend_from_slice(&(self.levels.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.levels);
        let load = |slots: &[AtomicU32]| slots.iter().map(|s| s.load(Relaxed)).collect::<Vec<_>>();
        file::put_u32s(&mut out, &load(&self.links0));
        for node_upper in &self.upper {
            file::put_u32s(&mut out, &load(node_upper));
        }
        out
    }

    /// Rebuilds the graph from [`HnswIndex::graph_payload`] over `storage`, which must hold
    /// the same rows; nothing is recomputed.
    pub(crate) fn from_graph(storage: FlatIndex, payload: &[u8], path: &Path) -> Result<Self> {
        let mut reader = file::Reader::new(payload, path);
        let head = reader.u32s(5)?;
        let seed = reader.u64()?;
        let count = reader.u64()? as usize;
        if count != storage.len() {
            return Err(Error::corrupt(
                path,
                format!(
                    "graph has {count} nodes but the keys hold {}",
                    storage.len()
                ),
            ));
        }
        let config = HnswConfig {
            m: head[0] as usize,
            ef_construction: head[1] as usize,
            ef_search: head[2] as usize,
            seed,
        };
        if !(2..=256).contains(&config.m) || (count > 0 && head[3] as usize >= count) {
            return Err(Error::corrupt(path, "graph header out of range"));
        }
        let levels = reader.take(count)?.to_vec();
        let atomics = |values: Vec<u32>| values.into_iter().map(AtomicU32::new).collect::<Vec<_>>();
        let links0 = atomics(reader.u32s(count * (2 * config.m + 1))?);
        let mut upper = Vec::with_capacity(count);
        for &level in &levels {
            upper.push(atomics(reader.u32s(level as usize * (config.m + 1))?).into_boxed_slice());
        }
        if !reader.is_done() {
            return Err(Error::corrupt(path, "bytes after the graph"));
        }
        let mut codes = Codes::new(storage.dim());
        codes.sync(storage.vectors());
        let index = Self {
            config,
            storage,
            codes,
            levels,
            links0,
            upper,
            locks: (0..count).map(|_| Mutex::new(())).collect(),
            entry: RwLock::new((if count == 0 { NO_NODE } else { head[3] }, head[4] as u8)),
        };
        index.check_links(path)?;
        Ok(index)
    }

    /// Every stored link must point at a node, with counts within capacity, so a damaged
    /// file that passed its checksum still cannot make a search index out of bounds.
    fn check_links(&self, path: &Path) -> Result<()> {
        let count = self.levels.len() as u32;
        for node in 0..count {
            for level in 0..=self.levels[node as usize] as usize {
                let slots = self.slots(node, level);
                let links = slots[0].load(Relaxed) as usize;
                if links >= slots.len() || slots[1..=links].iter().any(|s| s.load(Relaxed) >= count)
                {
                    return Err(Error::corrupt(path, format!("node {node} has bad links")));
                }
            }
        }
        Ok(())
    }

    /// Reads an index written by [`VectorIndex::save`]: the vectors, then the graph.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_payload(&file::read(path, Kind::Graph)?, path)
    }

    /// The index in the payload [`VectorIndex::save`] writes, read from `path`.
    pub(crate) fn from_payload(payload: &[u8], path: &Path) -> Result<Self> {
        let mut reader = file::Reader::new(payload, path);
        let dim = reader.u64()? as usize;
        let rows = reader.u64()? as usize;
        let key_bytes = rows
            .checked_mul(dim)
            .and_then(|values| values.checked_mul(4))
            .ok_or_else(|| Error::corrupt(path, "key array length overflows"))?;
        let vectors = file::bytes_to_f32s(reader.take(key_bytes)?, path)?;
        let storage = FlatIndex::from_vectors(dim, vectors)
            .map_err(|e| Error::corrupt(path, e.to_string()))?;
        let rest = reader.take(payload.len() - 16 - key_bytes)?;
        Self::from_graph(storage, rest, path)
    }
}

impl VectorIndex for HnswIndex {
    fn spec(&self) -> String {
        format!("hnsw{}", self.config.m)
    }

    fn dim(&self) -> usize {
        self.storage.dim()
    }

    fn len(&self) -> usize {
        self.levels.len()
    }

    fn add(&mut self, vectors: &[f32]) -> Result<()> {
        let count = check_rows(vectors, self.dim(), "vectors to add")?;
        let start = self.len();
        if start + count >= NO_NODE as usize {
            return Err(Error::Unsupported {
                op: "more than 2^32 - 1 vectors",
                index: self.spec(),
            });
        }
        self.storage.add(vectors)?;
        self.codes.sync(self.storage.vectors());
        self.reserve_nodes(count);
        // As faiss's hnsw_add_vertices: the top levels first, each level in a seeded random
        // order, so the upper levels exist before the bulk of level 0 links through them
        // and the dataset's order leaves no mark on the graph.
        let mut order: Vec<u32> = (start as u32..(start + count) as u32).collect();
        order.shuffle(&mut StdRng::seed_from_u64(self.config.seed ^ start as u64));
        order.sort_by_key(|&node| Reverse(self.levels[node as usize]));
        let mut pending = &order[..];
        if start == 0 && count > 0 {
            let first = order[0];
            *self.entry.get_mut().unwrap_or_else(|p| p.into_inner()) =
                (first, self.levels[first as usize]);
            pending = &order[1..];
        }
        let this = &*self;
        for same_level in
            pending.chunk_by(|a, b| this.levels[*a as usize] == this.levels[*b as usize])
        {
            same_level.par_iter().with_min_len(64).for_each(|&node| {
                VISITED.with_borrow_mut(|visited| this.insert(node, visited));
            });
        }
        Ok(())
    }

    fn search_with(
        &self,
        queries: &[f32],
        k: usize,
        params: &SearchParams,
    ) -> Result<Vec<Vec<Hit>>> {
        check_rows(queries, self.dim(), "queries")?;
        check_k(k, self.len(), "the hnsw index")?;
        let ef = params.ef_search.unwrap_or(self.config.ef_search);
        let dim = self.dim();
        if queries.len() == dim {
            // One query: handing it to the thread pool costs more than it saves.
            return Ok(vec![self.search_one(queries, k, ef, params)]);
        }
        Ok(queries
            .par_chunks_exact(dim)
            .map(|query| self.search_one(query, k, ef, params))
            .collect())
    }

    fn reconstruct(&self, label: u64) -> Result<Vec<f32>> {
        self.storage.reconstruct(label)
    }

    fn save(&self, path: &Path) -> Result<()> {
        let mut payload = (self.dim() as u64).to_le_bytes().to_vec();
        payload.extend_from_slice(&(self.len() as u64).to_le_bytes());
        payload.extend_from_slice(&file::f32s_to_bytes(self.storage.vectors()));
        payload.extend_from_slice(&self.graph_payload());
        file::write(path, Kind::Graph, &payload)
    }
}

#[cfg(test)]
mod tests;
