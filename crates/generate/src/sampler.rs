//! From logits to tokens, apart from the model (llama2.c's `Sampler`, candle's
//! `LogitsProcessor`). Each step works on one row of logits and is testable alone:
//! temperature, top-k, top-p (nucleus; Holtzman et al., 2020), classifier-free guidance
//! (logits = u + s · (c − u); Gafni et al., 2022, as RA-CM3 §3.4 uses it) and
//! [`Structure`], which keeps image spans well formed.

use racm3_tokenize::{IdSpace, Special};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Classifier-free guidance scale unless told (RA-CM3 §3.4 samples with it on).
pub const DEFAULT_CFG: f32 = 3.0;
/// The largest guidance scale: far past any useful one, and small enough that u + s (c − u)
/// stays finite for any logits a model writes.
pub const MAX_CFG: f32 = 100.0;
/// Nucleus mass for drawing images unless told.
pub const DEFAULT_TOP_P: f64 = 0.9;
/// The smallest temperature above 0 (greedy): below it, logits divided by it overflow f32.
pub const MIN_TEMPERATURE: f64 = 1e-3;
/// The largest temperature: beyond it every token is as likely as any other.
pub const MAX_TEMPERATURE: f64 = 100.0;

/// A sampling setting outside what it can mean, named as the HTTP API names it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{name} is {value}; it must be {expected}")]
pub struct InvalidSetting {
    /// The setting.
    pub name: &'static str,
    /// What it was given.
    pub value: String,
    /// What it may be.
    pub expected: &'static str,
}

/// Refuses a guidance scale (`cfg`, `retrieval_guidance`) outside 0 to [`MAX_CFG`] (1 is
/// none).
pub fn validate_guidance(name: &'static str, scale: f32) -> Result<(), InvalidSetting> {
    if (0.0..=MAX_CFG).contains(&scale) {
        return Ok(());
    }
    Err(InvalidSetting {
        name,
        value: scale.to_string(),
        expected: "from 0 to 100 (1 is no guidance)",
    })
}

/// Settings of a [`Sampler`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingConfig {
    /// Divides the logits; 0 means greedy (argmax).
    pub temperature: f64,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches p.
    pub top_p: Option<f64>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: None,
            top_p: None,
        }
    }
}

impl SamplingConfig {
    /// Refuses what cannot be sampled with: a temperature other than 0 (greedy) or within
    /// [`MIN_TEMPERATURE`]..=[`MAX_TEMPERATURE`], top-k 0, top-p outside (0, 1].
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let temperature = self.temperature;
        if !(temperature == 0.0 || (MIN_TEMPERATURE..=MAX_TEMPERATURE).contains(&temperature)) {
            return Err(InvalidSetting {
                name: "temperature",
                value: temperature.to_string(),
                expected: "0 (greedy) or from 0.001 to 100",
            });
        }
        if self.top_k == Some(0) {
            return Err(InvalidSetting {
                name: "top_k",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(InvalidSetting {
                name: "top_p",
                value: p.to_string(),
                expected: "in (0, 1]",
            });
        }
        Ok(())
    }
}

/// Draws tokens from logits with a seeded generator: the same seed and logits give the
/// same tokens.
#[derive(Debug)]
pub struct Sampler {
    rng: StdRng,
    config: SamplingConfig,
}

impl Sampler {
    /// A sampler with its own generator seeded by `seed`.
    pub fn new(config: SamplingConfig, seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            config,
        }
    }

