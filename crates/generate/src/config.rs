//! The CM3 decoder's shape, stored as `config.json` beside its weights.

use serde::{Deserialize, Serialize};

/// A CM3 decoder's hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Token ids are `0..vocab_size`: text BPE, image codes and specials (an `IdSpace`).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Width of each MLP's hidden layer.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub num_layers: usize,
    /// Attention heads; `hidden_size` must divide evenly.
    pub num_heads: usize,
    /// Longest sequence, retrieved documents included.
    pub max_seq_len: usize,
    /// Rotary embedding base (RoFormer's 10000).
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
    /// Copy-friendly image positions ([`ImagePositions`]); `None` in the paper's model
    /// and in every model trained before they existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_positions: Option<ImagePositions>,
    /// A pointer that copies codes of earlier images ([`ImageCopy`]); needs
    /// `image_positions`. `None` in the paper's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_copy: Option<ImageCopy>,
}

/// A learned embedding of each image code's place in its grid, added to the token
/// embedding and shared by every image in the sequence. Rotary positions alone tell a head
/// only how far back a token is, and the distance from a code of the main image to the
/// same place in a retrieved image changes with every caption's length; with this, code
/// (r, c) of every image carries the same vector, so attending to "the same place in the
/// retrieved image" is a match on content. Tokens outside images get one more learned
/// vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePositions {
    /// Image code ids are `first_id..first_id + codebook` (an `IdSpace`'s image range).
    pub first_id: u32,
    /// Codebook size.
    pub codebook: u32,
    /// Codes per image, in raster order (64 for a 64x64 image at f8).
    pub grid: usize,
}

impl ImagePositions {
    /// The embedding row of each token in one sequence, given `run` image codes right
    /// before it (a cache's count): `i % grid` for the i-th code of a run of codes, `grid`
    /// for any other token. Returns the rows and the run after the last token.
    pub fn rows(&self, ids: &[u32], mut run: usize) -> (Vec<u32>, usize) {
        let image = self.first_id..self.first_id + self.codebook;
        let rows = ids
            .iter()
            .map(|id| {
                if image.contains(id) {
                    run += 1;
                    ((run - 1) % self.grid) as u32
                } else {
                    run = 0;
                    self.grid as u32
                }
            })
            .collect();
        (rows, run)
    }
}

/// What the decoder reads directly from the documents before it (the retrieved ones) at
/// the place it predicts: for image code g, the code at grid place g of each of the first
/// `sources` complete images before it; with [`CaptionCopy`], for caption token j, token j
/// of each of the first `sources` complete captions before it. A decoder without this had
/// to grow an induction circuit to read retrieved documents, and at our budget never did
/// (BENCHMARKS.md, issue 23).
///
/// Two ways to use them, either or both. The *pointer* (pointer-generator style; See et al.,
/// 2017, arXiv:1704.04368) makes the next-token distribution a mixture of the vocabulary's
/// and of the source tokens, with weights from a softmax over a learned generate score and
/// one score per source (a query from the current position against a key from the source
/// token's position): exact copies. The *features* add each source token's embedding to
/// the input of the position: for sources drawn in another style, whose codes differ from
/// the answer's but say what is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageCopy {
    /// The id of `src="`, after which the first code of an image comes.
    pub image_start: u32,
    /// How many earlier documents it reads (the retrieved documents' K).
    pub sources: usize,
    /// Mix a pointer to the source tokens into the next-token distribution.
    #[serde(default = "yes")]
    pub pointer: bool,
    /// Add the embedding of each source token to the input of the position that predicts
    /// its place: the aligned source as a feature.
    #[serde(default)]
    pub features: bool,
    /// Read images (a pointer over captions alone turns this off).
    #[serde(default = "yes")]
    pub images: bool,
    /// Read captions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captions: Option<CaptionCopy>,
}

/// The ids that delimit captions, for [`ImageCopy`]. A caption is the text of `alt="…"`
/// (from `<img alt="` to `" src="`), or, in a causally masked document, the text after a
/// trailing `<mask:i>` (the infilled span, up to `<eos>`). Token j of an unmasked `alt`
/// caption before is the candidate for token j; past its end, the span's closing id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptionCopy {
    /// `<img alt="`.
    pub alt: u32,
    /// `<eos>`, which closes an infilled span.
    pub eos: u32,
    /// `<mask:0>`; the sentinels are `first_mask..first_mask + masks`.
    pub first_mask: u32,
    /// How many sentinels there are.
    pub masks: u32,
}

