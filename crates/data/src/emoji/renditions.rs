//! The SVG renditions, mapped onto the emoji catalog and drawn once into 64x64 PNGs.
//!
//! Every entity of the catalog (`emoji-datasource`'s `emoji.json`), and each of its skin
//! tone variations, is looked up in a vendor's package:
//! - by code point sequence, for OpenMoji (one file per sequence, `1F44B-1F3FB.svg`) and
//!   Fluent (an Iconify set whose `chars.json` maps sequences to icon names). Sequences
//!   are compared without the variation selectors U+FE0F and U+FE0E, which packages write
//!   or leave out inconsistently (`2764-FE0F` against `2764`, the keycap `0023-FE0F-20E3`
//!   against `0023-20E3`); zero-width joiners, skin tone modifiers and the regional
//!   indicator pairs of flags are kept, so each of them must match exactly.
//! - by name, for Noto v1, an Iconify set with no code point table: the catalog's name,
//!   one of its short names, or the CLDR name Fluent's code point table gives the sequence,
//!   in the set's kebab case (`grinning-face`), with the tone's CLDR name after it for a
//!   variation (`waving-hand-light-skin-tone`). The catalog's names are Unicode's
//!   ("NEGATIVE SQUARED LATIN CAPITAL LETTER A") where Iconify sets use CLDR's
//!   (`a-button-blood-type`), so Fluent's table finds a quarter more.
//!
//! The drawings go to `<emoji root>/renditions/<vendor>-64/`, named as the catalog names
//! the Twemoji PNGs (`1f44b-1f3fb.png`), with `coverage.json`: what matched and what did
//! not. The folder is built beside its place and renamed into it, so it is whole or absent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::RgbImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::svg::rasterize;
use super::{Entry, Vendor, catalog_path, package_dir, read_catalog, skin_tone_names};
use crate::error::{Error, Result};
use crate::load::{OnBadSample, Progress};

/// The side of the drawn images, as the PNG vendors' images are.
pub const SIZE: u32 = 64;
/// The file in a rendition folder that records what matched.
pub const COVERAGE_FILE: &str = "coverage.json";
/// The coverage file's format.
pub(crate) const COVERAGE_FORMAT: u32 = 1;

/// Where a vendor's drawings go under the emoji root.
pub fn dir(emoji_root: &Path, vendor: Vendor) -> PathBuf {
    emoji_root
        .join("renditions")
        .join(format!("{}-{}-{SIZE}", vendor.name(), vendor.version()))
}

/// What a rendition covers of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// The coverage file's format.
    pub format: u32,
    /// The vendor's name.
    pub vendor: String,
    /// The package and version drawn from.
    pub package: String,
    /// Entities in the catalog.
    pub entities: usize,
    /// Entities whose base drawing was found.
    pub entities_matched: usize,
    /// Images drawn: base drawings and skin tone variations.
    pub images: usize,
    /// The entities not found, as `UNIFIED name`.
    pub unmatched: Vec<String>,
    /// Drawings found but refused (`--skip-bad`), as `file: problem`.
    pub skipped: Vec<String>,
}

impl Coverage {
    /// The coverage recorded in a rendition folder.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(COVERAGE_FILE);
        let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
        let coverage: Self = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        if coverage.format != COVERAGE_FORMAT {
            return Err(Error::Corrupt {
                path,
                problem: format!(
                    "coverage format {}, this racm3 reads {COVERAGE_FORMAT}; fetch again",
                    coverage.format
                ),
            });
        }
        Ok(coverage)
    }
}

/// A code point sequence as packages are compared: upper case, without U+FE0F and U+FE0E.
pub fn sequence_key(sequence: &str) -> String {
    sequence
        .split(['-', '_', ' '])
        .map(str::to_ascii_uppercase)
        .filter(|part| !part.is_empty() && part != "FE0F" && part != "FE0E")
        .collect::<Vec<_>>()
        .join("-")
}