    /// A token id drawn from `logits` (one row over the vocabulary; -inf bans a token).
    /// Returns `None` when every token is banned.
    pub fn sample(&mut self, logits: &[f32]) -> Option<u32> {
        let mut logits = logits.to_vec();
        if self.config.temperature <= 0.0 {
            return argmax(&logits);
        }
        apply_temperature(&mut logits, self.config.temperature);
        if let Some(k) = self.config.top_k {
            keep_top_k(&mut logits, k);
        }
        let mut probabilities = softmax(&logits);
        if let Some(p) = self.config.top_p {
            keep_top_p(&mut probabilities, p);
        }
        let total: f64 = probabilities.iter().sum();
        if total <= 0.0 || !total.is_finite() {
            return None;
        }
        let mut target = self.rng.random::<f64>() * total;
        for (id, probability) in probabilities.iter().enumerate() {
            if *probability > 0.0 {
                if target < *probability {
                    return Some(id as u32);
                }
                target -= probability;
            }
        }
        probabilities
            .iter()
            .rposition(|p| *p > 0.0)
            .map(|id| id as u32)
    }
}

/// The highest logit's id (the lowest id on ties), or `None` if all are -inf or NaN.
pub fn argmax(logits: &[f32]) -> Option<u32> {
    logits
        .iter()
        .enumerate()
        .filter(|(_, value)| value.is_finite())
        .fold(
            None,
            |best: Option<(usize, f32)>, (id, &value)| match best {
                Some((_, top)) if top >= value => best,
                _ => Some((id, value)),
            },
        )
        .map(|(id, _)| id as u32)
}

/// Divides every logit by `temperature` (> 0).
pub fn apply_temperature(logits: &mut [f32], temperature: f64) {
    let scale = (1.0 / temperature) as f32;
    logits.iter_mut().for_each(|value| *value *= scale);
}

/// Bans all but the `k` highest logits (ties at the k-th value stay).
pub fn keep_top_k(logits: &mut [f32], k: usize) {
    if k == 0 || k >= logits.len() {
        return;
    }
    let mut sorted: Vec<f32> = logits.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    let cutoff = sorted[k - 1];
    logits
        .iter_mut()
        .filter(|value| **value < cutoff)
        .for_each(|value| *value = f32::NEG_INFINITY);
}

/// Probabilities of logits, in f64 so tiny probabilities survive.
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return vec![0.0; logits.len()];
    }
    let exps: Vec<f64> = logits.iter().map(|&v| ((v - max) as f64).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / total).collect()
}

/// Zeroes all but the smallest set of most likely tokens whose probability reaches `p`.
pub fn keep_top_p(probabilities: &mut [f64], p: f64) {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_unstable_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    let mut mass = 0.0;
    let mut kept = 0;
    for &id in &order {
        if mass >= p {
            break;
        }
        mass += probabilities[id];
        kept += 1;
    }
    for &id in &order[kept.max(1)..] {
        probabilities[id] = 0.0;
    }
}

/// Classifier-free guidance: `u + scale · (c − u)` per token, from the logits of the
/// conditional stream `c` and of the unconditional one `u` (its caption replaced by
/// `<mask:0>`). Scale 1 is the conditional logits; larger follows the condition harder.
/// It is computed as `scale · c + (1 − scale) · u`, the same value, so that scale 1 gives
/// `c` bit for bit.
pub fn guidance(conditional: &[f32], unconditional: &[f32], scale: f32) -> Vec<f32> {
    conditional
        .iter()
        .zip(unconditional)
        .map(|(&c, &u)| scale * c + (1.0 - scale) * u)
        .collect()
}

/// Where a sequence stands with respect to CM3's `<img alt="…" src="…">` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Plain text: no image codes.
    Outside,
    /// Inside `alt="`: caption text until `" src="`.
    Caption,
    /// Inside `src="` with this many codes written.
    Image(usize),
}

/// The structural constraint: inside `src="` only image codebook ids are allowed, exactly
/// `grid_tokens` of them, then `">`; outside an image, no image ids, and the frame tokens
/// only where they fit. Feed it every token of the sequence with [`Structure::observe`].
#[derive(Debug, Clone)]
pub struct Structure {
    ids: IdSpace,
    grid_tokens: usize,
    position: Position,
}

