//! Fetching the built-in datasets into racm3's cache folder with the ordinary package
//! clients: `npm pack` for the emoji packages, `apt-get download` for Fashion-MNIST. The
//! SVG emoji packages are drawn into PNGs once, right after their download.
//!
//! Every fetch unpacks into a temporary folder beside its destination and renames it into
//! place last, so an interrupted fetch leaves nothing half-written, and a second fetch
//! finds the finished folder and does nothing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::read::GzDecoder;

use crate::emoji::{Vendor, package_dir, renditions};
use crate::error::{Error, Result};
use crate::fashion_mnist::DEBIAN_DIR;
use crate::load::{OnBadSample, Progress};

/// What a fetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The files were already there; nothing was downloaded.
    AlreadyPresent(PathBuf),
    /// The files were downloaded and unpacked here.
    Downloaded {
        /// Where they are.
        path: PathBuf,
        /// How many files were unpacked.
        files: usize,
    },
    /// An SVG package was downloaded and its drawings of the catalog made here.
    Drawn {
        /// The rendition's folder.
        path: PathBuf,
        /// What it covers.
        coverage: Box<renditions::Coverage>,
    },
}

/// Fetches a vendor's emoji package into `emoji_root` (see [`package_dir`]), keeping only
/// what is read: `emoji.json` and the 64x64 PNGs of the `emoji-datasource` packages,
/// OpenMoji's colour SVGs, an Iconify set's JSON. An SVG vendor is then drawn into PNGs
/// ([`renditions::build`], counted on `progress`), which needs the Twemoji catalog: it is
/// fetched first if missing. Present data is kept.
pub fn fetch_emoji(
    emoji_root: &Path,
    vendor: Vendor,
    policy: OnBadSample,
    progress: &dyn Progress,
) -> Result<Fetched> {
    if !vendor.is_svg() {
        return fetch_package(emoji_root, vendor);
    }
    let drawn = renditions::dir(emoji_root, vendor);
    if drawn.join(renditions::COVERAGE_FILE).is_file() {
        return Ok(Fetched::AlreadyPresent(drawn));
    }
    fetch_package(emoji_root, Vendor::Twitter)?;
    if vendor == Vendor::NotoV1 {
        // Its names are matched with the help of Fluent's code point table.
        fetch_package(emoji_root, Vendor::Fluent)?;
    }
    fetch_package(emoji_root, vendor)?;
    let coverage = renditions::build(emoji_root, vendor, policy, progress)?;
    Ok(Fetched::Drawn {
        path: drawn,
        coverage: Box::new(coverage),
    })
}

/// The package's members that racm3 reads, by their path in the tarball.
fn wanted_member(vendor: Vendor, name: &str) -> bool {
    match vendor {
        Vendor::Twitter | Vendor::Google => {
            name == "package/emoji.json"
                || name.starts_with(&format!("package/img/{}/64/", vendor.name()))
        }
        Vendor::OpenMoji => {
            name == "package/LICENSE.txt"
                || (name.starts_with("package/color/svg/") && name.ends_with(".svg"))
        }
        Vendor::Fluent | Vendor::NotoV1 => matches!(
            name,
            "package/icons.json" | "package/chars.json" | "package/info.json"
        ),
    }
}

/// The file that shows a vendor's package is unpacked.
fn landmark(vendor: Vendor) -> &'static str {
    match vendor {
        Vendor::Twitter | Vendor::Google => "emoji.json",
        Vendor::OpenMoji => "color/svg",
        Vendor::Fluent | Vendor::NotoV1 => "icons.json",
    }
}

