//! Fuzz target: see `strata_core::format::fuzz::objects`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_core::format::fuzz::objects(data));
