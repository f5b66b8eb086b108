//! RA-CM3 training sequences and their loss (Yasunaga et al., 2023, §3.3):
//! `[ret_1 <break> … ret_K <break> main <eos>]`, the main document causally masked, and
//! `L = L_main + α · L_retr` with α = 0.1, so the model also learns from the retrieved
//! documents without letting them dominate.

use candle_core::{Result, Tensor};
use racm3_tokenize::{CausalMasked, IdSpace, Special};

use racm3_kernels::cross_entropy::cross_entropy_rows;

use crate::model::{Cm3Output, CopyMix};

/// The paper's weight of the retrieved documents' loss.
pub const RETRIEVED_LOSS_WEIGHT: f32 = 0.1;

/// Which loss term a token's prediction counts toward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Part of a retrieved document (or the `<break>` after it): `L_retr`.
    Retrieved,
    /// Part of the main document: `L_main`.
    Main,
    /// Not predicted: a masked span's placeholder in the body.
    Ignored,
}

/// A training sequence with the role of each token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// Token ids.
    pub tokens: Vec<u32>,
    /// The role of each token as a prediction target.
    pub roles: Vec<Role>,
    /// How many retrieved documents fit.
    pub retrieved: usize,
}

/// Builds `[ret_1 <break> … ret_k <break> main <eos>]`. Retrieved documents that would
/// push the sequence past `max_len` are left out, last first; a main document that alone
/// does not fit is `None`.
pub fn training_sequence(
    retrieved: &[Vec<u32>],
    main: &CausalMasked,
    ids: &IdSpace,
    max_len: usize,
) -> Option<Sequence> {
    let main_len = main.tokens.len() + 1;
    if main_len > max_len {
        return None;
    }
    let mut budget = max_len - main_len;
    let mut kept = 0;
    for document in retrieved {
        if document.len() + 1 > budget {
            break;
        }
        budget -= document.len() + 1;
        kept += 1;
    }
    let mut tokens = Vec::with_capacity(max_len - budget);
    let mut roles = Vec::with_capacity(max_len - budget);
    for document in &retrieved[..kept] {
        tokens.extend_from_slice(document);
        tokens.push(ids.special(Special::Break));
        roles.extend(std::iter::repeat_n(Role::Retrieved, document.len() + 1));
    }
    tokens.extend_from_slice(&main.tokens);
    roles.extend(
        main.loss_mask
            .iter()
            .map(|&counts| if counts { Role::Main } else { Role::Ignored }),
    );
    tokens.push(ids.special(Special::Eos));
    roles.push(Role::Main);
    Some(Sequence {
        tokens,
        roles,
        retrieved: kept,
    })
}

/// The two loss terms and their combination for one batch.
#[derive(Debug, Clone)]
pub struct Loss {
    /// `L_main + α · L_retr`, the scalar to back-propagate.
    pub total: Tensor,
    /// Mean cross-entropy over main-document targets.
    pub main: f32,
    /// Mean cross-entropy over retrieved-document targets (0 when there are none).
    pub retrieved: f32,
}

/// Next-token loss of a pass's `output` (logits (b, t, vocab), and an image copy
/// pointer's mixture if the model has one) for `tokens` (b, t) whose roles are `roles` (b
/// rows of t): position i predicts token i + 1 and counts toward that token's role.
pub fn rag_loss(
    output: &Cm3Output,
    tokens: &Tensor,
    roles: &[Vec<Role>],
    alpha: f32,
) -> Result<Loss> {
    let logits = &output.logits;
    let (b_sz, seq_len, vocab) = logits.dims3()?;
    // Every position predicts the next token; the last of each row predicts nothing (target
    // 0, weight 0), which keeps the logits one contiguous (b·t, vocab) matrix.
    let targets = Tensor::cat(
        &[
            tokens.narrow(1, 1, seq_len - 1)?,
            Tensor::zeros((b_sz, 1), tokens.dtype(), tokens.device())?,
        ],
        1,
    )?
    .flatten_all()?;
    let picked = cross_entropy_rows(&logits.reshape((b_sz * seq_len, vocab))?, &targets)?;
    let picked = match &output.copy {
        Some(copy) => mixture_loss(copy, &picked, &targets.to_vec1::<u32>()?)?,
        None => picked,
    };
    let weights_of = |role: Role| -> (Vec<f32>, usize) {
        let mut count = 0;
        let weights = roles
            .iter()
            .flat_map(|row| row[1..].iter().map(Some).chain([None]))
            .map(|r| {
                let hit = r == Some(&role);
                count += usize::from(hit);
                if hit { 1.0 } else { 0.0 }
            })
            .collect();
        (weights, count)
    };
    let term = |role: Role| -> Result<Option<Tensor>> {
        let (weights, count) = weights_of(role);
        if count == 0 {
            return Ok(None);
        }
        let weights = Tensor::from_vec(weights, picked.dims1()?, picked.device())?;
        Ok(Some(((&picked * weights)?.sum_all()? / count as f64)?))
    };
    let main = term(Role::Main)?;
    let retrieved = term(Role::Retrieved)?;
    let zero = || Tensor::new(0f32, logits.device());
    let main = main.map_or_else(zero, Ok)?;
    let retrieved = retrieved.map_or_else(zero, Ok)?;
    let total = (&main + (&retrieved * alpha as f64)?)?;
    Ok(Loss {
        main: main.to_scalar::<f32>()?,
        retrieved: retrieved.to_scalar::<f32>()?,
        total,
    })
}

