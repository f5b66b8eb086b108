//! One writer at a time. A memory folder's write lock is an advisory lock (flock(2),
//! through std's `File::lock`) on `writer.lock` in the folder, taken by a process's first
//! change to the memory and held until its [`crate::Memory`] is dropped. Readers never take
//! it, so searches are never blocked, and they always read a committed manifest.
//!
//! The lock file names its holder (process id and command line), so a second writer's
//! error says who to wait for. The kernel releases the lock when its holder exits, killed
//! or not, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// The lock file's name inside a memory folder.
pub(crate) const LOCK_FILE: &str = "writer.lock";

/// Longest holder description kept, in characters.
const HOLDER_CHARS: usize = 300;

/// A held write lock; dropping it releases the lock.
pub(crate) struct WriterLock {
    _file: File,
}

impl WriterLock {
    /// Takes the write lock on the memory in `dir`. When another process holds it, waits
    /// for it if `wait`, and otherwise fails naming the holder.
    pub(crate) fn take(dir: &Path, wait: bool) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) if wait => file.lock().map_err(Error::io(&path))?,
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // The holder may be writing its name at this moment; an unreadable name
                // still leaves a clear error.
                let _ = file.read_to_string(&mut holder);
                return Err(Error::Locked {
                    path: dir.to_owned(),
                    holder: printable(holder.trim()),
                });
            }
            Err(TryLockError::Error(source)) => return Err(Error::Io { path, source }),
        }
        let arguments: Vec<String> = std::env::args_os()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        let holder = format!("pid {}: {}", std::process::id(), arguments.join(" "));
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(printable(&holder).as_bytes()))
            .map_err(Error::io(&path))?;
        Ok(Self { _file: file })
    }
}

/// `text` cut to [`HOLDER_CHARS`] characters, control characters escaped.
fn printable(text: &str) -> String {
    let cut: String = text.chars().take(HOLDER_CHARS).collect();
    racm3_data::printable(&cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_and_named_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = WriterLock::take(dir.path(), false).unwrap();
        // flock is per open file, so a second open in this process contends like another
        // process would.
        let Err(Error::Locked { holder, .. }) = WriterLock::take(dir.path(), false) else {
            panic!("a second writer got the lock");
        };
        assert!(
            holder.starts_with(&format!("pid {}: ", std::process::id())),
            "{holder}"
        );
        drop(first);
        WriterLock::take(dir.path(), false).unwrap();
    }

    #[test]
    fn holder_names_are_cut_and_escaped() {
        assert_eq!(printable("racm3 \u{1b}[2J add"), "racm3 \\u{1b}[2J add");
        assert_eq!(printable(&"x".repeat(1000)).len(), HOLDER_CHARS);
        assert_eq!(racm3_data::printable("a\tb\n"), "a\\tb\\n");
    }
}