impl Structure {
    /// A constraint for images of `grid_tokens` codes (64 for an 8×8 grid).
    pub fn new(ids: IdSpace, grid_tokens: usize) -> Self {
        Self {
            ids,
            grid_tokens,
            position: Position::Outside,
        }
    }

    /// A constraint that starts inside `src="` and allows exactly `codes` image ids, then
    /// only `">`: the hole of an image whose other codes are already written (infilling).
    pub fn image_hole(ids: IdSpace, codes: usize) -> Self {
        Self {
            ids,
            grid_tokens: codes,
            position: Position::Image(0),
        }
    }

    /// True while inside `src="`, where image codes are being written.
    pub fn in_image(&self) -> bool {
        matches!(self.position, Position::Image(_))
    }

    /// Advances over one token of the sequence.
    pub fn observe(&mut self, token: u32) {
        let special = |s: Special| self.ids.special(s);
        self.position = match self.position {
            _ if token == special(Special::ImgAlt) => Position::Caption,
            Position::Caption if token == special(Special::ImgSrc) => Position::Image(0),
            Position::Image(_) if token == special(Special::ImgEnd) => Position::Outside,
            Position::Image(written) if self.ids.image_range().contains(&token) => {
                Position::Image(written + 1)
            }
            other => other,
        };
    }

