//! Emoji as image-caption documents: every entity of the npm `emoji-datasource` catalog, in
//! five renditions.
//!
//! The `emoji-datasource-*` packages have `emoji.json` (one entry per emoji: name, short
//! names, category, skin tone variations) and `img/<vendor>/64/<image>` PNGs: Twemoji
//! (`twitter`) and Noto (`google`). Three more renditions come as SVG and are drawn once
//! into PNGs by [`renditions`], mapped onto the same catalog, so every rendition of an
//! entity shares its `unified` id, its caption and its split: OpenMoji, Microsoft's Fluent
//! Emoji Flat, and Noto Emoji's first design (v1). Several renditions of one entity are
//! what lets a retrieval memory know an entity's look that a model never saw in training.

pub mod renditions;
pub mod svg;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::document::{Document, Source};
use crate::error::{Error, Result};
use crate::load::{Loaded, OnBadSample, Progress, load_parallel};
use crate::pixels::decode_rgb;
use crate::split::Split;

/// The version of the `emoji-datasource` packages racm3 reads; fixed so splits and counts
/// never drift.
pub const PACKAGE_VERSION: &str = "16.0.0";

/// An emoji vendor whose images are freely licensed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vendor {
    /// Twemoji, CC-BY 4.0 (PNGs in `emoji-datasource-twitter`).
    Twitter,
    /// Noto Emoji, Apache-2.0 (PNGs in `emoji-datasource-google`).
    Google,
    /// OpenMoji, CC-BY-SA 4.0 (SVGs in `openmoji`, one file per code point sequence).
    OpenMoji,
    /// Fluent Emoji Flat, MIT (SVG bodies in `@iconify-json/fluent-emoji-flat`, found by
    /// code point).
    Fluent,
    /// Noto Emoji's first design (the blob faces), Apache-2.0 (SVG bodies in
    /// `@iconify-json/noto-v1`, found by name: that set has no code point table).
    NotoV1,
}

impl Vendor {
    /// Every rendition.
    pub const ALL: [Vendor; 5] = [
        Vendor::Twitter,
        Vendor::Google,
        Vendor::OpenMoji,
        Vendor::Fluent,
        Vendor::NotoV1,
    ];

    /// The vendor's name in document ids and dataset names (`emoji-<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Twitter => "twitter",
            Vendor::Google => "google",
            Vendor::OpenMoji => "openmoji",
            Vendor::Fluent => "fluent",
            Vendor::NotoV1 => "noto-v1",
        }
    }

    /// The vendor named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|vendor| vendor.name() == name)
    }

    /// The npm package that carries this vendor's images.
    pub fn package(self) -> String {
        match self {
            Vendor::Twitter | Vendor::Google => format!("emoji-datasource-{}", self.name()),
            Vendor::OpenMoji => "openmoji".into(),
            Vendor::Fluent => "@iconify-json/fluent-emoji-flat".into(),
            Vendor::NotoV1 => "@iconify-json/noto-v1".into(),
        }
    }

    /// The package's version racm3 reads, fixed so counts never drift.
    pub fn version(self) -> &'static str {
        match self {
            Vendor::Twitter | Vendor::Google => PACKAGE_VERSION,
            Vendor::OpenMoji => "17.0.0",
            Vendor::Fluent => "1.2.6",
            Vendor::NotoV1 => "1.2.5",
        }
    }

    /// True when the package holds SVGs that [`renditions`] draws into PNGs.
    pub fn is_svg(self) -> bool {
        !matches!(self, Vendor::Twitter | Vendor::Google)
    }

    /// The licence of the vendor's drawings.
    pub fn licence(self) -> &'static str {
        match self {
            Vendor::Twitter => "CC-BY-4.0",
            Vendor::Google | Vendor::NotoV1 => "Apache-2.0",
            Vendor::OpenMoji => "CC-BY-SA-4.0",
            Vendor::Fluent => "MIT",
        }
    }
}

#[derive(Debug, Deserialize)]
struct Entry {
    name: Option<String>,
    unified: String,
    image: String,
    #[serde(default)]
    short_names: Vec<String>,
    #[serde(default)]
    category: String,
    #[serde(default)]
    subcategory: String,
    #[serde(default)]
    has_img_twitter: bool,
    #[serde(default)]
    has_img_google: bool,
    #[serde(default)]
    skin_variations: BTreeMap<String, Variation>,
}

