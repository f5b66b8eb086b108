//! Scores that need racm3's own CLIP: CLIPScore and RefCLIPScore (Hessel et al., 2021,
//! arXiv:2104.08718) and CLIP-FID (the Frechet distance on CLIP image embeddings, a quick
//! FID for small runs); and the image scores of a user's own files: FID and KID between
//! two folders (or two feature matrices), CLIPScore of COCO-format results.

use std::path::{Path, PathBuf};

use candle_core::Device;
use image::RgbImage;
use racm3_data::{Home, IMAGE_EXTENSIONS, read_image, read_image_folder};
use racm3_evaluate::coco::{read_pairs, read_results};
use racm3_evaluate::fid::{
    FEATURES, InceptionFid, Statistics, fid_of_npy, frechet_distance, frechet_distance_of_samples,
    kernel_inception_distance, read_npy,
};
use racm3_memory::dot;
use racm3_retrieve::ClipEncoder;
use racm3_tokenize::vqgan::ImageTokenizer;

use crate::Error;
use crate::error::WithContext;
use crate::progress::Observer;

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

/// Where the FID Inception weights are unless told: `$RACM3_FID_WEIGHTS`, else where
/// `.ci/fid-weights` puts them under `$RACM3_HOME`.
pub fn default_fid_weights() -> PathBuf {
    std::env::var_os("RACM3_FID_WEIGHTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Home::from_env()
                .path()
                .join("fid/inception-fid.safetensors")
        })
}

/// FID and KID between two sets, and their sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetDistance {
    /// Frechet Inception distance.
    pub fid: f64,
    /// Kernel Inception distance.
    pub kid: f64,
    /// Samples in the first and the second set.
    pub samples: (usize, usize),
}

fn is_npy(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "npy")
}

/// FID and KID between `a` and `b`: two folders of images, through the standard FID
/// Inception-v3 with the converted `weights`, or two .npy feature matrices (rows are
/// samples).
pub fn fid_between(a: &Path, b: &Path, weights: &Path) -> Result<SetDistance, Error> {
    match (is_npy(a), is_npy(b)) {
        (true, true) => {
            let (x, n, dim) = read_npy(a)?;
            let (y, m, _) = read_npy(b)?;
            let fid = fid_of_npy(a, b)?;
            let as_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
            let kid = kernel_inception_distance(&as_f32(&x), &as_f32(&y), dim)?;
            Ok(SetDistance {
                fid,
                kid,
                samples: (n, m),
            })
        }
        (false, false) => {
            let inception = load_inception(weights)?;
            let folder = |dir: &Path| {
                read_image_folder(dir).context(|| format!("reading the folder {}", dir.display()))
            };
            let (x, y) = (folder(a)?, folder(b)?);
            image_distance(&inception, &x, &y)
                .context(|| format!("{} against {}", a.display(), b.display()))
        }
        _ => Err(Error::BadInput(
            "give two folders of images or two .npy matrices, not one of each".into(),
        )),
    }
}

/// The FID Inception network from its converted `weights`, or an error that says how to make
/// them.
fn load_inception(weights: &Path) -> Result<InceptionFid, Error> {
    if !weights.exists() {
        return Err(Error::BadInput(format!(
            "no FID Inception weights at {}: run .ci/fid-weights to fetch and convert them (or name them: --weights, --fid-weights or $RACM3_FID_WEIGHTS)",
            weights.display()
        )));
    }
    Ok(InceptionFid::load(weights, &Device::Cpu)?)
}

fn image_distance(
    inception: &InceptionFid,
    x: &[RgbImage],
    y: &[RgbImage],
) -> Result<SetDistance, Error> {
    let fx = inception.features(x, 16)?;
    let fy = inception.features(y, 16)?;
    let widen = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
    Ok(SetDistance {
        fid: frechet_distance_of_samples(&widen(&fx), &widen(&fy), FEATURES)?,
        kid: kernel_inception_distance(&fx, &fy, FEATURES)?,
        samples: (x.len(), y.len()),
    })
}

/// FID and KID between `images` and their reconstructions through `tokenizer`, with the
/// converted Inception `weights`: how far anything drawn through this tokenizer starts
/// from the real images (the tokenizer floor of `racm3 eval`).
pub fn reconstruction_distance(
    tokenizer: &ImageTokenizer,
    images: &[RgbImage],
    weights: &Path,
) -> Result<SetDistance, Error> {
    let inception = load_inception(weights)?;
    let reconstructed = tokenizer.decode(&tokenizer.encode(images, 32)?)?;
    image_distance(&inception, images, &reconstructed)
}

/// [`reconstruction_distance`] on the held-out val Twemoji drawings of `$RACM3_HOME` (the
/// images `racm3 eval` scores against, the same every time): the tokenizer floor.
pub fn tokenizer_floor(
    tokenizer: &ImageTokenizer,
    weights: &Path,
    observer: &dyn Observer,
) -> Result<SetDistance, Error> {
    let drawings = crate::datasets::twemoji_entities(racm3_data::Split::Val, observer)?;
    let images: Vec<RgbImage> = drawings
        .iter()
        .filter_map(|d| d.images().next().map(|part| part.pixels.clone()))
        .collect();
    if images.len() < 2 {
        return Err(Error::BadInput(format!(
            "the tokenizer floor scores the held-out val Twemoji drawings, and $RACM3_HOME holds {} of them: run `racm3 data fetch emoji` first",
            images.len()
        )));
    }
    reconstruction_distance(tokenizer, &images, weights)
}

/// CLIPScore of a COCO results list against its images, per image.
#[derive(Debug, Clone, PartialEq)]
pub struct FileClipScores {
    /// The results' image ids, in order.
    pub image_ids: Vec<String>,
    /// CLIPScore of each.
    pub clip_score: Vec<f64>,
    /// RefCLIPScore of each, when references were given.
    pub ref_clip_score: Option<Vec<f64>>,
}

/// The image of `id` in `dir`, by any of the extensions racm3 reads.
fn image_of(dir: &Path, id: &str) -> Result<RgbImage, Error> {
    for extension in IMAGE_EXTENSIONS {
        let path = dir.join(format!("{id}.{extension}"));
        if path.exists() {
            return Ok(read_image(&path)?);
        }
    }
    Err(Error::BadInput(format!(
        "no image for image_id {id} in {} (expected {id}.png, .jpg or .webp)",
        dir.display()
    )))
}

/// CLIPScore of each caption in the COCO results list `results` against the image
/// `images/<image_id>.png` (or another extension racm3 reads), and RefCLIPScore against
/// the annotations file `references` when given.
pub fn clip_score_files(
    clip: &ClipEncoder,
    results: &Path,
    images: &Path,
    references: Option<&Path>,
) -> Result<FileClipScores, Error> {
    let (image_ids, captions, refs) = match references {
        Some(annotations) => {
            let pairs = read_pairs(annotations, results)?;
            (pairs.image_ids, pairs.candidates, Some(pairs.references))
        }
        None => {
            let (ids, captions) = read_results(results)?;
            (ids, captions, None)
        }
    };
    let pictures = image_ids
        .iter()
        .map(|id| image_of(images, id))
        .collect::<Result<Vec<_>, _>>()?;
    let texts: Vec<&str> = captions.iter().map(String::as_str).collect();
    let clip_score = clip_score(clip, &pictures, &texts)?;
    let ref_clip_score = refs
        .map(|refs| ref_clip_score(clip, &pictures, &texts, &refs))
        .transpose()?;
    Ok(FileClipScores {
        image_ids,
        clip_score,
        ref_clip_score,
    })
}
