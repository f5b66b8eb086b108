//! The pgvector backend against real PostgreSQL servers: `.ci/run` starts two and passes
//! them in RACM3_PGVECTOR_URLS; without it this test starts its own with `.ci/pgvector`.

use std::path::PathBuf;
use std::process::Command;

use racm3_memory::{FlatIndex, PgVectorIndex, SearchParams, VectorIndex, synthetic};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.ci/pgvector")
}

/// Servers for the test, stopped on drop when the test started them.
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
        let output = Command::new(script())
            .args(["start", "2", "54340"])
            .env("RACM3_PG_STATE", "/tmp/racm3-pgvector-test")
            .output()
            .expect("running .ci/pgvector");
        assert!(
            output.status.success(),
            ".ci/pgvector failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let urls = String::from_utf8(output.stdout).unwrap();
        Self {
            urls: urls.trim().split(',').map(str::to_owned).collect(),
            started_here: true,
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if self.started_here {
            let _ = Command::new(script())
                .arg("stop")
                .env("RACM3_PG_STATE", "/tmp/racm3-pgvector-test")
                .status();
        }
    }
}

// Keys sharded over two servers give the same top-10 as exact search on the same keys
// (labels in order, scores within float error), with and without a keep filter; keys read
// back exactly; reopening sees every key; a table of another dimension is refused.
#[test]
fn sharded_top_k_equals_flat() {
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
