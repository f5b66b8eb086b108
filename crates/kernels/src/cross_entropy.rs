//! Cross-entropy of each row of logits against a target id, as one CPU kernel for the
//! forward pass and one for the backward pass.
//!
//! The composed form (log-softmax, gather, and their gradients) makes about a dozen passes
//! over the (positions × vocabulary) logits, each into a fresh buffer; over a vocabulary of
//! a few thousand that was as much element-wise work as all the transformer's layers. Here
//! the forward pass reads each row once (it fits in L1) and writes one number; the backward
//! pass writes the gradient, softmax minus one-hot, in one pass.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, D, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::contiguous_f32;

use crate::simd::{avx2_dispatch, exp};

/// `logsumexp(logits[i]) − logits[i, targets[i]]` for every row of `logits` (n, vocab)
/// against `targets` (n,) u32: the negative log-likelihood of each target, differentiable
/// in the logits. A target outside the vocabulary is an error.
pub fn cross_entropy_rows(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let fused =
        logits.device().is_cpu() && logits.dtype() == DType::F32 && targets.dtype() == DType::U32;
    if fused {
        logits
            .contiguous()?
            .apply_op2(&targets.contiguous()?, CrossEntropy)
    } else {
        let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        log_probs
            .gather(&targets.unsqueeze(1)?, 1)?
            .squeeze(1)?
            .neg()
    }
}

struct CrossEntropy;

/// The gradient in the logits: (logits, targets, [loss, incoming gradient] per row) ->
/// gradient · (softmax − one-hot(target)).
struct CrossEntropyBackward;

fn rows_and_targets<'a>(
    op: &str,
    logits: (&'a CpuStorage, &Layout),
    targets: (&'a CpuStorage, &Layout),
) -> Result<(&'a [f32], usize, &'a [u32])> {
    let (rows, vocab) = logits.1.shape().dims2()?;
    let logits = contiguous_f32(logits.0, logits.1, op)?;
    let CpuStorage::U32(ids) = targets.0 else {
        candle_core::bail!("{op}: targets must be u32");
    };
    let Some((start, end)) = targets.1.contiguous_offsets() else {
        candle_core::bail!("{op}: targets must be contiguous");
    };
    let ids = &ids[start..end];
    if ids.len() != rows {
        candle_core::bail!("{op}: {rows} rows of logits but {} targets", ids.len());
    }
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
        candle_core::bail!("{op}: target {bad} is outside the vocabulary of {vocab}");
    }
    Ok((logits, vocab, ids))
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy-rows"
    }

    fn cpu_fwd(
        &self,
        logits: &CpuStorage,
        logits_layout: &Layout,
        targets: &CpuStorage,
        targets_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (logits, vocab, ids) = rows_and_targets(
            self.name(),
            (logits, logits_layout),
            (targets, targets_layout),
        )?;
        let losses: Vec<f32> = logits
            .par_chunks(vocab)
            .zip(ids.par_iter())
            .map(|(row, &id)| log_sum_exp(row) - row[id as usize])
            .collect();
        let rows = losses.len();
        Ok((CpuStorage::F32(losses), Shape::from(rows)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        losses: &Tensor,
        grad_losses: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let per_row = Tensor::stack(&[losses, grad_losses], 1)?;
        let grad = logits.apply_op3_no_bwd(targets, &per_row, &CrossEntropyBackward)?;
        Ok((Some(grad), None))
    }
}

impl CustomOp3 for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "cross-entropy-rows-backward"
    }

    fn cpu_fwd(
        &self,
        logits: &CpuStorage,
        logits_layout: &Layout,
        targets: &CpuStorage,
        targets_layout: &Layout,
        per_row: &CpuStorage,
        per_row_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (logits, vocab, ids) = rows_and_targets(
            self.name(),
            (logits, logits_layout),
            (targets, targets_layout),
        )?;
        let per_row = contiguous_f32(per_row, per_row_layout, self.name())?;
        let mut grads = vec![0f32; logits.len()];
        grads
            .par_chunks_mut(vocab)
            .zip(logits.par_chunks(vocab))
            .zip(ids.par_iter().zip(per_row.par_chunks(2)))
            .for_each(|((out, row), (&id, loss_and_grad))| {
                let id = id as usize;
                let (loss, grad) = (loss_and_grad[0], loss_and_grad[1]);
                // loss = lse − row[id], so the row's log-normalizer comes back exactly.
                softmax_times(row, loss + row[id], grad, out);
                out[id] -= grad;
            });
        Ok((CpuStorage::F32(grads), logits_layout.shape().clone()))
    }
}

