//! Synthetic keys for tests and benchmarks (the `testing` feature). Random normal vectors
//! are a poor stand-in for CLIP keys (on 100k of them every approximate index, faiss's
//! included, reached recall@10 of only 0.04-0.25), so these are unit vectors drawn around
//! cluster centres, as embeddings of related documents are.

use rand::{RngExt, SeedableRng};

/// `n` unit vectors of dimension `dim` around `clusters` random centres; row i belongs to
/// cluster `i % clusters`. `spread` is the noise's standard deviation relative to a
/// centre coordinate's (0.6 gives neighbours at cosine about 0.7).
pub fn clustered(n: usize, dim: usize, clusters: usize, spread: f32, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut normal = move || {
        // Box-Muller; two uniforms make one standard normal draw.
        let u: f64 = rng.random::<f64>().max(1e-12);
        let v: f64 = rng.random::<f64>();
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    };
    let centers: Vec<f32> = (0..clusters.max(1) * dim).map(|_| normal()).collect();
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        let center = &centers[(i % clusters.max(1)) * dim..][..dim];
        let start = out.len();
        out.extend(center.iter().map(|c| c + spread * normal()));
        let row = &mut out[start..];
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    out
}
