//! Fuzz target: see `strata_core::format::fuzz::key_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_core::format::fuzz::key_file(data));