/// −ln(π₀ p(y) + Σₖ πₖ [codeₖ = y]) per position, from the vocabulary's loss −ln p(y)
/// (`vocabulary_loss`, b·t) and the mixture's weights.
fn mixture_loss(copy: &CopyMix, vocabulary_loss: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let sources = copy.sources();
    let positions = targets.len();
    let matches: Vec<f32> = copy
        .codes
        .chunks(sources)
        .zip(targets)
        .flat_map(|(codes, target)| {
            codes
                .iter()
                .map(move |code| if code == target { 0.0 } else { NO_MATCH })
        })
        .collect();
    let matches = Tensor::from_vec(matches, (positions, sources), vocabulary_loss.device())?;
    let log_weights = copy.log_weights.reshape((positions, sources + 1))?;
    let generate = (log_weights.narrow(1, 0, 1)? - vocabulary_loss.unsqueeze(1)?)?;
    let copy = (log_weights.narrow(1, 1, sources)? + matches)?;
    Tensor::cat(&[&generate, &copy], 1)?.log_sum_exp(1)?.neg()
}

/// The log-weight of a source whose code is not the target: far below any real one, and
/// finite, so gradients stay finite.
const NO_MATCH: f32 = -1e4;

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn masked(tokens: Vec<u32>) -> CausalMasked {
        let loss_mask = vec![true; tokens.len()];
        CausalMasked {
            tokens,
            loss_mask,
            spans: vec![],
        }
    }

    // Retrieved documents come first, each closed by <break>, then the main document and
    // <eos>; documents that do not fit are dropped from the end, whole.
    #[test]
    fn lays_out_and_truncates_whole_documents() {
        let ids = IdSpace::new(10, 4);
        let brk = ids.special(Special::Break);
        let eos = ids.special(Special::Eos);
        let main = masked(vec![1, 2, 3]);
        let sequence = training_sequence(&[vec![5, 6], vec![7]], &main, &ids, 20).unwrap();
        assert_eq!(sequence.tokens, vec![5, 6, brk, 7, brk, 1, 2, 3, eos]);
        assert_eq!(sequence.retrieved, 2);
        assert_eq!(&sequence.roles[..5], &[Role::Retrieved; 5]);
        assert_eq!(&sequence.roles[5..], &[Role::Main; 4]);
        let short = training_sequence(&[vec![5, 6], vec![7]], &main, &ids, 7).unwrap();
        assert_eq!(short.tokens, vec![5, 6, brk, 1, 2, 3, eos]);
        assert!(training_sequence(&[], &main, &ids, 3).is_none());
    }

    // With uniform logits every target costs ln(vocab): both terms equal it, and the total
    // is L_main + α · L_retr; ignored targets change nothing.
    #[test]
    fn loss_terms_on_uniform_logits() {
        let vocab = 8;
        let logits = Tensor::zeros((1, 5, vocab), candle_core::DType::F32, &Device::Cpu).unwrap();
        let tokens = Tensor::new(&[[1u32, 2, 3, 4, 5]], &Device::Cpu).unwrap();
        let roles = vec![vec![
            Role::Retrieved,
            Role::Retrieved,
            Role::Ignored,
            Role::Main,
            Role::Main,
        ]];
        let output = Cm3Output { logits, copy: None };
        let loss = rag_loss(&output, &tokens, &roles, 0.1).unwrap();
        let ln = (vocab as f32).ln();
        assert!((loss.main - ln).abs() < 1e-5 && (loss.retrieved - ln).abs() < 1e-5);
        let total = loss.total.to_scalar::<f32>().unwrap();
        assert!((total - 1.1 * ln).abs() < 1e-5, "{total}");
    }
}
