//! The vector quantizer: nearest codebook entry per latent, with the straight-through
//! estimator and the VQ-VAE losses (van den Oord et al., 2017, arXiv:1711.00937).

use candle_core::{D, DType, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{CodebookKind, VqganConfig};

/// What quantizing a batch of latents gives.
#[derive(Debug)]
pub struct Quantized {
    /// Quantized latents (b, embed_dim, h, w), with straight-through gradients to the
    /// encoder.
    pub z_q: Tensor,
    /// Code indices (b, h, w), u32.
    pub indices: Tensor,
    /// ||sg(z) - e||^2: moves codes toward the encoder outputs.
    pub codebook_loss: Tensor,
    /// ||z - sg(e)||^2: keeps the encoder committed to its codes (weighted by beta).
    pub commitment_loss: Tensor,
}

#[derive(Debug)]
pub(crate) struct Quantizer {
    /// (n_embed, embed_dim), taming's `quantize.embedding.weight`.
    embedding: Tensor,
    kind: CodebookKind,
}

/// Unit-length rows (the last dimension), with a floor against zero vectors.
pub(crate) fn l2_normalize(xs: &Tensor) -> Result<Tensor> {
    let norm = (xs.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    xs.broadcast_div(&norm)
}

impl Quantizer {
    pub(crate) fn new(cfg: &VqganConfig, vb: VarBuilder) -> Result<Self> {
        // taming initializes uniformly in +-1/n_embed.
        let bound = 1.0 / cfg.n_embed as f64;
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let embedding =
            vb.pp("embedding")
                .get_with_hints((cfg.n_embed, cfg.embed_dim), "weight", init)?;
        Ok(Self {
            embedding,
            kind: cfg.codebook,
        })
    }

    /// The codebook as used for lookup: normalized rows for cosine codebooks.
    fn codes(&self) -> Result<Tensor> {
        match self.kind {
            CodebookKind::Euclidean => Ok(self.embedding.clone()),
            CodebookKind::Cosine => l2_normalize(&self.embedding),
        }
    }

    /// The nearest code of each row of `flat` (n, d), as u32 indices (n).
    fn nearest(&self, flat: &Tensor) -> Result<Tensor> {
        let codes = self.codes()?.detach();
        let flat = flat.detach();
        let scores = match self.kind {
            // -||z - e||^2 up to the row constant ||z||^2, which argmax ignores.
            CodebookKind::Euclidean => {
                let code_norms = codes.sqr()?.sum(D::Minus1)?; // (n_embed)
                (flat.matmul(&codes.t()?)? * 2.0)?.broadcast_sub(&code_norms)?
            }
            CodebookKind::Cosine => l2_normalize(&flat)?.matmul(&codes.t()?)?,
        };
        scores.argmax(D::Minus1)
    }

    pub(crate) fn quantize(&self, z: &Tensor) -> Result<Quantized> {
        let (b_sz, channels, height, width) = z.dims4()?;
        let z = z.permute((0, 2, 3, 1))?; // (b, h, w, c)
        let flat = z.reshape((b_sz * height * width, channels))?;
        let flat = match self.kind {
            CodebookKind::Euclidean => flat,
            CodebookKind::Cosine => l2_normalize(&flat)?,
        };
        let indices = self.nearest(&flat)?;
        let chosen = self.codes()?.index_select(&indices, 0)?; // (n, c)
        let codebook_loss = (chosen.clone() - flat.detach())?.sqr()?.mean_all()?;
        let commitment_loss = (chosen.detach() - &flat)?.sqr()?.mean_all()?;
        let straight_through = (&flat + (chosen - &flat)?.detach())?;
        let z_q = straight_through
            .reshape((b_sz, height, width, channels))?
            .permute((0, 3, 1, 2))?
            .contiguous()?; // (b, c, h, w)
        Ok(Quantized {
            z_q,
            indices: indices.reshape((b_sz, height, width))?,
            codebook_loss,
            commitment_loss,
        })
    }

    /// Code vectors (b, embed_dim, h, w) for indices (b, h, w).
    pub(crate) fn lookup(&self, indices: &Tensor) -> Result<Tensor> {
        let (b_sz, height, width) = indices.dims3()?;
        let flat = indices.flatten_all()?.to_dtype(DType::U32)?;
        self.codes()?
            .index_select(&flat, 0)?
            .reshape((b_sz, height, width, ()))?
            .permute((0, 3, 1, 2))?
            .contiguous()
    }
}
