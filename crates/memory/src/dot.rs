//! The inner product that every search runs billions of times. x86-64 builds target plain
//! SSE2 by default, so the AVX2 + FMA kernel is chosen at run time.

/// `a · b` over the shorter length of the two.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the kernel was compiled for.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_portable(a, b)
}

/// Rows as IEEE half floats (bits), the compact copy a graph search reads.
pub(crate) fn to_f16_bits(values: &[f32]) -> Vec<u16> {
    values
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits())
        .collect()
}

/// `query · row` with `row` in half precision, for four rows at once: interleaving four
/// streams keeps more loads in flight, which is what a graph search waits on (faiss's
/// `distances_batch_4`).
#[inline]
pub(crate) fn dot4_f16(query: &[f32], rows: [&[u16]; 4]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
        {
            // SAFETY: the CPU supports the features the kernel was compiled for.
            return unsafe { dot4_f16_avx2(query, rows) };
        }
    }
    rows.map(|row| dot_f16_portable(query, row))
}

/// `query · row` with `row` in half precision.
#[inline]
pub(crate) fn dot_f16(query: &[f32], row: &[u16]) -> f32 {
    dot4_f16(query, [row, row, row, row])[0]
}

fn dot_f16_portable(query: &[f32], row: &[u16]) -> f32 {
    query
        .iter()
        .zip(row)
        .map(|(q, bits)| q * half::f16::from_bits(*bits).to_f32())
        .sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot4_f16_avx2(query: &[f32], rows: [&[u16]; 4]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let len = rows.iter().fold(query.len(), |len, row| len.min(row.len()));
    let q = query.as_ptr();
    let pointers = rows.map(<[u16]>::as_ptr);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 8 <= len {
        // SAFETY: i + 8 <= len, inside the query and every row.
        let x = unsafe { _mm256_loadu_ps(q.add(i)) };
        for (sum, row) in acc.iter_mut().zip(pointers) {
            let halves = unsafe { _mm_loadu_si128(row.add(i).cast::<__m128i>()) };
            *sum = _mm256_fmadd_ps(x, _mm256_cvtph_ps(halves), *sum);
        }
        i += 8;
    }
    let mut out = [0f32; 4];
    for (slot, (sum, row)) in out.iter_mut().zip(acc.iter().zip(rows)) {
        let halves = _mm_add_ps(_mm256_castps256_ps128(*sum), _mm256_extractf128_ps(*sum, 1));
        let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
        let total = _mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1));
        *slot = _mm_cvtss_f32(total) + dot_f16_portable(&query[i..len], &row[i..len]);
    }
    out
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent sums let the compiler use SIMD without reassociating one sum.
    let mut lanes = [0f32; 8];
    let a_chunks = a.chunks_exact(8);
    let b_chunks = b.chunks_exact(8);
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let len = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // Four accumulators hide the FMA latency (4 cycles, 2 per cycle on Zen 3).
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= len {
        for (j, sum) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8 * j + 8 <= len, inside both slices.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(pa.add(i + 8 * j)),
                    _mm256_loadu_ps(pb.add(i + 8 * j)),
                )
            };
            *sum = _mm256_fmadd_ps(x, y, *sum);
        }
        i += 32;
    }
    while i + 8 <= len {
        // SAFETY: i + 8 <= len.
        let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
        acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let halves = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
    let total = _mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1));
    let mut result = _mm_cvtss_f32(total);
    while i < len {
        result += a[i] * b[i];
        i += 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    // Both kernels agree with a plain f64 sum at every length around the SIMD widths.
    #[test]
    fn kernels_match_f64_sum() {
        for len in [0, 1, 7, 8, 9, 31, 32, 33, 100, 512] {
            let a: Vec<f32> = (0..len)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let b: Vec<f32> = (0..len)
                .map(|i| ((i * 3 % 11) as f32 - 5.0) / 4.0)
                .collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - exact).abs() < 1e-4, "len {len}");
            assert!(
                (dot_portable(&a, &b) as f64 - exact).abs() < 1e-4,
                "len {len}"
            );
        }
    }
}
