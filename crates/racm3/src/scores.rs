//! Scores that need racm3's own CLIP: CLIPScore and RefCLIPScore (Hessel et al., 2021,
//! arXiv:2104.08718) and CLIP-FID (the Frechet distance on CLIP image embeddings, a quick
//! FID for small runs).

use image::RgbImage;
use racm3_evaluate::fid::{Statistics, frechet_distance};
use racm3_memory::dot;
use racm3_retrieve::ClipEncoder;

use crate::Error;

/// The prompt prefix CLIPScore puts before every caption.
pub const CLIPSCORE_PREFIX: &str = "A photo depicts ";
/// CLIPScore's rescaling weight w.
pub const CLIPSCORE_WEIGHT: f64 = 2.5;

/// CLIPScore of each (image, caption) pair: w · max(cos(image, "A photo depicts " +
/// caption), 0).
pub fn clip_score(
    clip: &ClipEncoder,
    images: &[RgbImage],
    captions: &[&str],
) -> Result<Vec<f64>, Error> {
    if images.len() != captions.len() {
        return Err(Error::BadInput(format!(
            "{} images but {} captions",
            images.len(),
            captions.len()
        )));
    }
    let prompts: Vec<String> = captions
        .iter()
        .map(|c| format!("{CLIPSCORE_PREFIX}{c}"))
        .collect();
    let texts = clip.embed_texts(&prompts.iter().map(String::as_str).collect::<Vec<_>>())?;
    let pictures = clip.embed_images(images)?;
    let dim = clip.dim();
    Ok(texts
        .chunks(dim)
        .zip(pictures.chunks(dim))
        .map(|(t, i)| CLIPSCORE_WEIGHT * f64::from(dot(t, i)).max(0.0))
        .collect())
}

/// RefCLIPScore: the harmonic mean of CLIPScore and max(max over references of
/// cos(caption, reference), 0), per pair.
pub fn ref_clip_score(
    clip: &ClipEncoder,
    images: &[RgbImage],
    captions: &[&str],
    references: &[Vec<String>],
) -> Result<Vec<f64>, Error> {
    if references.len() != captions.len() {
        return Err(Error::BadInput(format!(
            "{} captions but {} reference sets",
            captions.len(),
            references.len()
        )));
    }
    let image_text = clip_score(clip, images, captions)?;
    let candidates = clip.embed_texts(captions)?;
    let dim = clip.dim();
    let mut scores = Vec::with_capacity(captions.len());
    for ((candidate, refs), &with_image) in candidates.chunks(dim).zip(references).zip(&image_text)
    {
        let embedded = clip.embed_texts(&refs.iter().map(String::as_str).collect::<Vec<_>>())?;
        let with_refs = embedded
            .chunks(dim)
            .map(|r| f64::from(dot(candidate, r)))
            .fold(0.0, f64::max);
        let sum = with_image + with_refs;
        scores.push(if sum > 0.0 {
            2.0 * with_image * with_refs / sum
        } else {
            0.0
        });
    }
    Ok(scores)
}

/// CLIP-FID: the Frechet distance between two image sets' CLIP image embeddings.
pub fn clip_fid(clip: &ClipEncoder, a: &[RgbImage], b: &[RgbImage]) -> Result<f64, Error> {
    let stats = |images: &[RgbImage], what: &str| -> Result<Statistics, Error> {
        Ok(Statistics::of(
            &clip.embed_images(images)?,
            clip.dim(),
            what,
        )?)
    };
    Ok(frechet_distance(
        &stats(a, "first set")?,
        &stats(b, "second set")?,
    )?)
}
