//! A user's own image-caption pairs: a folder in img2dataset's layout (`00001.jpg` beside
//! `00001.txt`, in shard subfolders or not) or WebDataset `.tar` shards of the same pairs.
//!
//! Files are grouped by key: the path without its extension (for tar members, WebDataset's
//! rule: everything before the first dot of the file name). A key needs one image and one
//! `.txt` caption; a `.json` beside them is allowed and ignored. Anything else is a bad
//! sample, reported with the file or member it concerns.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::document::{Document, Source};
use crate::error::{Error, Result};
use crate::load::{Loaded, OnBadSample, Progress, load_parallel};
use crate::pixels::decode_rgb;
use crate::split::Split;

const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];
/// Files img2dataset writes beside the pairs, which carry no sample.
const IGNORED_EXTENSIONS: [&str; 2] = ["json", "parquet"];

/// Where a member's bytes are: a file to read later, or bytes already read from a tar.
#[derive(Debug)]
enum Content {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl Content {
    fn read(&self) -> Result<Vec<u8>> {
        match self {
            Content::File(path) => std::fs::read(path).map_err(Error::io(path)),
            Content::Bytes(bytes) => Ok(bytes.clone()),
        }
    }
}

/// One member of a pair: its display name (a path, or `archive.tar:member`) and content.
#[derive(Debug)]
struct Member {
    name: String,
    content: Content,
}

#[derive(Debug, Default)]
struct Pair {
    image: Option<Member>,
    caption: Option<Member>,
}

/// A complete pair: its key, image and caption.
struct CompletePair {
    key: String,
    image: Member,
    caption: Member,
}

/// A sample to decode: a complete pair, or the reason it is not one.
type PairOrProblem = std::result::Result<CompletePair, Error>;

/// Groups members by key, in key order. Returns the pairs and the bad members.
struct Grouper {
    pairs: BTreeMap<String, Pair>,
    problems: Vec<Error>,
}

impl Grouper {
    fn new() -> Self {
        Self {
            pairs: BTreeMap::new(),
            problems: Vec::new(),
        }
    }

    /// Files a member under `key` by its extension; `stray` builds the error for a member
    /// that belongs to no pair.
    fn add(&mut self, key: String, extension: &str, member: Member, stray: impl Fn(&str) -> Error) {
        let extension = extension.to_ascii_lowercase();
        if IGNORED_EXTENSIONS.contains(&extension.as_str()) {
            return;
        }
        let pair = self.pairs.entry(key).or_default();
        let slot = if IMAGE_EXTENSIONS.contains(&extension.as_str()) {
            &mut pair.image
        } else if extension == "txt" {
            &mut pair.caption
        } else {
            self.problems.push(stray(&format!(
                "unexpected file type '.{extension}' (expected an image, .txt or .json)"
            )));
            return;
        };
        if let Some(first) = slot {
            let problem = format!(
                "a second {} for the same key, beside {}",
                extension, first.name
            );
            self.problems.push(stray(&problem));
            return;
        }
        *slot = Some(member);
    }

