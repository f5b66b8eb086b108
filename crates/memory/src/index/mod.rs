//! Vector indexes for maximum-inner-product search, shaped like faiss's `Index`.
//!
//! Vectors are passed as n × d row-major `f32` slices (`x[i * d + j]`), queries come in
//! batches, and a hit's score is a similarity: higher is closer. Labels are the rows'
//! insertion order, from 0.
//! Reference: faiss `Index.h` and `index_factory` (facebookresearch/faiss, v1.8.0).

mod codes;
mod flat;
mod hnsw;
mod pgvector;

use std::path::Path;

pub use flat::FlatIndex;
pub use hnsw::{HnswConfig, HnswIndex};
pub use pgvector::PgVectorIndex;

use crate::error::{Error, Result};

/// One search result: a row's label and its inner product with the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The row, in insertion order.
    pub label: u64,
    /// The inner product with the query; higher is closer.
    pub score: f32,
}

/// Per-search settings (faiss `SearchParameters`).
#[derive(Clone, Copy, Default)]
pub struct SearchParams<'a> {
    /// HNSW's candidate list size; `None` uses the index's default. Exact indexes ignore it.
    pub ef_search: Option<usize>,
    /// Rows for which this returns false are never returned (faiss `IDSelector`). The graph
    /// is still walked through them, so excluding rows does not cut HNSW's paths.
    pub keep: Option<&'a (dyn Fn(u64) -> bool + Sync)>,
}

impl SearchParams<'_> {
    pub(crate) fn keeps(&self, label: u64) -> bool {
        self.keep.is_none_or(|keep| keep(label))
    }
}

/// The interface every index implements (faiss `Index`). Optional operations answer
/// [`Error::Unsupported`].
pub trait VectorIndex: Send + Sync {
    /// The spec that builds this kind of index ("flat", "hnsw32").
    fn spec(&self) -> String;
    /// The vector dimension d.
    fn dim(&self) -> usize;
    /// How many vectors the index holds.
    fn len(&self) -> usize;
    /// True when the index holds no vector.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether [`VectorIndex::train`] has run or is not needed.
    fn is_trained(&self) -> bool {
        true
    }
    /// Learns whatever the index needs from sample vectors; a no-op for graph and flat indexes.
    fn train(&mut self, vectors: &[f32]) -> Result<()> {
        check_rows(vectors, self.dim(), "training vectors")?;
        Ok(())
    }
    /// Appends n × d vectors; they get the next labels.
    fn add(&mut self, vectors: &[f32]) -> Result<()>;
    /// For each of the n × d queries, the k best hits, best first. Fewer than k come back
    /// only when fewer rows pass [`SearchParams::keep`].
    fn search_with(
        &self,
        queries: &[f32],
        k: usize,
        params: &SearchParams,
    ) -> Result<Vec<Vec<Hit>>>;
    /// [`VectorIndex::search_with`] with default parameters.
    fn search(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Hit>>> {
        self.search_with(queries, k, &SearchParams::default())
    }
    /// The stored vector of a label.
    fn reconstruct(&self, label: u64) -> Result<Vec<f32>> {
        let _ = label;
        Err(Error::Unsupported {
            op: "reconstruct",
            index: self.spec(),
        })
    }
    /// Writes the index to one file, atomically.
    fn save(&self, path: &Path) -> Result<()> {
        let _ = path;
        Err(Error::Unsupported {
            op: "save",
            index: self.spec(),
        })
    }
}

/// A parsed index spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexSpec {
    /// `flat`: exact search.
    Flat,
    /// `hnsw<M>` (`hnsw32`; `hnsw` means M = 32): an HNSW graph with M links per node.
    Hnsw {
        /// Links per node on the upper levels.
        m: usize,
    },
    /// `pgvector:<table>`: keys in a table sharded over PostgreSQL servers.
    PgVector {
        /// The table's name.
        table: String,
    },
}

impl IndexSpec {
    /// Parses `flat`, `hnsw<M>` or `pgvector:<table>` (case-insensitive).
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = || Error::BadSpec {
            spec: spec.to_owned(),
        };
        let lower = spec.trim().to_ascii_lowercase();
        if lower == "flat" {
            return Ok(Self::Flat);
        }
        if let Some(table) = lower.strip_prefix("pgvector:") {
            return Ok(Self::PgVector {
                table: table.to_owned(),
            });
        }
        let m = match lower.strip_prefix("hnsw") {
            Some("") => 32,
            Some(digits) => digits.parse::<usize>().map_err(|_| bad())?,
            None => return Err(bad()),
        };
        if !(2..=256).contains(&m) {
            return Err(bad());
        }
        Ok(Self::Hnsw { m })
    }
}

impl std::fmt::Display for IndexSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexSpec::Flat => write!(f, "flat"),
            IndexSpec::Hnsw { m } => write!(f, "hnsw{m}"),
            IndexSpec::PgVector { table } => write!(f, "pgvector:{table}"),
        }
    }
}

/// Builds an empty in-process index from a spec (faiss `index_factory`): `flat` or
/// `hnsw<M>`. A pgvector index needs its servers: open it with [`PgVectorIndex::open`].
pub fn index_factory(spec: &str, dim: usize) -> Result<Box<dyn VectorIndex>> {
    match IndexSpec::parse(spec)? {
        IndexSpec::Flat => Ok(Box::new(FlatIndex::new(dim))),
        IndexSpec::Hnsw { m } => Ok(Box::new(HnswIndex::new(
            dim,
            HnswConfig {
                m,
                ..HnswConfig::default()
            },
        ))),
        IndexSpec::PgVector { .. } => Err(Error::Unsupported {
            op: "building from a spec alone (it needs servers; use PgVectorIndex::open)",
            index: spec.to_owned(),
        }),
    }
}

/// The widest key an index takes: far past any encoder's, and small enough that a
/// dimension read from a damaged file cannot ask for an impossible allocation.
pub const MAX_KEY_DIM: usize = 1 << 16;

/// Checks that `values` holds whole rows of `dim` (1 to [`MAX_KEY_DIM`]) and returns how
/// many.
pub(crate) fn check_rows(values: &[f32], dim: usize, what: &str) -> Result<usize> {
    if dim == 0 || dim > MAX_KEY_DIM {
        return Err(Error::KeyWidth {
            what: what.to_owned(),
            dim,
            max: MAX_KEY_DIM,
        });
    }
    if !values.len().is_multiple_of(dim) {
        return Err(Error::Dimension {
            what: what.to_owned(),
            expected: dim,
            got: values.len(),
        });
    }
    Ok(values.len() / dim)
}

/// Checks a search's k against the number of rows that could come back.
pub(crate) fn check_k(k: usize, len: usize, what: &str) -> Result<()> {
    if len == 0 {
        return Err(Error::Empty {
            what: what.to_owned(),
        });
    }
    if k == 0 || k > len {
        return Err(Error::BadK {
            k,
            len,
            what: what.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Specs name their index; unknown or out-of-range specs are errors naming the spec.
    #[test]
    fn factory_parses_specs() {
        assert_eq!(index_factory("flat", 4).unwrap().spec(), "flat");
        assert_eq!(index_factory("HNSW16", 4).unwrap().spec(), "hnsw16");
        assert_eq!(index_factory("hnsw", 4).unwrap().spec(), "hnsw32");
        for bad in ["ivf", "hnswx", "hnsw1", "hnsw9999"] {
            let err = index_factory(bad, 4).err().unwrap().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
