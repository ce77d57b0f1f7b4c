//! The GGUF validator must return Ok or Err on any input, never panic, and never accept a file
//! whose tensor data lies outside it.
//!
//! cargo fuzz run gguf_validate        (from runtime/; needs cargo-fuzz)
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = retroformer_gguf::validate_bytes(data) {
        for t in &f.tensors {
            let end = f.data_offset + t.offset + t.size;
            assert!(end <= data.len() as u64);
        }
        let _ = f.summary();
    }
});