fn yes() -> bool {
    true
}

/// Where in a caption the next token goes.
#[derive(Debug, Clone, Copy)]
enum CaptionState {
    Outside,
    /// In `alt="…"` from `start`, `written` tokens so far; `masked` once a sentinel cut it.
    Alt {
        start: usize,
        written: usize,
        masked: bool,
    },
    /// In an infilled span after a trailing sentinel.
    Infilled {
        written: usize,
    },
}

impl ImageCopy {
    /// For each position of one whole sequence `ids`, per source, the token it may copy as
    /// its next token and the position whose hidden state keys it, row-major (`ids.len() ·
    /// sources`), `None` where there is none. A position predicts image code g when it is
    /// `src="` (g = 0) or the i-th code of a run whose next place is g = i mod grid > 0;
    /// its candidates are code g of each of the first `sources` runs of at least `grid`
    /// codes that ended before it. Captions: see [`CaptionCopy`].
    pub fn candidates(&self, positions: &ImagePositions, ids: &[u32]) -> Vec<Option<(usize, u32)>> {
        let image = positions.first_id..positions.first_id + positions.codebook;
        let mut images: Vec<usize> = Vec::with_capacity(self.sources);
        // Each complete caption's first position and the position of its `" src="`.
        let mut captions: Vec<(usize, usize)> = Vec::with_capacity(self.sources);
        let mut caption = CaptionState::Outside;
        let mut out = Vec::with_capacity(ids.len() * self.sources);
        let mut run = 0;
        for (position, &id) in ids.iter().enumerate() {
            let place = if id == self.image_start {
                run = 0;
                Some(0)
            } else if image.contains(&id) {
                run += 1;
                if run == positions.grid && images.len() < self.sources {
                    images.push(position + 1 - positions.grid);
                }
                Some(run % positions.grid).filter(|&place| place > 0)
            } else {
                run = 0;
                None
            };
            // The caption place the next token fills, and the id that closes the caption.
            let mut caption_place = None;
            if let Some(delimiters) = self.captions {
                let is_text = id < positions.first_id;
                let is_mask =
                    (delimiters.first_mask..delimiters.first_mask + delimiters.masks).contains(&id);
                caption = match caption {
                    _ if id == delimiters.alt => CaptionState::Alt {
                        start: position + 1,
                        written: 0,
                        masked: false,
                    },
                    CaptionState::Alt {
                        start,
                        masked: false,
                        ..
                    } if id == self.image_start => {
                        if captions.len() < self.sources {
                            captions.push((start, position));
                        }
                        CaptionState::Outside
                    }
                    CaptionState::Alt { start, written, .. } if is_mask => CaptionState::Alt {
                        start,
                        written,
                        masked: true,
                    },
                    CaptionState::Alt {
                        start,
                        written,
                        masked,
                    } if is_text => CaptionState::Alt {
                        start,
                        written: written + 1,
                        masked,
                    },
                    CaptionState::Outside | CaptionState::Infilled { .. } if is_mask => {
                        CaptionState::Infilled { written: 0 }
                    }
                    CaptionState::Infilled { written } if is_text => CaptionState::Infilled {
                        written: written + 1,
                    },
                    _ => CaptionState::Outside,
                };
                caption_place = match caption {
                    CaptionState::Alt {
                        written,
                        masked: false,
                        ..
                    } => Some((written, self.image_start)),
                    CaptionState::Infilled { written } => Some((written, delimiters.eos)),
                    _ => None,
                };
            }
            out.extend((0..self.sources).map(|slot| {
                if let Some(place) = place.filter(|_| self.images) {
                    // A run becomes a source at its grid-th code, whose next place is none.
                    let at = images.get(slot)? + place;
                    return Some((at, ids[at]));
                }
                let (written, close) = caption_place?;
                let &(start, end) = captions.get(slot)?;
                match (start + written).cmp(&end) {
                    std::cmp::Ordering::Less => Some((start + written, ids[start + written])),
                    std::cmp::Ordering::Equal => Some((end, close)),
                    std::cmp::Ordering::Greater => None,
                }
            }));
        }
        out
    }
}