/// Downloads and unpacks a vendor's npm package, unless it is there.
fn fetch_package(emoji_root: &Path, vendor: Vendor) -> Result<Fetched> {
    let dest = package_dir(emoji_root, vendor);
    if dest.join(landmark(vendor)).exists() {
        return Ok(Fetched::AlreadyPresent(dest));
    }
    let failed = |problem: String| Error::Fetch {
        dataset: "emoji".into(),
        problem,
    };
    std::fs::create_dir_all(emoji_root).map_err(Error::io(emoji_root))?;
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(emoji_root)
        .map_err(Error::io(emoji_root))?;
    let spec = format!("{}@{}", vendor.package(), vendor.version());
    let output = Command::new("npm")
        .args(["pack", "--silent", "--pack-destination"])
        .arg(work.path())
        .arg(&spec)
        .current_dir(work.path())
        .output()
        .map_err(|err| {
            failed(format!(
                "could not run npm ({err}); install Node.js and npm"
            ))
        })?;
    if !output.status.success() {
        return Err(failed(format!(
            "npm pack {spec} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    // npm names the tarball after the package, scope folded in (@a/b 1.0 is a-b-1.0.tgz).
    let tarball = std::fs::read_dir(work.path())
        .map_err(Error::io(work.path()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| path.extension().is_some_and(|ext| ext == "tgz"))
        .ok_or_else(|| failed(format!("npm pack {spec} left no .tgz")))?;
    let unpacked = work.path().join("package");
    let files = unpack_selected(&tarball, &unpacked, |name| wanted_member(vendor, name))?;
    if !unpacked.join(landmark(vendor)).exists() {
        return Err(failed(format!(
            "{} has no package/{}",
            tarball.display(),
            landmark(vendor)
        )));
    }
    publish(&unpacked, &dest)?;
    Ok(Fetched::Downloaded { path: dest, files })
}

/// Makes Fashion-MNIST available: the Debian package's folder if installed, else the
/// package downloaded with `apt-get download` and unpacked under `root` without root
/// rights. Returns the folder holding the IDX files.
pub fn fetch_fashion_mnist(root: &Path) -> Result<Fetched> {
    let system = PathBuf::from(DEBIAN_DIR);
    if system.join("train-images-idx3-ubyte.gz").is_file() {
        return Ok(Fetched::AlreadyPresent(system));
    }
    let dest = fashion_mnist_dir(root);
    if dest.join("train-images-idx3-ubyte.gz").is_file() {
        return Ok(Fetched::AlreadyPresent(dest));
    }
    let failed = |problem: String| Error::Fetch {
        dataset: "fashion-mnist".into(),
        problem,
    };
    std::fs::create_dir_all(root).map_err(Error::io(root))?;
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(root)
        .map_err(Error::io(root))?;
    run(
        Command::new("apt-get")
            .args(["download", "dataset-fashion-mnist"])
            .current_dir(work.path()),
    )
    .map_err(|err| {
        failed(format!(
            "{err}; run `apt-get update` first, or install it with `apt-get install dataset-fashion-mnist`"
        ))
    })?;
    let deb = std::fs::read_dir(work.path())
        .map_err(Error::io(work.path()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .ok_or_else(|| failed("apt-get download left no .deb file".into()))?;
    let unpacked = work.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked)).map_err(failed)?;
    let files = unpacked.join(DEBIAN_DIR.trim_start_matches('/'));
    let count = std::fs::read_dir(&files)
        .map_err(Error::io(&files))?
        .count();
    publish(&files, &dest)?;
    Ok(Fetched::Downloaded {
        path: dest,
        files: count,
    })
}

/// Where [`fetch_fashion_mnist`] puts the IDX files when the system has none.
pub fn fashion_mnist_dir(root: &Path) -> PathBuf {
    root.join("fashion-mnist")
}

fn run(command: &mut Command) -> std::result::Result<(), String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .output()
        .map_err(|err| format!("could not run {program}: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Unpacks the members of a `.tgz` for which `keep` holds, each under `dest` by its path
/// relative to the archive's `package/` folder. Returns the number of files written.
fn unpack_selected(tarball: &Path, dest: &Path, keep: impl Fn(&str) -> bool) -> Result<usize> {
    let corrupt = |err: std::io::Error| Error::Corrupt {
        path: tarball.to_owned(),
        problem: format!("not a readable .tgz: {err}"),
    };
    let file = std::fs::File::open(tarball).map_err(Error::io(tarball))?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let mut written = 0;
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let name = entry
            .path()
            .map_err(corrupt)?
            .to_string_lossy()
            .into_owned();
        if !entry.header().entry_type().is_file() || !keep(&name) {
            continue;
        }
        let Some(relative) = name.strip_prefix("package/") else {
            continue;
        };
        // Member names come from a download: refuse any that would climb out of `dest`.
        if relative
            .split('/')
            .any(|part| part == ".." || part.is_empty())
        {
            return Err(Error::Corrupt {
                path: tarball.to_owned(),
                problem: format!("member '{name}' has an unsafe path"),
            });
        }
        let target = dest.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(corrupt)?;
        std::fs::write(&target, bytes).map_err(Error::io(&target))?;
        written += 1;
    }
    Ok(written)
}

/// Renames a finished folder into place. If another fetch won the race, its copy stays.
fn publish(finished: &Path, dest: &Path) -> Result<()> {
    match std::fs::rename(finished, dest) {
        Ok(()) => Ok(()),
        Err(_) if dest.is_dir() => Ok(()),
        Err(err) => Err(Error::Io {
            path: dest.to_owned(),
            source: err,
        }),
    }
}