/// A name in an Iconify set's kebab case: "WAVING HAND SIGN" is `waving-hand-sign`.
pub fn kebab(name: &str) -> String {
    name.to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// An Iconify icon set (`icons.json`, `chars.json`): SVG bodies by name, aliases that flip
/// or turn another icon, and for some sets a code point table.
#[derive(Debug, Default, Deserialize)]
pub struct IconSet {
    icons: HashMap<String, Icon>,
    #[serde(default)]
    aliases: HashMap<String, Alias>,
    #[serde(default = "default_side")]
    width: f64,
    #[serde(default = "default_side")]
    height: f64,
    #[serde(skip)]
    by_sequence: HashMap<String, String>,
}

fn default_side() -> f64 {
    16.0
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Icon {
    body: Option<String>,
    width: Option<f64>,
    height: Option<f64>,
    #[serde(default)]
    left: f64,
    #[serde(default)]
    top: f64,
    #[serde(default)]
    h_flip: bool,
    #[serde(default)]
    v_flip: bool,
    #[serde(default)]
    rotate: u8,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alias {
    parent: String,
    #[serde(default)]
    h_flip: bool,
    #[serde(default)]
    v_flip: bool,
    #[serde(default)]
    rotate: u8,
}

impl IconSet {
    /// Reads an Iconify package folder: `icons.json`, and `chars.json` when present.
    pub fn open(package: &Path) -> Result<Self> {
        let read = |name: &str| -> Result<Option<Vec<u8>>> {
            let path = package.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(err) => Err(Error::io(&path)(err)),
            }
        };
        let json_error = |name: &str| {
            let path = package.join(name);
            move |source| Error::Json { path, source }
        };
        let icons = read("icons.json")?.ok_or_else(|| Error::NotFetched {
            dataset: "emoji".into(),
            looked_in: package.join("icons.json").display().to_string(),
        })?;
        let mut set: IconSet = serde_json::from_slice(&icons).map_err(json_error("icons.json"))?;
        if let Some(chars) = read("chars.json")? {
            let table: HashMap<String, String> =
                serde_json::from_slice(&chars).map_err(json_error("chars.json"))?;
            set.by_sequence = table
                .into_iter()
                .map(|(sequence, name)| (sequence_key(&sequence), name))
                .collect();
        }
        Ok(set)
    }

    /// The icon's name for a code point sequence, from `chars.json`.
    pub fn name_of(&self, sequence: &str) -> Option<&str> {
        self.by_sequence
            .get(&sequence_key(sequence))
            .map(String::as_str)
    }

    /// True when the set has an icon or alias `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.icons.contains_key(name) || self.aliases.contains_key(name)
    }

    /// The icon `name` as a standalone SVG document, aliases resolved (flips and quarter
    /// turns compose along the chain). `None` when the set has no such icon, or an alias
    /// chain does not end at a drawing within a few links.
    pub fn svg(&self, name: &str) -> Option<String> {
        let (mut h_flip, mut v_flip, mut rotate) = (false, false, 0u8);
        let mut current = name;
        for _ in 0..8 {
            if let Some(alias) = self.aliases.get(current) {
                h_flip ^= alias.h_flip;
                v_flip ^= alias.v_flip;
                rotate = (rotate + alias.rotate) % 4;
                current = &alias.parent;
                continue;
            }
            let icon = self.icons.get(current)?;
            h_flip ^= icon.h_flip;
            v_flip ^= icon.v_flip;
            rotate = (rotate + icon.rotate) % 4;
            let (width, height) = (
                icon.width.unwrap_or(self.width),
                icon.height.unwrap_or(self.height),
            );
            let (cx, cy) = (icon.left + width / 2.0, icon.top + height / 2.0);
            let mut transforms = Vec::new();
            if rotate > 0 {
                transforms.push(format!("rotate({} {cx} {cy})", 90 * u32::from(rotate)));
            }
            if h_flip || v_flip {
                let (sx, sy) = (if h_flip { -1 } else { 1 }, if v_flip { -1 } else { 1 });
                // Mirror about the centre: translate by the centre, scale, translate back.
                transforms.push(format!(
                    "translate({cx} {cy}) scale({sx} {sy}) translate({} {})",
                    -cx, -cy
                ));
            }
            let body = icon.body.as_deref()?;
            return Some(format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" viewBox=\"{} {} {width} {height}\"><g transform=\"{}\">{body}</g></svg>",
                icon.left,
                icon.top,
                transforms.join(" ")
            ));
        }
        None
    }
}

/// Where a vendor's drawing of one catalog image is.
enum Found {
    File(PathBuf),
    Icon(String),
}

/// A vendor's package, opened for lookups.
enum Package {
    /// OpenMoji's `color/svg/<SEQUENCE>.svg` files, by sequence key.
    Files(HashMap<String, PathBuf>),
    /// An Iconify set, looked up by sequence or by name.
    Icons { set: IconSet, by_name: bool },
}