    /// Bans (sets to -inf) every token that may not come next.
    pub fn apply(&self, logits: &mut [f32]) {
        let images = self.ids.image_range();
        let ban = |logits: &mut [f32], id: u32| {
            if let Some(value) = logits.get_mut(id as usize) {
                *value = f32::NEG_INFINITY;
            }
        };
        match self.position {
            Position::Image(written) => {
                let allowed: Vec<u32> = if written < self.grid_tokens {
                    images.collect()
                } else {
                    vec![self.ids.special(Special::ImgEnd)]
                };
                for (id, value) in logits.iter_mut().enumerate() {
                    if !allowed.contains(&(id as u32)) {
                        *value = f32::NEG_INFINITY;
                    }
                }
            }
            Position::Caption | Position::Outside => {
                for id in images {
                    ban(logits, id);
                }
                ban(logits, self.ids.special(Special::ImgEnd));
                if self.position == Position::Outside {
                    ban(logits, self.ids.special(Special::ImgSrc));
                } else {
                    ban(logits, self.ids.special(Special::ImgAlt));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Temperature 0 is argmax; the same seed draws the same tokens; a banned token is
    // never drawn; all-banned rows give None.
    #[test]
    fn greedy_seeded_and_banned() {
        let logits = [0.1, 2.0, f32::NEG_INFINITY, 1.9];
        let mut greedy = Sampler::new(
            SamplingConfig {
                temperature: 0.0,
                ..Default::default()
            },
            0,
        );
        assert_eq!(greedy.sample(&logits), Some(1));
        let draws = |seed| {
            let mut sampler = Sampler::new(SamplingConfig::default(), seed);
            (0..200)
                .map(|_| sampler.sample(&logits).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert!(!draws(7).contains(&2));
        assert!(draws(7).contains(&0) && draws(7).contains(&3));
        let mut any = Sampler::new(SamplingConfig::default(), 1);
        assert_eq!(any.sample(&[f32::NEG_INFINITY; 3]), None);
    }

    // Top-k keeps exactly the k best; top-p keeps the smallest prefix reaching p
    // (probabilities 0.5, 0.3, 0.2: p = 0.7 keeps two, p = 0.5 keeps one).
    #[test]
    fn top_k_and_top_p_cut_where_they_should() {
        let mut logits = [1.0, 3.0, 2.0, 0.5];
        keep_top_k(&mut logits, 2);
        assert_eq!(logits, [f32::NEG_INFINITY, 3.0, 2.0, f32::NEG_INFINITY]);
        let mut probabilities = [0.2, 0.5, 0.3];
        keep_top_p(&mut probabilities, 0.7);
        assert_eq!(probabilities, [0.0, 0.5, 0.3]);
        let mut probabilities = [0.2, 0.5, 0.3];
        keep_top_p(&mut probabilities, 0.5);
        assert_eq!(probabilities, [0.0, 0.5, 0.0]);
    }

    // Guidance is u + s(c - u): s = 1 gives c, s = 3 triples the difference.
    #[test]
    fn guidance_formula() {
        let (c, u) = ([1.0, -1.0], [0.5, 0.5]);
        assert_eq!(guidance(&c, &u, 1.0), vec![1.0, -1.0]);
        assert_eq!(guidance(&c, &u, 3.0), vec![2.0, -4.0]);
    }

    // Walking <img alt="x" src="[4 codes]">: image codes are banned in text and the
    // caption, then the only choices are codes until the grid is full, then only ">.
    #[test]
    fn image_spans_hold_exactly_a_grid_of_codes() {
        let ids = IdSpace::new(10, 6);
        let mut structure = Structure::new(ids, 4);
        let allowed = |structure: &Structure| {
            let mut logits = vec![0f32; ids.len() as usize];
            structure.apply(&mut logits);
            logits
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(id, _)| id as u32)
                .collect::<Vec<_>>()
        };
        let image_ids: Vec<u32> = ids.image_range().collect();
        let outside = allowed(&structure);
        assert!(outside.iter().all(|id| !image_ids.contains(id)));
        assert!(
            outside.contains(&ids.special(Special::ImgAlt))
                && !outside.contains(&ids.special(Special::ImgSrc))
        );
        structure.observe(ids.special(Special::ImgAlt));
        structure.observe(3);
        let caption = allowed(&structure);
        assert!(
            caption.contains(&ids.special(Special::ImgSrc))
                && caption.iter().all(|id| !image_ids.contains(id))
        );
        structure.observe(ids.special(Special::ImgSrc));
        for _ in 0..4 {
            assert_eq!(allowed(&structure), image_ids);
            structure.observe(image_ids[1]);
        }
        assert_eq!(allowed(&structure), vec![ids.special(Special::ImgEnd)]);
        structure.observe(ids.special(Special::ImgEnd));
        assert!(!structure.in_image());
        assert_eq!(allowed(&structure), outside);
    }

    // Each setting's edges: greedy and the bounds pass; NaN, negative, 1e-45 and 1e38
    // temperatures, top-k 0 and top-p outside (0, 1] are refused with the setting named;
    // guidance must lie in 0..=100.
    #[test]
    fn settings_are_validated_at_their_edges() {
        let with = |temperature: f64, top_k: Option<usize>, top_p: Option<f64>| SamplingConfig {
            temperature,
            top_k,
            top_p,
        };
        for fine in [
            with(0.0, None, None),
            with(MIN_TEMPERATURE, Some(1), Some(1.0)),
            with(MAX_TEMPERATURE, None, Some(1e-9)),
        ] {
            assert_eq!(fine.validate(), Ok(()), "{fine:?}");
        }
        for (bad, name) in [
            (with(f64::NAN, None, None), "temperature"),
            (with(-1.0, None, None), "temperature"),
            (with(1e-45, None, None), "temperature"),
            (with(1e38, None, None), "temperature"),
            (with(1.0, Some(0), None), "top_k"),
            (with(1.0, None, Some(0.0)), "top_p"),
            (with(1.0, None, Some(2.0)), "top_p"),
            (with(1.0, None, Some(f64::NAN)), "top_p"),
        ] {
            let refused = bad.validate().unwrap_err();
            assert_eq!(refused.name, name, "{bad:?}");
            assert!(refused.to_string().starts_with(name), "{refused}");
        }
        for cfg in [0.0, 1.0, DEFAULT_CFG, MAX_CFG] {
            assert!(validate_guidance("cfg", cfg).is_ok(), "{cfg}");
        }
        for cfg in [f32::NAN, -0.5, 1e38, f32::INFINITY] {
            assert!(validate_guidance("cfg", cfg).is_err(), "{cfg}");
        }
    }
}
