//! CLIP's text tower: token and position embeddings, a causal transformer, and the hidden
//! state at the end-of-text token as the pooled output (`text_model.*` in HF checkpoints).

use candle_core::{D, DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{Embedding, Init, VarBuilder};

use super::TextConfig;
use super::transformer::{Encoder, LayerNorm};

#[derive(Debug, Clone)]
pub(super) struct TextTransformer {
    token_embedding: Embedding,
    position_embedding: Embedding,
    encoder: Encoder,
    final_layer_norm: LayerNorm,
    eos_token_id: u32,
}

fn embedding(rows: usize, size: usize, vb: VarBuilder) -> Result<Embedding> {
    // HF initializes CLIP's embeddings from N(0, 0.02).
    let weight = vb.get_with_hints(
        (rows, size),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        },
    )?;
    Ok(Embedding::new(weight, size))
}

impl TextTransformer {
    pub(super) fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let embeddings = vb.pp("embeddings");
        Ok(Self {
            token_embedding: embedding(
                cfg.vocab_size,
                cfg.hidden_size,
                embeddings.pp("token_embedding"),
            )?,
            position_embedding: embedding(
                cfg.max_position_embeddings,
                cfg.hidden_size,
                embeddings.pp("position_embedding"),
            )?,
            encoder: Encoder::new(&cfg.encoder_shape(), vb.pp("encoder"))?,
            final_layer_norm: LayerNorm::new(
                cfg.hidden_size,
                cfg.layer_norm_eps,
                vb.pp("final_layer_norm"),
            )?,
            eos_token_id: cfg.eos_token_id,
        })
    }

    /// Pooled outputs (b, hidden) of token ids (b, seq_len). Rows may be padded after
    /// their end-of-text token: the causal mask keeps padding out of the pooled state.
    pub(super) fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (b_sz, seq_len) = input_ids.dims2()?;
        let positions = Tensor::arange(0u32, seq_len as u32, input_ids.device())?;
        let xs = input_ids
            .apply(&self.token_embedding)?
            .broadcast_add(&positions.apply(&self.position_embedding)?)?;
        let mask = causal_mask(seq_len, input_ids.device())?;
        let xs = self
            .encoder
            .forward(&xs, Some(&mask))?
            .apply(&self.final_layer_norm)?;
        let eos_positions = self.eos_positions(input_ids)?;
        // (b, seq, hidden) -> (b, hidden): one row per sequence at its end-of-text token.
        let rows = (0..b_sz)
            .map(|row| xs.i((row, eos_positions[row] as usize)))
            .collect::<Result<Vec<_>>>()?;
        Tensor::stack(&rows, 0)
    }

    /// Where each row's pooled state is read, as HF does: with the legacy end-of-text id 2,
    /// the position of the largest id; otherwise the first end-of-text token (0 if none).
    fn eos_positions(&self, input_ids: &Tensor) -> Result<Vec<u32>> {
        if self.eos_token_id == 2 {
            return input_ids.argmax(D::Minus1)?.to_vec1::<u32>();
        }
        let ids = input_ids.to_vec2::<u32>()?;
        Ok(ids
            .iter()
            .map(|row| {
                row.iter()
                    .position(|&id| id == self.eos_token_id)
                    .unwrap_or(0) as u32
            })
            .collect())
    }
}

/// (seq, seq): 0 on and below the diagonal, -inf above.
fn causal_mask(seq_len: usize, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..seq_len)
        .flat_map(|row| {
            (0..seq_len).map(move |col| if col > row { f32::NEG_INFINITY } else { 0.0 })
        })
        .collect();
    Tensor::from_vec(values, (seq_len, seq_len), device)?.to_dtype(DType::F32)
}

impl Module for TextTransformer {
    fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        TextTransformer::forward(self, input_ids)
    }
}
