//! The image decoder every image input passes through (files, tar members, API bodies).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = racm3_data::decode_rgb(data, "fuzzed");
});
