//! The machine's f32 compute roof, for the throughput table in BENCHMARKS.md: the FMA
//! peak every core reaches in registers (independent AVX2 FMA chains, nothing loaded),
//! and what the `gemm` crate that candle multiplies with reaches on the products our
//! models run, as a share of that peak.
//!
//! cargo run --release -p racm3-kernels --example compute_roof [-- threads]
//!
//! Prints one JSON object: peak GFLOP/s on all threads and on one, the clock it implies
//! (two FMA units of 8 lanes a core), and GEMM GFLOP/s and share of peak per shape.

use std::time::Instant;

/// Independent accumulators per thread: enough to cover the FMA latency on two ports.
const CHAINS: usize = 12;
const ROUNDS: usize = 20_000_000;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_chains(rounds: usize) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); CHAINS];
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    for _ in 0..rounds {
        for chain in acc.iter_mut() {
            *chain = _mm256_fmadd_ps(*chain, a, b);
        }
    }
    let mut lanes = [0f32; 8];
    let sum = acc
        .iter()
        .fold(_mm256_set1_ps(0.0), |s, c| _mm256_add_ps(s, *c));
    // SAFETY: lanes holds 8 f32, the width of one __m256.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    lanes.iter().sum()
}

/// FLOP/s of `threads` threads each running the FMA chains, best of three.
fn fma_peak(threads: usize) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        let mut best: f64 = 0.0;
        for _ in 0..3 {
            let started = Instant::now();
            let sums: Vec<f32> = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..threads)
                    // SAFETY: the CPU has AVX2 and FMA, checked above.
                    .map(|_| scope.spawn(|| unsafe { fma_chains(ROUNDS) }))
                    .collect();
                workers.into_iter().map(|w| w.join().unwrap()).collect()
            });
            std::hint::black_box(sums);
            let flops = (threads * ROUNDS * CHAINS * 8 * 2) as f64;
            best = best.max(flops / started.elapsed().as_secs_f64());
        }
        return best;
    }
    0.0
}

/// GFLOP/s of an (m, k) × (k, n) product on `threads` threads, best of several.
fn gemm_rate(m: usize, k: usize, n: usize, threads: usize) -> f64 {
    let lhs: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let rhs: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut dst = vec![0f32; m * n];
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let flops = 2.0 * (m * k * n) as f64;
    let repeats = ((2e9 / flops) as usize).clamp(1, 200);
    let mut best: f64 = 0.0;
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..repeats {
            // SAFETY: dst is m × n, lhs m × k and rhs k × n, all row-major and in bounds.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    dst.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    lhs.as_ptr(),
                    1,
                    k as isize,
                    rhs.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
        }
        best = best.max(flops * repeats as f64 / started.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    best / 1e9
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let peak = fma_peak(threads) / 1e9;
    let peak_one = fma_peak(1) / 1e9;
    // Square products, then the generator's `small` training products (batch 8 × 256
    // tokens against its 256-wide layers, 1024-wide MLP and ~4.6k-token head).
    let shapes = [
        (256, 256, 256),
        (512, 512, 512),
        (1024, 1024, 1024),
        (2048, 2048, 2048),
        (2048, 256, 768),
        (2048, 256, 1024),
        (2048, 1024, 256),
        (2048, 256, 4608),
    ];
    let rows: Vec<String> = shapes
        .iter()
        .map(|&(m, k, n)| {
            let rate = gemm_rate(m, k, n, threads);
            format!(
                "{{\"m\": {m}, \"k\": {k}, \"n\": {n}, \"gflop_per_s\": {rate:.1}, \"share_of_peak\": {:.3}}}",
                rate / peak
            )
        })
        .collect();
    println!(
        "{{\"threads\": {threads}, \"fma_peak_gflop_per_s\": {peak:.1}, \"fma_peak_one_thread\": {peak_one:.1}, \
         \"implied_ghz\": {:.2}, \"gemm\": [{}]}}",
        peak_one / 32.0,
        rows.join(", ")
    );
}
