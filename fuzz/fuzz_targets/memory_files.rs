//! Every memory file reader (container, manifest, documents, keys, HNSW graph) on
//! arbitrary bytes: an error is fine, a panic or a hang is a bug.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = racm3_memory::parse_any_file(data);
});