impl Package {
    fn open(emoji_root: &Path, vendor: Vendor) -> Result<Self> {
        let dir = package_dir(emoji_root, vendor);
        match vendor {
            Vendor::OpenMoji => {
                let svgs = dir.join("color").join("svg");
                let files = std::fs::read_dir(&svgs)
                    .map_err(Error::io(&svgs))?
                    .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                    .filter(|path| path.extension().is_some_and(|ext| ext == "svg"))
                    .filter_map(|path| {
                        let stem = path.file_stem()?.to_str()?.to_owned();
                        Some((sequence_key(&stem), path))
                    })
                    .collect();
                Ok(Package::Files(files))
            }
            Vendor::Fluent | Vendor::NotoV1 => Ok(Package::Icons {
                set: IconSet::open(&dir)?,
                by_name: vendor == Vendor::NotoV1,
            }),
            Vendor::Twitter | Vendor::Google => Err(Error::Corrupt {
                path: dir,
                problem: format!("{} has PNGs, not SVGs", vendor.name()),
            }),
        }
    }

    /// The drawing of `sequence`, whose names (kebab case) are `names`.
    fn find(&self, sequence: &str, names: &[String]) -> Option<Found> {
        match self {
            Package::Files(files) => files.get(&sequence_key(sequence)).cloned().map(Found::File),
            Package::Icons {
                set,
                by_name: false,
            } => set
                .name_of(sequence)
                .map(|name| Found::Icon(name.to_owned())),
            Package::Icons { set, by_name: true } => names
                .iter()
                .find(|name| set.contains(name))
                .map(|name| Found::Icon(name.clone())),
        }
    }

    /// The SVG text of a drawing; `what` names it in errors.
    fn svg(&self, found: &Found, what: &str) -> Result<Vec<u8>> {
        match (self, found) {
            (_, Found::File(path)) => std::fs::read(path).map_err(Error::io(path)),
            (Package::Icons { set, .. }, Found::Icon(name)) => set
                .svg(name)
                .map(String::into_bytes)
                .ok_or_else(|| Error::Svg {
                    what: what.to_owned(),
                    problem: "an icon with no body, or an alias that leads to none".into(),
                }),
            (Package::Files(_), Found::Icon(name)) => Err(Error::Svg {
                what: what.to_owned(),
                problem: format!("an icon name ({name}) for a package of files"),
            }),
        }
    }
}

/// One image to draw: the catalog's file name for it, and where the vendor has it.
struct Wanted {
    image: String,
    found: Found,
    what: String,
}

/// The candidate names of an entry in kebab case, each followed by `suffix`: its own,
/// then the one `cldr`'s code point table gives its sequence.
fn names_of(entry: &Entry, cldr: Option<&IconSet>, suffix: &str) -> Vec<String> {
    let table_name = cldr.and_then(|set| set.name_of(&entry.unified));
    entry
        .name
        .iter()
        .chain(&entry.short_names)
        .map(|name| kebab(name))
        .chain(table_name.map(str::to_owned))
        .map(|name| format!("{name}{suffix}"))
        .collect()
}

