//! Times racm3's flat and HNSW indexes on clustered unit vectors and writes the vectors,
//! so that `benches/mips_vs_faiss.py` can run faiss on exactly the same data.
//!
//! `cargo run --release -p racm3-memory --example mips_bench -- OUT_DIR KEYS QUERIES DIM`
//! writes OUT_DIR/keys.f32, OUT_DIR/queries.f32 (raw little-endian rows) and prints one
//! JSON object of measurements. The flat index is timed on the first 200 queries, HNSW on
//! all of them.

use std::time::Instant;

use racm3_memory::{FlatIndex, Hit, HnswConfig, HnswIndex, SearchParams, VectorIndex, synthetic};

/// How many of the queries time the flat index (all of them answer for the recall oracle).
const FLAT_TIMED_QUERIES: usize = 200;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, keys, queries, dim] = &args[..] else {
        return Err("usage: mips_bench OUT_DIR KEYS QUERIES DIM".into());
    };
    let (n, nq, dim): (usize, usize, usize) = (keys.parse()?, queries.parse()?, dim.parse()?);
    let out = std::path::Path::new(out);
    std::fs::create_dir_all(out)?;
    // One draw for keys and queries, so queries fall in the keys' clusters.
    let all = synthetic::clustered(n + nq, dim, 1000, 0.6, 42);
    let (key_rows, query_rows) = all.split_at(n * dim);
    let bytes = |rows: &[f32]| {
        rows.iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
    };
    std::fs::write(out.join("keys.f32"), bytes(key_rows))?;
    std::fs::write(out.join("queries.f32"), bytes(query_rows))?;

    let started = Instant::now();
    let flat = FlatIndex::from_vectors(dim, key_rows.to_vec())?;
    let flat_build = started.elapsed().as_secs_f64();
    let exact = flat.search(query_rows, 10)?;
    // Exact search answers a few queries a second at 1M keys: the first 200 time it.
    let flat_timed = nq.min(FLAT_TIMED_QUERIES);
    let flat_queries = &query_rows[..flat_timed * dim];
    let flat_qps_1 = qps(flat_timed, || {
        one_at_a_time(&flat, flat_queries, dim, &SearchParams::default())
    });
    let flat_qps_64 = qps(flat_timed, || {
        batched(&flat, flat_queries, dim, 64, &SearchParams::default())
    });

    let started = Instant::now();
    let mut hnsw = HnswIndex::new(
        dim,
        HnswConfig {
            m: 32,
            ef_construction: 80,
            ..HnswConfig::default()
        },
    );
    hnsw.add(key_rows)?;
    let hnsw_build = started.elapsed().as_secs_f64();
    let mut sweep = Vec::new();
    for ef in [8, 10, 12, 16, 24, 32, 48, 64, 96, 128, 256] {
        let params = SearchParams {
            ef_search: Some(ef),
            keep: None,
        };
        let found = hnsw.search_with(query_rows, 10, &params)?;
        let recall = recall_at_10(&found, &exact);
        let qps_1 = qps(nq, || one_at_a_time(&hnsw, query_rows, dim, &params));
        let qps_64 = qps(nq, || batched(&hnsw, query_rows, dim, 64, &params));
        sweep.push(serde_json::json!({"ef_search": ef, "recall_at_10": recall, "qps_batch_1": qps_1, "qps_batch_64": qps_64}));
    }
    let report = serde_json::json!({
        "keys": n, "queries": nq, "dim": dim, "threads": rayon::current_num_threads(),
        "flat": {"build_s": flat_build, "qps_batch_1": flat_qps_1, "qps_batch_64": flat_qps_64,
                 "memory_bytes": n * dim * 4},
        "hnsw32": {"build_s": hnsw_build, "ef_construction": 80, "sweep": sweep,
                   // f32 storage, the 8-bit codes the walk reads, and the level-0 links.
                   "memory_bytes": n * dim * 4 + n * dim + n * (2 * 32 + 1) * 4},
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn one_at_a_time(index: &dyn VectorIndex, queries: &[f32], dim: usize, params: &SearchParams) {
    for query in queries.chunks_exact(dim) {
        std::hint::black_box(index.search_with(query, 10, params).expect("search"));
    }
}

fn batched(
    index: &dyn VectorIndex,
    queries: &[f32],
    dim: usize,
    batch: usize,
    params: &SearchParams,
) {
    for chunk in queries.chunks(batch * dim) {
        std::hint::black_box(index.search_with(chunk, 10, params).expect("search"));
    }
}

/// Queries per second of `run`, which answers `count` queries; best of five runs.
fn qps(count: usize, run: impl Fn()) -> f64 {
    (0..5)
        .map(|_| {
            let started = Instant::now();
            run();
            count as f64 / started.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn recall_at_10(found: &[Vec<Hit>], exact: &[Vec<Hit>]) -> f64 {
    let hits: usize = found
        .iter()
        .zip(exact)
        .map(|(f, e)| {
            f.iter()
                .filter(|h| e.iter().any(|x| x.label == h.label))
                .count()
        })
        .sum();
    hits as f64 / (exact.len() * 10) as f64
}