#[derive(Debug, Deserialize)]
struct Variation {
    unified: String,
    image: String,
    #[serde(default)]
    has_img_twitter: bool,
    #[serde(default)]
    has_img_google: bool,
}

/// Whether a vendor has the image of a catalog entry: the catalog says so for the PNG
/// vendors; a drawn rendition has it when its folder holds the file.
fn has_image(
    vendor: Vendor,
    image: &str,
    (twitter, google): (bool, bool),
    drawn: &HashSet<String>,
) -> bool {
    match vendor {
        Vendor::Twitter => twitter,
        Vendor::Google => google,
        _ => drawn.contains(image),
    }
}

/// One image to read: everything but the pixels.
#[derive(Debug)]
struct Sample {
    id: String,
    caption: String,
    path: PathBuf,
    source: Source,
}

/// Where one vendor's documents come from: the catalog of entities and the folder of
/// their 64x64 PNGs, named as the catalog names them.
#[derive(Debug, Clone)]
struct Rendition {
    vendor: Vendor,
    catalog: PathBuf,
    images: PathBuf,
}

/// The emoji of one or more vendors.
#[derive(Debug, Clone)]
pub struct EmojiDataset {
    renditions: Vec<Rendition>,
}

impl EmojiDataset {
    /// The vendors' packages as `racm3 data fetch emoji` lays them out under `emoji_root`:
    /// `<root>/emoji-datasource-twitter-16.0.0/emoji.json` and its PNGs, and for the SVG
    /// vendors the drawn renditions ([`renditions::dir`]) read against the Twemoji
    /// package's catalog. A vendor not fetched (or not yet drawn) is [`Error::NotFetched`].
    pub fn from_fetched(emoji_root: &Path, vendors: &[Vendor]) -> Result<Self> {
        let not_fetched = |looked_in: &Path| Error::NotFetched {
            dataset: "emoji".into(),
            looked_in: looked_in.display().to_string(),
        };
        let mut renditions = Vec::new();
        for &vendor in vendors {
            let rendition = if vendor.is_svg() {
                let images = renditions::dir(emoji_root, vendor);
                if !images.join(renditions::COVERAGE_FILE).is_file() {
                    return Err(not_fetched(&images));
                }
                Rendition {
                    vendor,
                    catalog: catalog_path(emoji_root),
                    images,
                }
            } else {
                let dir = package_dir(emoji_root, vendor);
                Rendition {
                    vendor,
                    catalog: dir.join("emoji.json"),
                    images: dir.join("img").join(vendor.name()).join("64"),
                }
            };
            if !rendition.catalog.is_file() {
                return Err(not_fetched(&rendition.catalog));
            }
            renditions.push(rendition);
        }
        Ok(Self { renditions })
    }

    /// Reads every document, decoding images on all cores.
    pub fn load(&self, policy: OnBadSample, progress: &dyn Progress) -> Result<Loaded> {
        let mut samples = Vec::new();
        for rendition in &self.renditions {
            samples.extend(list_samples(rendition)?);
        }
        load_parallel(
            samples,
            |sample| {
                let bytes = std::fs::read(&sample.path).map_err(Error::io(&sample.path))?;
                let pixels = decode_rgb(&bytes, &sample.path.display().to_string())?;
                Ok(Document::image_caption(
                    sample.id,
                    sample.caption,
                    pixels,
                    sample.source,
                ))
            },
            policy,
            progress,
        )
    }
}

/// What `vendor`'s rendition covers of the catalog: read from the drawn rendition's
/// coverage file, or for a PNG vendor counted from the catalog's `has_img_*` flags.
pub fn coverage(emoji_root: &Path, vendor: Vendor) -> Result<renditions::Coverage> {
    if vendor.is_svg() {
        return renditions::Coverage::read(&renditions::dir(emoji_root, vendor));
    }
    let entries = read_catalog(&package_dir(emoji_root, vendor).join("emoji.json"))?;
    let none = HashSet::new();
    let (mut matched, mut images, mut unmatched) = (0, 0, Vec::new());
    for entry in &entries {
        let flags = (entry.has_img_twitter, entry.has_img_google);
        if has_image(vendor, &entry.image, flags, &none) {
            matched += 1;
            images += 1;
        } else {
            unmatched.push(format!(
                "{} {}",
                entry.unified,
                entry.name.as_deref().unwrap_or_default()
            ));
        }
        images += entry
            .skin_variations
            .values()
            .filter(|v| {
                has_image(
                    vendor,
                    &v.image,
                    (v.has_img_twitter, v.has_img_google),
                    &none,
                )
            })
            .count();
    }
    Ok(renditions::Coverage {
        format: renditions::COVERAGE_FORMAT,
        vendor: vendor.name().to_owned(),
        package: format!("{}@{}", vendor.package(), vendor.version()),
        entities: entries.len(),
        entities_matched: matched,
        images,
        unmatched,
        skipped: Vec::new(),
    })
}