avx2_dispatch!(fn log_sum_exp = log_sum_exp_body(row: &[f32]) -> f32);
avx2_dispatch!(fn softmax_times = softmax_times_body(row: &[f32], lse: f32, scale: f32, out: &mut [f32]));

/// Lanes of the row reductions: independent accumulators the compiler keeps in one vector.
const LANES: usize = 8;

#[inline(always)]
fn log_sum_exp_body(row: &[f32]) -> f32 {
    let mut max = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks.clone() {
        for (m, &x) in max.iter_mut().zip(chunk) {
            *m = if x > *m { x } else { *m };
        }
    }
    let max = tail
        .iter()
        .chain(&max)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    let mut sum = [0f32; LANES];
    for chunk in chunks {
        for (s, &x) in sum.iter_mut().zip(chunk) {
            *s += exp(x - max);
        }
    }
    let sum: f32 = sum.iter().sum::<f32>() + tail.iter().map(|&x| exp(x - max)).sum::<f32>();
    max + sum.ln()
}

#[inline(always)]
fn softmax_times_body(row: &[f32], lse: f32, scale: f32, out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(row) {
        *o = scale * exp(x - lse);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::max_abs_diff;
    use candle_core::{Device, Var};

    fn composed(logits: &Tensor, targets: &Tensor) -> Tensor {
        let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1).unwrap();
        log_probs
            .gather(&targets.unsqueeze(1).unwrap(), 1)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .neg()
            .unwrap()
    }

    // Losses and gradients match candle's log-softmax and gather, on rows of a vocabulary
    // that is not a multiple of the lanes, with large and spread-out logits.
    #[test]
    fn matches_log_softmax_and_its_gradient() {
        let (rows, vocab) = (37, 1003);
        let values: Vec<f32> = (0..rows * vocab)
            .map(|i| ((i * 7919) % 2003) as f32 / 40.0 - 25.0 + (i / vocab) as f32 * 3.0)
            .collect();
        let logits =
            Var::from_tensor(&Tensor::from_vec(values, (rows, vocab), &Device::Cpu).unwrap())
                .unwrap();
        let ids: Vec<u32> = (0..rows as u32).map(|i| (i * 131) % vocab as u32).collect();
        let targets = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap();
        let ours = cross_entropy_rows(logits.as_tensor(), &targets).unwrap();
        let reference = composed(logits.as_tensor(), &targets);
        assert!(max_abs_diff(&ours, &reference).unwrap() < 1e-4);
        let weights = Tensor::new(
            (0..rows)
                .map(|i| (i % 5) as f32 - 2.0)
                .collect::<Vec<_>>()
                .as_slice(),
            &Device::Cpu,
        )
        .unwrap();
        let gradient = |losses: &Tensor| {
            let grads = (losses * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            grads.get(logits.as_tensor()).unwrap().clone()
        };
        assert!(max_abs_diff(&gradient(&ours), &gradient(&reference)).unwrap() < 1e-6);
    }

    #[test]
    fn a_target_outside_the_vocabulary_is_an_error() {
        let logits = Tensor::zeros((2, 5), DType::F32, &Device::Cpu).unwrap();
        let targets = Tensor::new(&[1u32, 5], &Device::Cpu).unwrap();
        let err = cross_entropy_rows(&logits, &targets)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("target 5 is outside the vocabulary of 5"),
            "{err}"
        );
    }
}