/// Draws `vendor`'s renditions of the whole catalog into [`dir`] from its fetched package,
/// counting images on `progress`. A drawing refused by the SVG checks stops the build with
/// the file and icon named, or is left out and listed under [`OnBadSample::Skip`].
pub fn build(
    emoji_root: &Path,
    vendor: Vendor,
    policy: OnBadSample,
    progress: &dyn Progress,
) -> Result<Coverage> {
    let package = Package::open(emoji_root, vendor)?;
    let cldr = match vendor {
        Vendor::NotoV1 => Some(IconSet::open(&package_dir(emoji_root, Vendor::Fluent))?),
        _ => None,
    };
    let entries = read_catalog(&catalog_path(emoji_root))?;
    let label = format!("{}@{}", vendor.package(), vendor.version());
    let mut wanted = Vec::new();
    let mut unmatched = Vec::new();
    let mut matched = 0;
    for entry in &entries {
        let name = entry.name.clone().unwrap_or_default();
        match package.find(&entry.unified, &names_of(entry, cldr.as_ref(), "")) {
            Some(found) => {
                matched += 1;
                let what = format!("{label} {} ({})", entry.unified, kebab(&name));
                wanted.push(Wanted {
                    image: entry.image.clone(),
                    found,
                    what,
                });
            }
            None => unmatched.push(format!("{} {name}", entry.unified)),
        }
        for (tones, variation) in &entry.skin_variations {
            let suffix = format!("-{}", kebab(&skin_tone_names(tones)));
            let names = names_of(entry, cldr.as_ref(), &suffix);
            if let Some(found) = package.find(&variation.unified, &names) {
                let what = format!("{label} {}", variation.unified);
                wanted.push(Wanted {
                    image: variation.image.clone(),
                    found,
                    what,
                });
            }
        }
    }
    progress.set_total(wanted.len() as u64);
    let drawn: Vec<(String, Result<RgbImage>)> = wanted
        .par_iter()
        .map(|wanted| {
            let image = package
                .svg(&wanted.found, &wanted.what)
                .and_then(|svg| rasterize(&svg, &wanted.what, SIZE));
            progress.advance(1);
            (wanted.image.clone(), image)
        })
        .collect();
    let dest = dir(emoji_root, vendor);
    let parent = dest.parent().unwrap_or(emoji_root);
    std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
    let work = tempfile::Builder::new()
        .prefix(".draw-")
        .tempdir_in(parent)
        .map_err(Error::io(parent))?;
    let mut skipped = Vec::new();
    let mut images = 0;
    for (image, outcome) in drawn {
        match (outcome, policy) {
            (Ok(pixels), _) => {
                let path = work.path().join(&image);
                let png = crate::encode_png(&pixels, &path.display().to_string())?;
                std::fs::write(&path, png).map_err(Error::io(&path))?;
                images += 1;
            }
            (Err(error), OnBadSample::Skip) => skipped.push(error.to_string()),
            (Err(error), OnBadSample::Fail) => return Err(error),
        }
    }
    let coverage = Coverage {
        format: COVERAGE_FORMAT,
        vendor: vendor.name().to_owned(),
        package: label,
        entities: entries.len(),
        entities_matched: matched,
        images,
        unmatched,
        skipped,
    };
    let json = serde_json::to_vec_pretty(&coverage).map_err(|source| Error::Json {
        path: dest.join(COVERAGE_FILE),
        source,
    })?;
    let coverage_path = work.path().join(COVERAGE_FILE);
    std::fs::write(&coverage_path, json).map_err(Error::io(&coverage_path))?;
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(Error::io(&dest))?;
    }
    let finished = work.keep();
    std::fs::rename(&finished, &dest).map_err(Error::io(&dest))?;
    Ok(coverage)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Variation selectors never decide a match; joiners, tones and flag pairs always do.
    #[test]
    fn sequences_compare_without_variation_selectors() {
        assert_eq!(sequence_key("2764-FE0F"), sequence_key("2764"));
        assert_eq!(sequence_key("0023-FE0F-20E3"), "0023-20E3");
        assert_eq!(sequence_key("1f44b-1f3fb"), "1F44B-1F3FB");
        assert_ne!(sequence_key("1F44B-1F3FB"), sequence_key("1F44B"));
        assert_eq!(
            sequence_key("1F468-200D-1F4BB"),
            sequence_key("1f468-200d-1f4bb")
        );
        assert_ne!(
            sequence_key("1F468-200D-1F4BB"),
            sequence_key("1F468-1F4BB")
        );
        assert_eq!(sequence_key("1F1FA-1F1F8"), "1F1FA-1F1F8");
        assert_ne!(sequence_key("1F1FA-1F1F8"), sequence_key("1F1F8-1F1FA"));
        assert_eq!(kebab("WAVING HAND SIGN"), "waving-hand-sign");
        assert_eq!(kebab("medium-light skin tone"), "medium-light-skin-tone");
    }

    // An alias is its parent drawn with the alias's flip; a chain that loops is no icon.
    #[test]
    fn aliases_resolve_with_their_flips() {
        let set: IconSet = serde_json::from_str(
            r#"{"width": 32, "height": 32,
                "icons": {"hand": {"body": "<path d='M0 0h8v8z'/>"}},
                "aliases": {"hand-right": {"parent": "hand", "hFlip": true},
                            "a": {"parent": "b"}, "b": {"parent": "a"}}}"#,
        )
        .unwrap();
        let plain = set.svg("hand").unwrap();
        assert!(plain.contains("viewBox=\"0 0 32 32\"") && !plain.contains("scale"));
        let flipped = set.svg("hand-right").unwrap();
        assert!(flipped.contains("scale(-1 1)"), "{flipped}");
        assert!(set.svg("a").is_none() && set.svg("missing").is_none());
    }
}
