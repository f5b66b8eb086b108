//! Datasets by name, as every command and the experiment read them: a built-in dataset is
//! fetched on first use (so one command works on a fresh machine), skipped samples are
//! reported, and the held-out emoji are picked in one place.

use racm3_data::fetch::{self, Fetched};
use racm3_data::{Dataset, Document, Home, Loaded, OnBadSample, Split, emoji};

use crate::Error;
use crate::error::WithContext;
use crate::progress::Observer;

/// What `fetch` names: `emoji` (Twemoji and Noto, from npm), `fashion-mnist` (Debian's
/// package) or `all`.
pub const FETCHABLE: [&str; 3] = ["emoji", "fashion-mnist", "all"];

/// Fetches `dataset` (one of [`FETCHABLE`]) into `$RACM3_HOME`, one stage per package
/// (the SVG emoji packages count their drawings): each package's name and what was done.
/// Present data is kept. With `skip_bad`, a drawing that fails the SVG checks is left out
/// and listed in its rendition's coverage instead of stopping the fetch.
pub fn fetch(
    dataset: &str,
    skip_bad: bool,
    observer: &dyn Observer,
) -> Result<Vec<(String, Fetched)>, Error> {
    if !FETCHABLE.contains(&dataset) {
        return Err(Error::BadInput(format!(
            "cannot fetch '{dataset}': expected one of {}",
            FETCHABLE.join(", ")
        )));
    }
    let home = Home::from_env();
    let mut done = Vec::new();
    if matches!(dataset, "emoji" | "all") {
        let policy = if skip_bad {
            OnBadSample::Skip
        } else {
            OnBadSample::Fail
        };
        for vendor in emoji::Vendor::ALL {
            let label = format!("fetching {}", vendor.package());
            let stage = if vendor.is_svg() {
                observer.stage(&label)
            } else {
                observer.waiting(&label)
            };
            let outcome = fetch::fetch_emoji(&home.emoji_root(), vendor, policy, &*stage);
            drop(stage);
            done.push((vendor.package(), outcome?));
        }
    }
    if matches!(dataset, "fashion-mnist" | "all") {
        let stage = observer.waiting("fetching dataset-fashion-mnist");
        let outcome = fetch::fetch_fashion_mnist(home.path());
        drop(stage);
        done.push(("dataset-fashion-mnist".to_owned(), outcome?));
    }
    Ok(done)
}

/// One line on what fetching `package` did.
pub fn describe_fetch(package: &str, fetched: &Fetched) -> String {
    match fetched {
        Fetched::AlreadyPresent(path) => {
            format!("{package}: already present at {}", path.display())
        }
        Fetched::Downloaded { path, files } => {
            format!(
                "{package}: downloaded, {files} files unpacked to {}",
                path.display()
            )
        }
        Fetched::Drawn { path, coverage } => format!(
            "{package}: downloaded and drawn, {} images of {} of the {} entities in {}",
            coverage.images,
            coverage.entities_matched,
            coverage.entities,
            path.display()
        ),
    }
}

/// Reads the dataset `name` (built-in, a folder of pairs, or .tar shards), fetching a
/// built-in one first if it is missing. With `skip_bad`, unreadable samples are left out
/// and noted; otherwise the first one is the error.
pub fn load(name: &str, skip_bad: bool, observer: &dyn Observer) -> Result<Loaded, Error> {
    let home = Home::from_env();
    let dataset = match Dataset::resolve(name, &home) {
        Err(racm3_data::Error::NotFetched { dataset, .. }) => {
            observer.note(&format!(
                "{dataset} is not in {} yet; fetching it first",
                home.path().display()
            ));
            for (package, fetched) in fetch(&dataset, skip_bad, observer)? {
                observer.note(&describe_fetch(&package, &fetched));
            }
            Dataset::resolve(name, &home)?
        }
        resolved => resolved?,
    };
    let policy = if skip_bad {
        OnBadSample::Skip
    } else {
        OnBadSample::Fail
    };
    let stage = observer.stage("reading");
    let loaded = dataset.load(policy, &*stage);
    drop(stage);
    let loaded = loaded.context(|| format!("reading dataset {name}"))?;
    if !loaded.skipped.is_empty() {
        observer.note(&format!("skipped {} bad samples:", loaded.skipped.len()));
        for error in loaded.skipped.iter().take(10) {
            observer.note(&format!("  {error}"));
        }
        if loaded.skipped.len() > 10 {
            observer.note(&format!("  ... and {} more", loaded.skipped.len() - 10));
        }
    }
    Ok(loaded)
}

/// What each emoji rendition of the dataset `name` covers of the catalog (`emoji`: all
/// five; `emoji-<vendor>`: one); `None` for other datasets.
pub fn emoji_coverage(name: &str) -> Result<Option<Vec<emoji::renditions::Coverage>>, Error> {
    let vendors: Vec<emoji::Vendor> = match name {
        "emoji" => emoji::Vendor::ALL.to_vec(),
        other => match other
            .strip_prefix("emoji-")
            .and_then(emoji::Vendor::from_name)
        {
            Some(vendor) => vec![vendor],
            None => return Ok(None),
        },
    };
    let root = Home::from_env().emoji_root();
    let coverage = vendors
        .into_iter()
        .map(|vendor| emoji::coverage(&root, vendor))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(coverage))
}

/// One Twemoji document per entity of `split` (its base drawing, no skin-tone variants).
pub fn twemoji_entities(split: Split, observer: &dyn Observer) -> Result<Vec<Document>, Error> {
    Ok(load("emoji-twitter", false, observer)?
        .documents
        .into_iter()
        .filter(|d| d.source.split == split && !d.source.attributes.contains_key("skin_tone"))
        .collect())
}

/// The held-out emoji: one Twemoji document per val entity, entities that no model here
/// saw in training.
pub fn held_out_twemoji(observer: &dyn Observer) -> Result<Vec<Document>, Error> {
    twemoji_entities(Split::Val, observer)
}
