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

/// `query · rows[i]` for four rows at once: interleaving four streams keeps more loads in
/// flight, which is what a graph search waits on (faiss's `distances_batch_4`).
#[inline]
pub fn dot4(query: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the kernel was compiled for.
            return unsafe { dot4_avx512(query, rows) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the kernel was compiled for.
            return unsafe { dot4_avx2(query, rows) };
        }
    }
    rows.map(|row| dot_portable(query, row))
}

/// Asks the CPU to start loading `row` into its caches, one request per 64-byte line, so
/// that a read of it soon after waits less on memory. A no-op where there is no such
/// instruction.
#[inline]
pub fn prefetch<T>(row: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = row.as_ptr().cast::<i8>();
        for offset in (0..std::mem::size_of_val(row)).step_by(64) {
            // SAFETY: the address lies inside `row`, and a prefetch never faults anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// `query · rows[i]` for four rows of 8-bit codes (see `index::codes`), the query already
/// scaled per dimension. A code row is a quarter of the bytes of an f32 row.
#[inline]
pub fn dot4_codes(query: &[f32], rows: [&[i8]; 4]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the kernel was compiled for.
            return unsafe { dot4_codes_avx512(query, rows) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the kernel was compiled for.
            return unsafe { dot4_codes_avx2(query, rows) };
        }
    }
    rows.map(|row| dot_codes_portable(query, row))
}

#[inline(always)]
fn dot_codes_portable(query: &[f32], row: &[i8]) -> f32 {
    let mut lanes = [0f32; 8];
    let (q_chunks, r_chunks) = (query.chunks_exact(8), row.chunks_exact(8));
    let tail: f32 = q_chunks
        .remainder()
        .iter()
        .zip(r_chunks.remainder())
        .map(|(&q, &c)| q * f32::from(c))
        .sum();
    for (q, c) in q_chunks.zip(r_chunks) {
        for lane in 0..8 {
            lanes[lane] += q[lane] * f32::from(c[lane]);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot4_codes_avx512(query: &[f32], rows: [&[i8]; 4]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let len = rows.iter().fold(query.len(), |len, row| len.min(row.len()));
    let q = query.as_ptr();
    let pointers = rows.map(<[i8]>::as_ptr);
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 16 <= len {
        // SAFETY: i + 16 <= len, inside the query and every row.
        let x = unsafe { _mm512_loadu_ps(q.add(i)) };
        for (sum, row) in acc.iter_mut().zip(pointers) {
            let bytes = unsafe { _mm_loadu_si128(row.add(i).cast()) };
            let y = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes));
            *sum = _mm512_fmadd_ps(x, y, *sum);
        }
        i += 16;
    }
    let mut out = [0f32; 4];
    for (slot, (sum, row)) in out.iter_mut().zip(acc.iter().zip(rows)) {
        *slot = _mm512_reduce_add_ps(*sum)
            + (i..len).map(|j| query[j] * f32::from(row[j])).sum::<f32>();
    }
    out
}

/// The portable kernel compiled for AVX2: the compiler widens its eight lanes to one
/// 256-bit register and the byte-to-float conversion to `vpmovsxbd` + `vcvtdq2ps`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_codes_avx2(query: &[f32], rows: [&[i8]; 4]) -> [f32; 4] {
    rows.map(|row| dot_codes_portable(query, row))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot4_avx512(query: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let len = rows.iter().fold(query.len(), |len, row| len.min(row.len()));
    let q = query.as_ptr();
    let pointers = rows.map(<[f32]>::as_ptr);
    // Two sums a row, as in the AVX2 kernel: eight independent FMA chains.
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut acc2 = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= len {
        // SAFETY: i + 32 <= len, inside the query and every row.
        let (x, x2) = unsafe { (_mm512_loadu_ps(q.add(i)), _mm512_loadu_ps(q.add(i + 16))) };
        for ((sum, sum2), row) in acc.iter_mut().zip(acc2.iter_mut()).zip(pointers) {
            let (y, y2) = unsafe {
                (
                    _mm512_loadu_ps(row.add(i)),
                    _mm512_loadu_ps(row.add(i + 16)),
                )
            };
            *sum = _mm512_fmadd_ps(x, y, *sum);
            *sum2 = _mm512_fmadd_ps(x2, y2, *sum2);
        }
        i += 32;
    }
    while i + 16 <= len {
        // SAFETY: i + 16 <= len, inside the query and every row.
        let x = unsafe { _mm512_loadu_ps(q.add(i)) };
        for (sum, row) in acc.iter_mut().zip(pointers) {
            let y = unsafe { _mm512_loadu_ps(row.add(i)) };
            *sum = _mm512_fmadd_ps(x, y, *sum);
        }
        i += 16;
    }
    let mut out = [0f32; 4];
    for (slot, ((sum, sum2), row)) in out.iter_mut().zip(acc.iter().zip(acc2).zip(rows)) {
        *slot = _mm512_reduce_add_ps(_mm512_add_ps(*sum, sum2))
            + (i..len).map(|j| query[j] * row[j]).sum::<f32>();
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_avx2(query: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let len = rows.iter().fold(query.len(), |len, row| len.min(row.len()));
    let q = query.as_ptr();
    let pointers = rows.map(<[f32]>::as_ptr);
    // Two sums a row: eight independent FMA chains keep both FMA units busy (latency 4,
    // two a cycle), where one chain a row would leave half of them idle.
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut acc2 = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 16 <= len {
        // SAFETY: i + 16 <= len, inside the query and every row.
        let (x, x2) = unsafe { (_mm256_loadu_ps(q.add(i)), _mm256_loadu_ps(q.add(i + 8))) };
        for ((sum, sum2), row) in acc.iter_mut().zip(acc2.iter_mut()).zip(pointers) {
            let (y, y2) = unsafe { (_mm256_loadu_ps(row.add(i)), _mm256_loadu_ps(row.add(i + 8))) };
            *sum = _mm256_fmadd_ps(x, y, *sum);
            *sum2 = _mm256_fmadd_ps(x2, y2, *sum2);
        }
        i += 16;
    }
    while i + 8 <= len {
        // SAFETY: i + 8 <= len, inside the query and every row.
        let x = unsafe { _mm256_loadu_ps(q.add(i)) };
        for (sum, row) in acc.iter_mut().zip(pointers) {
            let y = unsafe { _mm256_loadu_ps(row.add(i)) };
            *sum = _mm256_fmadd_ps(x, y, *sum);
        }
        i += 8;
    }
    for (sum, sum2) in acc.iter_mut().zip(acc2) {
        *sum = _mm256_add_ps(*sum, sum2);
    }
    let mut out = [0f32; 4];
    for (slot, (sum, row)) in out.iter_mut().zip(acc.iter().zip(rows)) {
        let halves = _mm_add_ps(_mm256_castps256_ps128(*sum), _mm256_extractf128_ps(*sum, 1));
        let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
        let total = _mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1));
        *slot = _mm_cvtss_f32(total) + (i..len).map(|j| query[j] * row[j]).sum::<f32>();
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

    // The code kernels agree with a plain f64 sum at every length around the SIMD widths.
    #[test]
    fn code_kernels_match_f64_sum() {
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 100, 512] {
            let query: Vec<f32> = (0..len)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let rows: Vec<Vec<i8>> = (0..4)
                .map(|r| (0..len).map(|i| ((i * 31 + r * 17) % 255) as i8).collect())
                .collect();
            let got = dot4_codes(&query, [0, 1, 2, 3].map(|r| rows[r].as_slice()));
            for (r, got) in got.into_iter().enumerate() {
                let terms = query
                    .iter()
                    .zip(&rows[r])
                    .map(|(&q, &c)| q as f64 * c as f64);
                let exact: f64 = terms.clone().sum();
                // f32 rounding, relative to the size of the terms.
                let tolerance = 1e-5 * terms.map(f64::abs).sum::<f64>() + 1e-6;
                assert!(
                    (got as f64 - exact).abs() < tolerance,
                    "len {len} row {r}: {got} vs {exact}"
                );
                let portable = dot_codes_portable(&query, &rows[r]) as f64;
                assert!((portable - exact).abs() < tolerance, "len {len} row {r}");
            }
        }
    }

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
