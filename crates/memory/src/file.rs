//! The one container every memory file uses: a header with a magic number, the file's kind
//! and format version and the payload length, the payload, then a CRC-32 of the payload.
//! A truncated file, a flipped bit or a file from another program or version is refused
//! with an error naming the file. Writes go to a temp file that is renamed into place.
//! (The layout follows tantivy's footer: `src/directory/footer.rs`.)

use std::path::Path;

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"RACM3MEM";
const HEADER_LEN: usize = 8 + 4 + 4 + 8;
const FOOTER_LEN: usize = 4;

/// What a file holds, and the format version this build reads and writes for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The manifest: which segments and indexes make up the memory (JSON payload).
    Manifest,
    /// A segment's documents.
    Documents,
    /// A segment's keys: n × d little-endian f32.
    Keys,
    /// An HNSW graph over the memory's keys.
    Graph,
}

impl Kind {
    fn tag(self) -> &'static [u8; 4] {
        match self {
            Kind::Manifest => b"MANI",
            Kind::Documents => b"DOCS",
            Kind::Keys => b"KEYS",
            Kind::Graph => b"HNSW",
        }
    }

    /// Version 1 is the first format of every kind.
    fn version(self) -> u32 {
        1
    }

    fn describe(tag: &[u8], version: u32) -> String {
        format!(
            "a '{}' file of version {version}",
            String::from_utf8_lossy(tag)
        )
    }
}

/// Writes `payload` as a `kind` file, atomically.
pub(crate) fn write(path: &Path, kind: Kind, payload: &[u8]) -> Result<()> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len() + FOOTER_LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(kind.tag());
    bytes.extend_from_slice(&kind.version().to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    write_atomic(path, &bytes)
}

/// Reads a `kind` file and returns its checked payload.
pub(crate) fn read(path: &Path, kind: Kind) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    open_container(bytes, kind, path)
}

/// The checked payload of a `kind` file's bytes, read from `path`.
pub(crate) fn open_container(mut bytes: Vec<u8>, kind: Kind, path: &Path) -> Result<Vec<u8>> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(Error::Foreign {
            path: path.to_owned(),
            found: "a file that is not a racm3 memory file".into(),
            supported: Kind::describe(kind.tag(), kind.version()),
        });
    }
    let tag = &bytes[8..12];
    let version = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if tag != kind.tag() || version != kind.version() {
        return Err(Error::Foreign {
            path: path.to_owned(),
            found: Kind::describe(tag, version),
            supported: Kind::describe(kind.tag(), kind.version()),
        });
    }
    let declared = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    // A declared length near u64::MAX would wrap; saturating keeps it a mismatch.
    let expected_len = ((HEADER_LEN + FOOTER_LEN) as u64).saturating_add(declared);
    if bytes.len() as u64 != expected_len {
        return Err(Error::corrupt(
            path,
            format!(
                "{} bytes on disk, the header promises {expected_len} (truncated or appended to)",
                bytes.len()
            ),
        ));
    }
    let footer_at = bytes.len() - FOOTER_LEN;
    let stored = u32::from_le_bytes(bytes[footer_at..].try_into().expect("4 bytes"));
    // In place: a key file can be gigabytes, so never hold two copies.
    bytes.truncate(footer_at);
    bytes.drain(..HEADER_LEN);
    let payload = bytes;
    let actual = crc32fast::hash(&payload);
    if stored != actual {
        return Err(Error::corrupt(
            path,
            format!("checksum mismatch (stored {stored:08x}, computed {actual:08x})"),
        ));
    }
    Ok(payload)
}

/// Temp file in the same folder, synced, then renamed over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    racm3_data::write_atomic(path, bytes).map_err(|err| match err {
        racm3_data::Error::Io { path, source } => Error::Io { path, source },
        other => Error::corrupt(path, other.to_string()),
    })
}

/// Little-endian f32 rows to bytes and back.
pub(crate) fn f32s_to_bytes(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for value in values {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

pub(crate) fn bytes_to_f32s(bytes: &[u8], path: &Path) -> Result<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return Err(Error::corrupt(
            path,
            "f32 payload length is not a multiple of 4",
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes(chunk.try_into().expect("4 bytes")))
        .collect())
}

/// A cursor over a payload that reports truncation as corruption of `path`.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    path: &'a Path,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], path: &'a Path) -> Self {
        Self { bytes, path }
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < len {
            return Err(Error::corrupt(self.path, "payload ends early"));
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub(crate) fn u32s(&mut self, count: usize) -> Result<Vec<u32>> {
        let bytes = self.take(
            count
                .checked_mul(4)
                .ok_or_else(|| Error::corrupt(self.path, "array length overflows"))?,
        )?;
        Ok(bytes
            .chunks_exact(4)
            .map(|chunk| u32::from_le_bytes(chunk.try_into().expect("4 bytes")))
            .collect())
    }

    pub(crate) fn is_done(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Appends little-endian u32s.
pub(crate) fn put_u32s(out: &mut Vec<u8>, values: &[u32]) {
    for value in values {
        out.extend_from_slice(&value.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A file reads back whole; truncation, a flipped bit, another kind and another version
    // are each refused with an error naming the file.
    #[test]
    fn refuses_damaged_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.bin");
        write(&path, Kind::Keys, b"payload bytes").unwrap();
        assert_eq!(read(&path, Kind::Keys).unwrap(), b"payload bytes");

        let good = std::fs::read(&path).unwrap();
        let check = |bytes: &[u8], kind: Kind, expect: &str| {
            std::fs::write(&path, bytes).unwrap();
            let err = read(&path, kind).unwrap_err().to_string();
            assert!(err.contains("keys.bin") && err.contains(expect), "{err}");
        };
        check(&good[..good.len() - 3], Kind::Keys, "truncated");
        let mut flipped = good.clone();
        flipped[HEADER_LEN + 2] ^= 1;
        check(&flipped, Kind::Keys, "checksum");
        check(&good, Kind::Graph, "'KEYS' file of version 1");
        let mut newer = good.clone();
        newer[12] = 9;
        check(&newer, Kind::Keys, "version 9");
        check(
            b"GIF89a not ours at all....",
            Kind::Keys,
            "not a racm3 memory file",
        );
    }
}
