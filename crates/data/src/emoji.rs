//! Emoji as image-caption documents, read from the npm `emoji-datasource-*` packages.
//!
//! Each package has `emoji.json` (one entry per emoji: name, short names, category, skin
//! tone variations) and `img/<vendor>/64/<image>` PNGs. Twemoji (`twitter`) and Noto
//! (`google`) draw the same entities differently, which is what lets a retrieval memory
//! know an entity's look that a model never saw in training.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::document::{Document, Source};
use crate::error::{Error, Result};
use crate::load::{Loaded, OnBadSample, Progress, load_parallel};
use crate::pixels::decode_rgb;
use crate::split::Split;

/// The version of the npm packages racm3 reads; fixed so splits and counts never drift.
pub const PACKAGE_VERSION: &str = "16.0.0";

/// An emoji vendor whose images are freely licensed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vendor {
    /// Twemoji, CC-BY 4.0.
    Twitter,
    /// Noto Emoji, Apache-2.0.
    Google,
}

impl Vendor {
    /// Both vendors.
    pub const ALL: [Vendor; 2] = [Vendor::Twitter, Vendor::Google];

    /// The vendor's name as the packages spell it.
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Twitter => "twitter",
            Vendor::Google => "google",
        }
    }

    /// The npm package that carries this vendor's images.
    pub fn package(self) -> String {
        format!("emoji-datasource-{}", self.name())
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
    image: String,
    #[serde(default)]
    has_img_twitter: bool,
    #[serde(default)]
    has_img_google: bool,
}

fn has_image(vendor: Vendor, twitter: bool, google: bool) -> bool {
    match vendor {
        Vendor::Twitter => twitter,
        Vendor::Google => google,
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

/// The emoji of one or more vendors, each read from its unpacked npm package folder (the
/// folder holding `emoji.json`).
#[derive(Debug, Clone)]
pub struct EmojiDataset {
    packages: Vec<(Vendor, PathBuf)>,
}

impl EmojiDataset {
    /// Reads the given vendors' unpacked packages.
    pub fn new(packages: Vec<(Vendor, PathBuf)>) -> Self {
        Self { packages }
    }

    /// The vendors' packages as `racm3 data fetch emoji` lays them out under `emoji_root`
    /// (`<root>/emoji-datasource-twitter-16.0.0/emoji.json`), or [`Error::NotFetched`].
    pub fn from_fetched(emoji_root: &Path, vendors: &[Vendor]) -> Result<Self> {
        let mut packages = Vec::new();
        for &vendor in vendors {
            let dir = package_dir(emoji_root, vendor);
            if !dir.join("emoji.json").is_file() {
                return Err(Error::NotFetched {
                    dataset: "emoji".into(),
                    looked_in: dir.display().to_string(),
                });
            }
            packages.push((vendor, dir));
        }
        Ok(Self::new(packages))
    }

    /// Reads every document, decoding images on all cores.
    pub fn load(&self, policy: OnBadSample, progress: &dyn Progress) -> Result<Loaded> {
        let mut samples = Vec::new();
        for (vendor, dir) in &self.packages {
            samples.extend(list_samples(*vendor, dir)?);
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

/// Where `racm3 data fetch emoji` puts a vendor's package.
pub fn package_dir(emoji_root: &Path, vendor: Vendor) -> PathBuf {
    emoji_root.join(format!("{}-{PACKAGE_VERSION}", vendor.package()))
}

fn list_samples(vendor: Vendor, dir: &Path) -> Result<Vec<Sample>> {
    let json_path = dir.join("emoji.json");
    let text = std::fs::read(&json_path).map_err(Error::io(&json_path))?;
    let entries: Vec<Entry> = serde_json::from_slice(&text).map_err(|source| Error::Json {
        path: json_path.clone(),
        source,
    })?;
    let image_dir = dir.join("img").join(vendor.name()).join("64");
    let mut samples = Vec::new();
    for entry in entries {
        let Some(name) = entry.name.as_deref().filter(|n| !n.trim().is_empty()) else {
            return Err(Error::Corrupt {
                path: json_path,
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
            path: image_dir.join(image),
            source,
        };
        if has_image(vendor, entry.has_img_twitter, entry.has_img_google) {
            samples.push(sample(&entry.image, caption.clone(), source.clone()));
        }
        for (tones, variation) in &entry.skin_variations {
            if !has_image(vendor, variation.has_img_twitter, variation.has_img_google) {
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
fn skin_tone_names(tones: &str) -> String {
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
