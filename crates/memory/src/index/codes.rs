//! Keys as 8-bit codes for the HNSW graph walk.
//!
//! A walk scores hundreds of keys per query and waits on memory for each: a 512-d f32 key
//! is 32 cache lines, its code 8. Each dimension has its own symmetric scale (the largest
//! magnitude seen in that dimension over 127), as faiss's `ScalarQuantizer` keeps a range
//! per dimension, because embedding dimensions differ in spread. The walk ranks with
//! these approximate scores; the best nodes it finds are re-scored exactly before they
//! are returned, so only the path, not the answer's scores, is approximate.

/// 8-bit codes of every row, with the per-dimension scales.
pub(crate) struct Codes {
    dim: usize,
    /// Per dimension: value = code · scale.
    scales: Vec<f32>,
    codes: Vec<i8>,
}

/// Codes span -127..=127, symmetric around zero.
const LEVELS: f32 = 127.0;

impl Codes {
    pub(crate) fn new(dim: usize) -> Self {
        Self {
            dim,
            scales: vec![0.0; dim],
            codes: Vec::new(),
        }
    }

    /// Brings the codes up to date with `vectors`, all rows of the index, of which the
    /// first `self.len()` are already encoded. Rows with a value beyond the current range
    /// widen the scales, and then every row is encoded again.
    pub(crate) fn sync(&mut self, vectors: &[f32]) {
        let encoded = self.codes.len();
        let mut widened = false;
        for row in vectors[encoded..].chunks_exact(self.dim) {
            for (scale, &value) in self.scales.iter_mut().zip(row) {
                if value.abs() > *scale * LEVELS {
                    *scale = value.abs() / LEVELS;
                    widened = true;
                }
            }
        }
        let start = if widened { 0 } else { encoded };
        self.codes.truncate(start);
        self.codes.reserve(vectors.len() - start);
        for row in vectors[start..].chunks_exact(self.dim) {
            self.codes
                .extend(row.iter().zip(&self.scales).map(|(&value, &scale)| {
                    if scale > 0.0 {
                        (value / scale).round().clamp(-LEVELS, LEVELS) as i8
                    } else {
                        0
                    }
                }));
        }
    }

    /// The code of row `node`.
    #[inline]
    pub(crate) fn row(&self, node: u32) -> &[i8] {
        &self.codes[node as usize * self.dim..(node as usize + 1) * self.dim]
    }

    /// The query with each dimension's scale folded in, so that `scaled · code` is the
    /// query's inner product with the decoded row.
    pub(crate) fn scale_query(&self, query: &[f32]) -> Vec<f32> {
        query.iter().zip(&self.scales).map(|(q, s)| q * s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use racm3_kernels::dot::{dot, dot4_codes};

    // Scores through the codes are within the quantization error of the exact ones, also
    // after a later row widens a dimension's range (which re-encodes every row).
    #[test]
    fn code_scores_track_exact_scores() {
        let dim = 40;
        let rows: Vec<f32> = (0..8 * dim)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 400.0)
            .collect();
        let mut codes = Codes::new(dim);
        codes.sync(&rows[..4 * dim]);
        codes.sync(&rows);
        let mut wide = rows.clone();
        wide.extend((0..dim).map(|i| if i == 3 { 2.0 } else { 0.01 }));
        let query: Vec<f32> = (0..dim)
            .map(|i| ((i * 11 % 7) as f32 - 3.0) / 5.0)
            .collect();
        for (all, tolerance) in [(&rows, 0.01), (&wide, 0.05)] {
            codes.sync(all);
            let rows = all.len() / dim;
            assert_eq!(codes.codes.len(), rows * dim);
            let scaled = codes.scale_query(&query);
            for node in 0..rows as u32 - 3 {
                let approx = dot4_codes(&scaled, [0, 1, 2, 3].map(|i| codes.row(node + i)));
                for (i, approx) in approx.into_iter().enumerate() {
                    let row = (node as usize + i) * dim;
                    let exact = dot(&query, &all[row..row + dim]);
                    assert!(
                        (approx - exact).abs() < tolerance,
                        "row {}: {approx} vs {exact}",
                        node as usize + i
                    );
                }
            }
        }
    }
}