/// Where `racm3 data fetch emoji` puts a vendor's package.
pub fn package_dir(emoji_root: &Path, vendor: Vendor) -> PathBuf {
    let name = vendor.package().trim_start_matches('@').replace('/', "-");
    emoji_root.join(format!("{name}-{}", vendor.version()))
}

/// The catalog every rendition is read against: the Twemoji package's `emoji.json`.
pub fn catalog_path(emoji_root: &Path) -> PathBuf {
    package_dir(emoji_root, Vendor::Twitter).join("emoji.json")
}

/// The catalog's entries.
fn read_catalog(path: &Path) -> Result<Vec<Entry>> {
    let text = std::fs::read(path).map_err(Error::io(path))?;
    serde_json::from_slice(&text).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })
}

/// The names of the files in `dir` (none when it does not exist).
fn file_names(dir: &Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect()
}

fn list_samples(rendition: &Rendition) -> Result<Vec<Sample>> {
    let vendor = rendition.vendor;
    let entries = read_catalog(&rendition.catalog)?;
    let drawn = if vendor.is_svg() {
        file_names(&rendition.images)
    } else {
        HashSet::new()
    };
    let mut samples = Vec::new();
    for entry in entries {
        let Some(name) = entry.name.as_deref().filter(|n| !n.trim().is_empty()) else {
            return Err(Error::Corrupt {
                path: rendition.catalog.clone(),
                problem: format!("entry {} has no name", entry.unified),
            });
        };
        let caption = name.to_lowercase();
        let mut attributes = BTreeMap::from([
            ("vendor".to_owned(), vendor.name().to_owned()),
            ("category".to_owned(), entry.category.clone()),
            ("subcategory".to_owned(), entry.subcategory.clone()),
        ]);
        let source = Source {
            dataset: "emoji".into(),
            entity: entry.unified.clone(),
            split: Split::of_key(&format!("emoji:{}", entry.unified)),
            references: entry
                .short_names
                .iter()
                .map(|short| short.replace(['_', '-'], " "))
                .collect(),
            attributes: attributes.clone(),
        };
        let sample = |image: &str, caption: String, source: Source| Sample {
            id: format!("emoji/{}/{}", vendor.name(), image.trim_end_matches(".png")),
            caption,
            path: rendition.images.join(image),
            source,
        };
        let flags = (entry.has_img_twitter, entry.has_img_google);
        if has_image(vendor, &entry.image, flags, &drawn) {
            samples.push(sample(&entry.image, caption.clone(), source.clone()));
        }
        for (tones, variation) in &entry.skin_variations {
            let flags = (variation.has_img_twitter, variation.has_img_google);
            if !has_image(vendor, &variation.image, flags, &drawn) {
                continue;
            }
            let tone_names = skin_tone_names(tones);
            attributes.insert("skin_tone".into(), tone_names.clone());
            let source = Source {
                attributes: attributes.clone(),
                ..source.clone()
            };
            samples.push(sample(
                &variation.image,
                format!("{caption}: {tone_names}"),
                source,
            ));
        }
    }
    Ok(samples)
}

/// "1F3FB-1F3FD" becomes "light skin tone, medium skin tone", as Unicode's CLDR names them;
/// a tone repeated for both people is named once.
pub(crate) fn skin_tone_names(tones: &str) -> String {
    let mut names: Vec<&str> = tones
        .split('-')
        .map(|code| match code {
            "1F3FB" => "light skin tone",
            "1F3FC" => "medium-light skin tone",
            "1F3FD" => "medium skin tone",
            "1F3FE" => "medium-dark skin tone",
            "1F3FF" => "dark skin tone",
            other => other,
        })
        .collect();
    names.dedup();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Tone codes become CLDR names; the same tone twice is named once.
    #[test]
    fn skin_tones_are_named() {
        assert_eq!(skin_tone_names("1F3FD"), "medium skin tone");
        assert_eq!(
            skin_tone_names("1F3FB-1F3FF"),
            "light skin tone, dark skin tone"
        );
        assert_eq!(skin_tone_names("1F3FE-1F3FE"), "medium-dark skin tone");
    }
}
