//! Exact search: every query against every row. A batch of queries is one matrix product
//! (queries × keysᵀ) per block of rows, spread over the cores, as faiss's `IndexFlatIP`
//! does with BLAS.

use std::path::Path;

use rayon::prelude::*;

use super::{Hit, SearchParams, VectorIndex, check_k, check_rows};
use crate::error::{Error, Result};
use crate::file::{self, Kind};
use crate::topk::TopK;

/// Rows per block: a block of 512-d keys (8 MiB) stays in the L3 cache while every query
/// of the batch reads it.
const BLOCK_ROWS: usize = 4096;

/// Exact maximum-inner-product search over rows kept in memory.
#[derive(Debug, Clone, Default)]
pub struct FlatIndex {
    dim: usize,
    /// n × dim, row-major.
    vectors: Vec<f32>,
}

impl FlatIndex {
    /// An empty index of dimension `dim`.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            vectors: Vec::new(),
        }
    }

    /// An index over existing rows (n × dim, row-major).
    pub fn from_vectors(dim: usize, vectors: Vec<f32>) -> Result<Self> {
        check_rows(&vectors, dim, "vectors")?;
        Ok(Self { dim, vectors })
    }

    /// All rows, n × dim, row-major.
    pub fn vectors(&self) -> &[f32] {
        &self.vectors
    }

    /// Row `label`, or `None` past the end.
    pub fn row(&self, label: usize) -> Option<&[f32]> {
        self.vectors.get(label * self.dim..(label + 1) * self.dim)
    }

    /// Reads an index written by [`VectorIndex::save`].
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_payload(&file::read(path, Kind::Keys)?, path)
    }

    /// The index in a keys file's payload ([`FlatIndex::to_payload`]), read from `path`.
    pub(crate) fn from_payload(payload: &[u8], path: &Path) -> Result<Self> {
        let mut reader = file::Reader::new(payload, path);
        let dim = reader.u64()? as usize;
        let values = file::bytes_to_f32s(reader.take(payload.len() - 8)?, path)?;
        Self::from_vectors(dim, values).map_err(|err| Error::corrupt(path, err.to_string()))
    }

    /// The payload [`FlatIndex::load`] reads: the dimension, then the rows.
    pub(crate) fn to_payload(&self) -> Vec<u8> {
        let mut out = (self.dim as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&file::f32s_to_bytes(&self.vectors));
        out
    }

    /// Scores of `queries` (nq × dim) against rows `start..start + rows`, nq × rows.
    fn block_scores(&self, queries: &[f32], start: usize, rows: usize) -> Vec<f32> {
        let nq = queries.len() / self.dim;
        let mut scores = vec![0f32; nq * rows];
        let keys = &self.vectors[start * self.dim..(start + rows) * self.dim];
        // SAFETY: dst is nq × rows, lhs nq × dim, rhs dim × rows, each in bounds with the
        // strides given: lhs row-major (row stride dim), rhs = keysᵀ (column stride dim).
        unsafe {
            gemm::gemm(
                nq,
                rows,
                self.dim,
                scores.as_mut_ptr(),
                1,
                rows as isize,
                false,
                queries.as_ptr(),
                1,
                self.dim as isize,
                keys.as_ptr(),
                self.dim as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        scores
    }
}

impl VectorIndex for FlatIndex {
    fn spec(&self) -> String {
        "flat".into()
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.vectors.len() / self.dim.max(1)
    }

    fn add(&mut self, vectors: &[f32]) -> Result<()> {
        check_rows(vectors, self.dim, "vectors to add")?;
        self.vectors.extend_from_slice(vectors);
        Ok(())
    }

    fn search_with(
        &self,
        queries: &[f32],
        k: usize,
        params: &SearchParams,
    ) -> Result<Vec<Vec<Hit>>> {
        let nq = check_rows(queries, self.dim, "queries")?;
        let len = self.len();
        check_k(k, len, "the flat index")?;
        let blocks: Vec<usize> = (0..len).step_by(BLOCK_ROWS).collect();
        let partials: Vec<Vec<TopK>> = blocks
            .into_par_iter()
            .map(|start| {
                let rows = BLOCK_ROWS.min(len - start);
                let scores = self.block_scores(queries, start, rows);
                scores
                    .chunks_exact(rows)
                    .map(|row_scores| {
                        let mut top = TopK::new(k);
                        for (offset, &score) in row_scores.iter().enumerate() {
                            let label = (start + offset) as u64;
                            if score > top.threshold() && params.keeps(label) {
                                top.push(label, score);
                            }
                        }
                        top
                    })
                    .collect()
            })
            .collect();
        let mut merged: Vec<TopK> = (0..nq).map(|_| TopK::new(k)).collect();
        for block in partials {
            for (top, part) in merged.iter_mut().zip(block) {
                top.merge(part);
            }
        }
        Ok(merged.into_iter().map(TopK::into_sorted).collect())
    }

    fn reconstruct(&self, label: u64) -> Result<Vec<f32>> {
        self.row(label as usize)
            .map(<[f32]>::to_vec)
            .ok_or(Error::BadK {
                k: label as usize,
                len: self.len(),
                what: "reconstruct: the flat index".into(),
            })
    }

    fn save(&self, path: &Path) -> Result<()> {
        file::write(path, Kind::Keys, &self.to_payload())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_top(vectors: &[f32], dim: usize, query: &[f32], k: usize) -> Vec<u64> {
        let mut scored: Vec<(u64, f32)> = vectors
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, row)| (i as u64, row.iter().zip(query).map(|(a, b)| a * b).sum()))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.into_iter().take(k).map(|(label, _)| label).collect()
    }

    // Batched search across several blocks returns exactly the naive loop's top-k.
    #[test]
    fn matches_naive_scan_across_blocks() {
        let dim = 24;
        let n = BLOCK_ROWS * 2 + 37;
        let vectors: Vec<f32> = (0..n * dim)
            .map(|i| (((i * 2654435761) % 1000) as f32 / 500.0) - 1.0)
            .collect();
        let index = FlatIndex::from_vectors(dim, vectors.clone()).unwrap();
        let queries: Vec<f32> = vectors[dim * 5..dim * 8]
            .iter()
            .map(|v| v * 0.5 + 0.1)
            .collect();
        let hits = index.search(&queries, 10).unwrap();
        for (query, hits) in queries.chunks_exact(dim).zip(&hits) {
            let labels: Vec<u64> = hits.iter().map(|h| h.label).collect();
            assert_eq!(labels, naive_top(&vectors, dim, query, 10));
        }
    }

    // The keep filter removes rows from results; k is checked against the size.
    #[test]
    fn keep_filter_and_k_checks() {
        let index = FlatIndex::from_vectors(2, vec![1.0, 0.0, 0.9, 0.1, 0.0, 1.0]).unwrap();
        let keep = |label: u64| label != 0;
        let params = SearchParams {
            keep: Some(&keep),
            ..Default::default()
        };
        let hits = index.search_with(&[1.0, 0.0], 2, &params).unwrap();
        assert_eq!(
            hits[0].iter().map(|h| h.label).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(
            index
                .search(&[1.0, 0.0], 4)
                .unwrap_err()
                .to_string()
                .contains("1..=3")
        );
        assert!(index.search(&[1.0, 0.0], 0).is_err());
        let err = index.search(&[1.0, 0.0, 0.0], 1).unwrap_err().to_string();
        assert!(err.contains("dimension 2, got 3"), "{err}");
        assert!(
            FlatIndex::new(2)
                .search(&[1.0, 0.0], 1)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }
}