impl Config {
    /// For tests: a few hundred thousand parameters.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 64,
            intermediate_size: 256,
            num_layers: 2,
            num_heads: 4,
            max_seq_len: 256,
            rope_theta: 10_000.0,
            norm_eps: 1e-5,
            image_positions: None,
            image_copy: None,
        }
    }

    /// Trains on emoji on two cores in under an hour: 4 layers of width 256. Its context
    /// holds three documents of 64 image tokens plus captions (K = 2 retrieved + main).
    pub fn small(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 256,
            intermediate_size: 1024,
            num_layers: 4,
            num_heads: 4,
            max_seq_len: 512,
            rope_theta: 10_000.0,
            norm_eps: 1e-5,
            image_positions: None,
            image_copy: None,
        }
    }

    /// The paper's RA-CM3 shape (Yasunaga et al., 2023, §4.1): 2.7B parameters, 32
    /// layers of width 2560 with 32 heads, for GPUs.
    pub fn ra_cm3_2_7b(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 2560,
            intermediate_size: 4 * 2560,
            num_layers: 32,
            num_heads: 32,
            max_seq_len: 4096,
            rope_theta: 10_000.0,
            norm_eps: 1e-5,
            image_positions: None,
            image_copy: None,
        }
    }

    /// A preset by name: `tiny`, `small` or `ra-cm3-2.7b`.
    pub fn preset(name: &str, vocab_size: usize) -> Option<Self> {
        match name {
            "tiny" => Some(Self::tiny(vocab_size)),
            "small" => Some(Self::small(vocab_size)),
            "ra-cm3-2.7b" => Some(Self::ra_cm3_2_7b(vocab_size)),
            _ => None,
        }
    }

    /// The preset names.
    pub const PRESETS: [&'static str; 3] = ["tiny", "small", "ra-cm3-2.7b"];

    /// Parameters that multiply activations: per block the fused QKV and output
    /// projections (4 d²) and the MLP's two layers (2 d·i), then the output head (d·V,
    /// tied to the embedding, whose lookup costs nothing).
    pub fn matmul_params(&self) -> usize {
        let (d, i) = (self.hidden_size, self.intermediate_size);
        self.num_layers * (4 * d * d + 2 * d * i) + d * self.vocab_size
    }

    /// Model FLOPs to train on one token of a `seq_len`-long sequence: PaLM's estimate
    /// (Chowdhery et al., 2022, appendix B), 6 per matmul parameter for the forward and
    /// backward products, plus 12 · layers · width · seq_len for attention's two products
    /// (causal masking not discounted, as the estimate has it).
    pub fn training_flops_per_token(&self, seq_len: usize) -> f64 {
        6.0 * self.matmul_params() as f64
            + 12.0 * (self.num_layers * self.hidden_size * seq_len) as f64
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Why this config cannot build a model, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.num_heads == 0 || !self.hidden_size.is_multiple_of(self.num_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_heads {}",
                self.hidden_size, self.num_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "head_dim {} must be even for rotary embeddings",
                self.head_dim()
            ));
        }
        if self.vocab_size == 0 || self.max_seq_len == 0 || self.num_layers == 0 {
            return Err("vocab_size, max_seq_len and num_layers must be positive".into());
        }
        if let Some(positions) = self.image_positions
            && (!(1..=self.max_seq_len).contains(&positions.grid)
                || positions.codebook == 0
                || positions
                    .first_id
                    .checked_add(positions.codebook)
                    .is_none_or(|end| end as usize > self.vocab_size))
        {
            return Err(format!(
                "image_positions {positions:?} do not fit a vocabulary of {}",
                self.vocab_size
            ));
        }
        if let Some(copy) = self.image_copy {
            if self.image_positions.is_none() {
                return Err("image_copy needs image_positions (the grid it copies from)".into());
            }
            if copy.sources == 0
                || copy.sources > 64
                || copy.image_start as usize >= self.vocab_size
                || !(copy.pointer || copy.features)
                || !(copy.images || copy.captions.is_some())
            {
                return Err(format!(
                    "image_copy {copy:?}: sources must be 1 to 64, image_start an id below {}, pointer or features on, and images or captions read",
                    self.vocab_size
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_positions_count_codes_within_each_run() {
        let positions = ImagePositions {
            first_id: 10,
            codebook: 5,
            grid: 3,
        };
        // Text 3, five codes (a grid of 3 wraps), text 20, two codes.
        let (rows, run) = positions.rows(&[3, 10, 11, 14, 12, 13, 20, 10, 10], 0);
        assert_eq!(rows, [3, 0, 1, 2, 0, 1, 3, 0, 1]);
        assert_eq!(run, 2);
        // A cache's run carries into the next call.
        assert_eq!(positions.rows(&[12, 4], 2), (vec![2, 3], 0));
    }

    /// Image codes 10..16 in grids of 3.
    fn codes_in_grids_of_3() -> ImagePositions {
        ImagePositions {
            first_id: 10,
            codebook: 6,
            grid: 3,
        }
    }

    fn pointer(image_start: u32, sources: usize, captions: Option<CaptionCopy>) -> ImageCopy {
        ImageCopy {
            image_start,
            sources,
            pointer: true,
            features: false,
            images: true,
            captions,
        }
    }

    // Runs of 3 codes (ids 10..16) after `src="` (2): the first image has nothing to copy,
    // the second copies from the first, the third from both, each code from its own place.
    #[test]
    fn copy_candidates_are_the_same_place_in_earlier_images() {
        let positions = codes_in_grids_of_3();
        let copy = pointer(2, 2, None);
        let ids = [2, 10, 11, 12, 4, 2, 13, 14, 12, 4, 2, 10, 11, 12, 4];
        let candidates = copy.candidates(&positions, &ids);
        for (at, token) in candidates.iter().flatten() {
            assert_eq!(ids[*at], *token);
        }
        let pairs: Vec<[Option<usize>; 2]> = candidates
            .chunks(2)
            .map(|pair| [pair[0].map(|(at, _)| at), pair[1].map(|(at, _)| at)])
            .collect();
        let none = [None, None];
        let want = [
            none,
            none,
            none,
            none,
            none,
            [Some(1), None],
            [Some(2), None],
            [Some(3), None],
            none,
            none,
            [Some(1), Some(6)],
            [Some(2), Some(7)],
            [Some(3), Some(8)],
            none,
            none,
        ];
        assert_eq!(pairs, want);
    }

    // Captions (text ids 0..10; alt 20, src 17, end 21, eos 22, sentinels 30..32; codes
    // 10..16 in grids of 3): an `alt` caption copies token j of the one before and its
    // closing `" src="` past its end; a masked caption is no source; the span after a
    // trailing sentinel copies the same way and closes with `<eos>`; `images: false`
    // leaves the codes out.
    #[test]
    fn copy_candidates_in_captions() {
        let positions = codes_in_grids_of_3();
        let delimiters = CaptionCopy {
            alt: 20,
            eos: 22,
            first_mask: 30,
            masks: 2,
        };
        let copy = pointer(17, 1, Some(delimiters));
        let ids = [
            20, 5, 6, 17, 10, 11, 12, 21, // a source: caption [5, 6]
            20, 5, 17, 13, 14, 15, 21, // caption [5] copies 5, then offers 6
            20, 30, 17, 10, 10, 10, 21, // a masked caption copies nothing
            30, 5, 6, 22, // the infilled span copies [5, 6], then <eos>
        ];
        let candidates = copy.candidates(&positions, &ids);
        let at = |position: usize| candidates[position];
        assert_eq!(at(0), None);
        assert_eq!(at(8), Some((1, 5)));
        assert_eq!(at(9), Some((2, 6)));
        assert_eq!(at(11), Some((5, 11)), "image codes still copy");
        assert_eq!(at(16), None);
        assert_eq!(at(22), Some((1, 5)));
        assert_eq!(at(23), Some((2, 6)));
        assert_eq!(at(24), Some((3, 22)));
        assert_eq!(at(25), None);
        // Captions alone: the same caption candidates, none for image codes.
        let captions_only = ImageCopy {
            images: false,
            ..copy
        }
        .candidates(&positions, &ids);
        assert_eq!(captions_only[11], None);
        assert_eq!(captions_only[9], Some((2, 6)));
    }

    #[test]
    fn image_positions_must_fit_the_vocabulary() {
        let with = |first_id, codebook, grid| Config {
            image_positions: Some(ImagePositions {
                first_id,
                codebook,
                grid,
            }),
            ..Config::tiny(97)
        };
        assert!(with(40, 30, 4).validate().is_ok());
        assert!(with(90, 30, 4).validate().is_err());
        assert!(with(u32::MAX, 30, 4).validate().is_err());
        assert!(with(40, 30, 0).validate().is_err());
        assert!(with(40, 30, 100_000).validate().is_err());
    }
}