    fn finish(self) -> Vec<PairOrProblem> {
        let mut samples: Vec<PairOrProblem> = self.problems.into_iter().map(Err).collect();
        for (key, pair) in self.pairs {
            samples.push(match (pair.image, pair.caption) {
                (Some(image), Some(caption)) => Ok(CompletePair {
                    key,
                    image,
                    caption,
                }),
                (Some(image), None) => Err(Error::MissingCaption {
                    expected: caption_name(&image.name),
                    image: image.name,
                }),
                (None, Some(caption)) => Err(Error::Corrupt {
                    path: PathBuf::from(caption.name),
                    problem: "caption with no image beside it".into(),
                }),
                (None, None) => continue,
            });
        }
        samples
    }
}

/// The caption file that would pair with an image: its name with `.txt` for the extension.
fn caption_name(image_name: &str) -> String {
    let stem = image_name
        .rsplit_once('.')
        .map_or(image_name, |(stem, _)| stem);
    let file_stem = stem.rsplit(['/', ':']).next().unwrap_or(stem);
    format!("{file_stem}.txt")
}

/// Decodes one pair into a document with id `<dataset>/<key>`.
fn read_pair(dataset: &str, pair: CompletePair) -> Result<Document> {
    let CompletePair {
        key,
        image,
        caption,
    } = pair;
    let caption_bytes = caption.content.read()?;
    let caption_text = String::from_utf8(caption_bytes).map_err(|err| Error::CaptionNotUtf8 {
        path: caption.name.clone(),
        valid_up_to: err.utf8_error().valid_up_to(),
    })?;
    let pixels = decode_rgb(&image.content.read()?, &image.name)?;
    let id = format!("{dataset}/{key}");
    let source = Source {
        dataset: dataset.to_owned(),
        entity: id.clone(),
        split: Split::of_key(&id),
        references: vec![],
        attributes: BTreeMap::new(),
    };
    Ok(Document::image_caption(
        id,
        caption_text.trim(),
        pixels,
        source,
    ))
}

fn decode_all(
    dataset: &str,
    samples: Vec<PairOrProblem>,
    origin: &Path,
    policy: OnBadSample,
    progress: &dyn Progress,
) -> Result<Loaded> {
    if samples.is_empty() {
        return Err(Error::Empty {
            path: origin.to_owned(),
        });
    }
    let mut loaded = load_parallel(
        samples,
        |sample| read_pair(dataset, sample?),
        policy,
        progress,
    )?;
    // Skipping every sample would make an empty dataset that looks like a success.
    if loaded.documents.is_empty() && !loaded.skipped.is_empty() {
        return Err(loaded.skipped.swap_remove(0));
    }
    Ok(loaded)
}

/// A folder of image-caption pairs in img2dataset's layout.
#[derive(Debug, Clone)]
pub struct PairFolder {
    dir: PathBuf,
}

impl PairFolder {
    /// Reads the pairs below `dir`, in subfolders too.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Reads every pair, decoding images on all cores.
    pub fn load(&self, policy: OnBadSample, progress: &dyn Progress) -> Result<Loaded> {
        let dataset = dataset_name(&self.dir);
        let mut grouper = Grouper::new();
        for entry in walkdir::WalkDir::new(&self.dir).sort_by_file_name() {
            let entry = entry.map_err(|err| {
                let path = err.path().unwrap_or(&self.dir).to_owned();
                Error::Io {
                    path,
                    source: err.into(),
                }
            })?;
            if !entry.file_type().is_file() {
                continue;
            }
            let path = entry.path();
            let Some(extension) = path.extension().and_then(|ext| ext.to_str()) else {
                continue;
            };
            let relative = path.strip_prefix(&self.dir).unwrap_or(path);
            let key = relative
                .with_extension("")
                .components()
                .map(|part| part.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let is_sample_file = IMAGE_EXTENSIONS
                .iter()
                .chain(&["txt"])
                .chain(&IGNORED_EXTENSIONS)
                .any(|known| extension.eq_ignore_ascii_case(known));
            // A folder may hold anything beside the pairs (a README, img2dataset's parquet);
            // only tar shards are strict, since every member there is meant as a sample.
            if !is_sample_file {
                continue;
            }
            let member = Member {
                name: path.display().to_string(),
                content: Content::File(path.to_owned()),
            };
            grouper.add(key, extension, member, |problem| Error::Corrupt {
                path: path.to_owned(),
                problem: problem.to_owned(),
            });
        }
        decode_all(&dataset, grouper.finish(), &self.dir, policy, progress)
    }
}

/// WebDataset `.tar` shards of image-caption pairs.
#[derive(Debug, Clone)]
pub struct WebDataset {
    name: String,
    shards: Vec<PathBuf>,
}

impl WebDataset {
    /// One shard, or every `.tar` in a folder (in name order).
    pub fn open(path: &Path) -> Result<Self> {
        let shards = if path.is_dir() {
            let mut shards: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(Error::io(path))?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|p| p.extension().is_some_and(|ext| ext == "tar"))
                .collect();
            shards.sort();
            shards
        } else {
            vec![path.to_owned()]
        };
        if shards.is_empty() {
            return Err(Error::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Self {
            name: dataset_name(path),
            shards,
        })
    }

