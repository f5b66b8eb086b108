//! The pgvector backend against real PostgreSQL servers, a slow external test
//! (RACM3_EXTERNAL_TESTS=1): `.ci/run` starts two and passes them in RACM3_PGVECTOR_URLS;
//! without it this test starts its own with `.ci/pgvector`.

use std::path::PathBuf;
use std::process::Command;

use racm3_data::{Document, Source, Split};
use racm3_memory::{
    FlatIndex, Hit, Memory, MemorySearch, PgVectorIndex, SearchParams, VectorIndex, synthetic,
};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.ci/pgvector")
}

/// Servers this test process started, and how many tests are using them.
static STARTED: std::sync::Mutex<(usize, Vec<String>)> = std::sync::Mutex::new((0, Vec::new()));

const STATE: &str = "/tmp/racm3-pgvector-test";

/// Servers for one test. Tests run in parallel, so the first to need servers starts them
/// and the last to finish stops them.
struct Servers {
    urls: Vec<String>,
    started_here: bool,
}

impl Servers {
    fn get() -> Self {
        if let Ok(urls) = std::env::var("RACM3_PGVECTOR_URLS") {
            return Self {
                urls: urls.split(',').map(str::to_owned).collect(),
                started_here: false,
            };
        }
        let mut started = STARTED.lock().unwrap_or_else(|p| p.into_inner());
        if started.0 == 0 {
            let output = Command::new(script())
                .args(["start", "2", "54340"])
                .env("RACM3_PG_STATE", STATE)
                .output()
                .expect("running .ci/pgvector");
            assert!(
                output.status.success(),
                ".ci/pgvector failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let urls = String::from_utf8(output.stdout).unwrap();
            started.1 = urls.trim().split(',').map(str::to_owned).collect();
        }
        started.0 += 1;
        Self {
            urls: started.1.clone(),
            started_here: true,
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if !self.started_here {
            return;
        }
        let mut started = STARTED.lock().unwrap_or_else(|p| p.into_inner());
        started.0 -= 1;
        if started.0 == 0 {
            let _ = Command::new(script())
                .arg("stop")
                .env("RACM3_PG_STATE", STATE)
                .status();
        }
    }
}

// Keys sharded over two servers give the same top-10 as exact search on the same keys
// (labels in order, scores within float error), with and without a keep filter; keys read
// back exactly; reopening sees every key; a table of another dimension is refused.
#[test]
fn sharded_top_k_equals_flat() {
    if !racm3_testing::external("sharded_top_k_equals_flat") {
        return;
    }
    let servers = Servers::get();
    assert_eq!(servers.urls.len(), 2);
    let dim = 32;
    let all = synthetic::clustered(3020, dim, 60, 0.6, 11);
    let (keys, queries) = all.split_at(3000 * dim);
    let mut index = PgVectorIndex::open(&servers.urls, "racm3_test_keys", dim).unwrap();
    index.clear().unwrap();
    index.add(&keys[..1000 * dim]).unwrap();
    index.add(&keys[1000 * dim..]).unwrap();
    assert_eq!(index.len(), 3000);
    let flat = FlatIndex::from_vectors(dim, keys.to_vec()).unwrap();

    let keep = |label: u64| !label.is_multiple_of(3);
    for params in [
        SearchParams::default(),
        SearchParams {
            keep: Some(&keep),
            ..Default::default()
        },
    ] {
        let expected = flat.search_with(queries, 10, &params).unwrap();
        let got = index.search_with(queries, 10, &params).unwrap();
        for (want, have) in expected.iter().zip(&got) {
            let labels =
                |hits: &[racm3_memory::Hit]| hits.iter().map(|h| h.label).collect::<Vec<_>>();
            assert_eq!(labels(have), labels(want));
            for (a, b) in want.iter().zip(have) {
                assert!(
                    (a.score - b.score).abs() < 1e-5,
                    "{} vs {}",
                    a.score,
                    b.score
                );
            }
        }
    }
    assert_eq!(
        index.reconstruct(1234).unwrap(),
        &keys[1234 * dim..1235 * dim]
    );
    drop(index);
    assert_eq!(
        PgVectorIndex::open(&servers.urls, "racm3_test_keys", dim)
            .unwrap()
            .len(),
        3000
    );
    let err = PgVectorIndex::open(&servers.urls, "racm3_test_keys", 16)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("dimension 32, not 16"), "{err}");
}

/// The same labels in the same order, and scores equal up to float summation order
/// (pgvector sums in another order than racm3's SIMD kernel).
fn assert_same_hits(want: &[Vec<Hit>], have: &[Vec<Hit>]) {
    assert_eq!(want.len(), have.len());
    for (want, have) in want.iter().zip(have) {
        let labels = |hits: &[Hit]| hits.iter().map(|h| h.label).collect::<Vec<_>>();
        assert_eq!(labels(have), labels(want));
        for (a, b) in want.iter().zip(have) {
            assert!(
                (a.score - b.score).abs() < 1e-5,
                "{} vs {}",
                a.score,
                b.score
            );
        }
    }
}

fn text_documents(range: std::ops::Range<usize>) -> Vec<Document> {
    range
        .map(|i| {
            let source = Source {
                dataset: "t".into(),
                entity: format!("e{i}"),
                split: Split::Train,
                references: vec![],
                attributes: Default::default(),
            };
            let mut doc = Document::new(format!("doc/{i}"), source);
            doc.push_text(&format!("document {i}"));
            doc
        })
        .collect()
}

// A memory whose keys live on the servers answers like a flat memory over the same keys,
// reopens with its servers from the manifest, and an add that was never committed is
// dropped from the servers on reopening (it never shows in results).
#[test]
fn pgvector_memory_matches_flat_and_drops_uncommitted_rows() {
    if !racm3_testing::external("pgvector_memory_matches_flat_and_drops_uncommitted_rows") {
        return;
    }
    let servers = Servers::get();
    let dim = 16;
    let all = synthetic::clustered(260, dim, 20, 0.5, 5);
    let (keys, queries) = all.split_at(250 * dim);
    let dir = tempfile::tempdir().unwrap();
    // A fresh table for this test: clear whatever an earlier run left.
    PgVectorIndex::open(&servers.urls, "racm3_test_memory", dim)
        .unwrap()
        .clear()
        .unwrap();
    let spec = "pgvector:racm3_test_memory";
    let mut remote = Memory::create_on_servers(
        &dir.path().join("pg"),
        dim,
        spec,
        &servers.urls,
        serde_json::Value::Null,
    )
    .unwrap();
    let mut local = Memory::create(
        &dir.path().join("flat"),
        dim,
        "flat",
        serde_json::Value::Null,
    )
    .unwrap();
    for memory in [&mut remote, &mut local] {
        memory
            .add(&text_documents(0..200), &keys[..200 * dim])
            .unwrap();
        memory.remove("doc/7").unwrap();
        memory.commit().unwrap();
    }
    // Added but never committed: the process "dies" here.
    remote
        .add(&text_documents(200..250), &keys[200 * dim..])
        .unwrap();
    drop(remote);
    let remote = Memory::open(&dir.path().join("pg")).unwrap();
    assert_eq!(remote.len(), 199);
    assert_eq!(remote.index_spec(), spec);
    let how = MemorySearch::default();
    assert_same_hits(
        &local.search(queries, 10, &how).unwrap(),
        &remote.search(queries, 10, &how).unwrap(),
    );
    let table = PgVectorIndex::open(&servers.urls, "racm3_test_memory", dim).unwrap();
    assert_eq!(
        table.len(),
        200,
        "uncommitted keys were left on the servers"
    );
}

// A server that does not answer is an error naming it, not a hang or a panic; so is a
// table name that could inject SQL.
#[test]
fn unreachable_server_and_bad_table_are_named() {
    let urls = vec!["host=127.0.0.1 port=1 user=postgres dbname=postgres".to_owned()];
    let err = PgVectorIndex::open(&urls, "keys", 8)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("127.0.0.1:1") && err.contains("cannot connect"),
        "{err}"
    );
    let err = PgVectorIndex::open(&urls, "keys; DROP TABLE x", 8)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("table name"), "{err}");
}
