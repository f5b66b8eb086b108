//! Attention of one new query per sequence over its key-value cache, fused for the CPU.
//!
//! In decoding each step brings one token per sequence. The tensor-op form then runs two
//! batched products of (1 × head_dim) by (head_dim × seen) per head, a softmax and the
//! transposes around them, each a separate candle call with its own allocations; at
//! batch 8 with 4 heads that is 64 small matrix products per layer per step. This kernel
//! does scores, softmax and the weighted sum of values in one pass per head, reading the
//! cache where it lies. It has no backward pass: it serves only where no gradient is
//! tracked.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape};
use rayon::prelude::*;

/// `softmax(q · kᵀ · scale) · v` for q (b, heads, 1, head_dim) and k, v
/// (b, heads, seen, head_dim), all f32 with a contiguous last dimension.
pub struct SingleQueryAttention {
    /// Multiplies the scores before the softmax: 1 / √head_dim.
    pub scale: f32,
}

/// One (b, heads, t, head_dim) operand: its data and where each head's rows start.
struct Operand<'a> {
    data: &'a [f32],
    layout: &'a Layout,
}

impl Operand<'_> {
    fn new<'a>(storage: &'a CpuStorage, layout: &'a Layout, name: &str) -> Result<Operand<'a>> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("single-query attention: {name} must be f32");
        };
        if layout.dims().len() != 4 || layout.stride()[3] != 1 {
            candle_core::bail!(
                "single-query attention: {name} must be (b, heads, t, head_dim) with a contiguous last dimension, got {:?} strides {:?}",
                layout.dims(),
                layout.stride()
            );
        }
        Ok(Operand { data, layout })
    }

    /// Row `row` of head `head` in batch item `item`.
    fn row(&self, item: usize, head: usize, row: usize) -> &[f32] {
        let stride = self.layout.stride();
        let head_dim = self.layout.dims()[3];
        let start =
            self.layout.start_offset() + item * stride[0] + head * stride[1] + row * stride[2];
        &self.data[start..start + head_dim]
    }
}

/// A dot product in eight independent lanes, which the compiler turns into vector code.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
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

impl CustomOp3 for SingleQueryAttention {
    fn name(&self) -> &'static str {
        "single-query-attention"
    }

    fn cpu_fwd(
        &self,
        q_storage: &CpuStorage,
        q_layout: &Layout,
        k_storage: &CpuStorage,
        k_layout: &Layout,
        v_storage: &CpuStorage,
        v_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let q = Operand::new(q_storage, q_layout, "q")?;
        let k = Operand::new(k_storage, k_layout, "k")?;
        let v = Operand::new(v_storage, v_layout, "v")?;
        let &[batch, heads, one, head_dim] = q_layout.dims() else {
            candle_core::bail!("single-query attention: q must have four dimensions");
        };
        let seen = k_layout.dims()[2];
        if one != 1
            || k_layout.dims() != v_layout.dims()
            || k_layout.dims()[..2] != [batch, heads]
            || k_layout.dims()[3] != head_dim
        {
            candle_core::bail!(
                "single-query attention: shapes q {:?}, k {:?}, v {:?} do not fit",
                q_layout.dims(),
                k_layout.dims(),
                v_layout.dims()
            );
        }
        let mut out = vec![0f32; batch * heads * head_dim];
        out.par_chunks_mut(head_dim)
            .enumerate()
            .for_each(|(index, out)| {
                let (item, head) = (index / heads, index % heads);
                let query = q.row(item, head, 0);
                let mut weights: Vec<f32> = (0..seen)
                    .map(|row| dot(query, k.row(item, head, row)) * self.scale)
                    .collect();
                let max = weights.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut total = 0.0;
                for weight in &mut weights {
                    *weight = (*weight - max).exp();
                    total += *weight;
                }
                for (row, weight) in weights.iter().enumerate() {
                    let weight = weight / total;
                    for (o, value) in out.iter_mut().zip(v.row(item, head, row)) {
                        *o += weight * value;
                    }
                }
            });
        Ok((
            CpuStorage::F32(out),
            Shape::from((batch, heads, 1, head_dim)),
        ))
    }
}