    /// Reads every shard; members are read in order, images decoded on all cores. A shard
    /// that cannot be read to its end (truncated, not a tar) is one bad sample: its members
    /// before the damage are kept when bad samples are skipped.
    pub fn load(&self, policy: OnBadSample, progress: &dyn Progress) -> Result<Loaded> {
        let mut grouper = Grouper::new();
        for shard in &self.shards {
            if let Err(problem) = read_shard(shard, &mut grouper) {
                grouper.problems.push(problem);
            }
        }
        let origin = self.shards.first().map_or(Path::new(""), |p| p.as_path());
        decode_all(&self.name, grouper.finish(), origin, policy, progress)
    }
}

/// Files the members of one tar shard with `grouper`, in order, up to the first damage.
fn read_shard(shard: &Path, grouper: &mut Grouper) -> Result<()> {
    let shard_name = dataset_name(shard);
    let file = std::fs::File::open(shard).map_err(Error::io(shard))?;
    let mut archive = tar::Archive::new(file);
    let mut last_member = None;
    // tar's messages can quote the raw header bytes they could not parse.
    let bad_tar = |err: std::io::Error, after: &Option<String>| Error::Corrupt {
        path: shard.to_owned(),
        problem: match after {
            Some(member) => format!(
                "unreadable after member '{member}': {}",
                crate::printable(&err.to_string())
            ),
            None => format!(
                "not a readable tar archive: {}",
                crate::printable(&err.to_string())
            ),
        },
    };
    let entries = archive
        .entries()
        .map_err(|err| bad_tar(err, &last_member))?;
    for entry in entries {
        let mut entry = entry.map_err(|err| bad_tar(err, &last_member))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let member_name = crate::printable(
            &entry
                .path()
                .map_err(|err| bad_tar(err, &last_member))?
                .to_string_lossy(),
        );
        let stray = |problem: &str| Error::TarMember {
            archive: shard.to_owned(),
            member: member_name.clone(),
            problem: problem.to_owned(),
        };
        let (directory, file_name) = match member_name.rsplit_once('/') {
            Some((dir, name)) => (format!("{dir}/"), name),
            None => (String::new(), member_name.as_str()),
        };
        let Some((stem, extension)) = file_name.split_once('.') else {
            grouper
                .problems
                .push(stray("no extension, so no place in a pair"));
            continue;
        };
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|err| bad_tar(err, &last_member))?;
        // tar hands back a short member at the end of a cut file without an error.
        if bytes.len() as u64 != entry.size() {
            let cut = std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "member '{member_name}' holds {} of its {} bytes; the file is cut short",
                    bytes.len(),
                    entry.size()
                ),
            );
            return Err(bad_tar(cut, &last_member));
        }
        let member = Member {
            name: format!("{}:{member_name}", shard.display()),
            content: Content::Bytes(bytes),
        };
        let key = format!("{shard_name}/{directory}{stem}");
        grouper.add(key, extension, member, stray);
        last_member = Some(member_name);
    }
    Ok(())
}

/// A dataset's name from its path: the folder's or file's name without extension.
fn dataset_name(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pairs".into())
}

/// Groups bare member names as a tar's members would be.
#[cfg(test)]
fn group_one(names: &[&str]) -> Vec<PairOrProblem> {
    let mut grouper = Grouper::new();
    for name in names {
        let (stem, extension) = name.split_once('.').unwrap();
        let member = Member {
            name: (*name).to_owned(),
            content: Content::Bytes(vec![]),
        };
        grouper.add(stem.to_owned(), extension, member, |problem| {
            Error::TarMember {
                archive: PathBuf::from("t.tar"),
                member: (*name).to_owned(),
                problem: problem.to_owned(),
            }
        });
    }
    grouper.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Complete pairs group by key; orphans and strays each become one named problem.
    #[test]
    fn grouping_reports_orphans_and_strays() {
        let samples = group_one(&["a.jpg", "a.txt", "a.json", "b.png", "c.txt", "d.exe"]);
        let ok: Vec<_> = samples.iter().filter_map(|s| s.as_ref().ok()).collect();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].key, "a");
        let problems: Vec<String> = samples
            .iter()
            .filter_map(|s| s.as_ref().err().map(|e| e.to_string()))
            .collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("'d.exe'") && p.contains(".exe"))
        );
        assert!(problems.iter().any(|p| p.starts_with("b.png: no caption")));
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("c.txt: caption with no image"))
        );
    }

    // Two images for one key are not silently merged.
    #[test]
    fn duplicate_member_is_a_problem() {
        let samples = group_one(&["a.jpg", "a.png", "a.txt"]);
        assert!(samples.iter().any(|s| s.is_err()));
        assert!(samples.iter().any(|s| s.is_ok()));
    }
}
