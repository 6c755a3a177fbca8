//! Helpers shared by the integration tests.
#![allow(clippy::unwrap_used, dead_code)]

use strata_core::format::config::{ChunkerParams, Config};

/// Thirty files of pseudo-random data, from 10 bytes to about 2.8 MB.
pub fn tree(dir: &std::path::Path) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..30 {
        let data: Vec<u8> = (0..(i * 97_000 + 10))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(dir.join(format!("f{i}")), data).unwrap();
    }
}

/// Small chunks and packs, so that a backup writes many packs.
pub fn small_config() -> Config {
    let mut c = Config::new();
    c.chunker = ChunkerParams {
        min_size: 64 << 10,
        avg_size: 128 << 10,
        max_size: 512 << 10,
        ..c.chunker
    };
    c.pack_size = 256 << 10;
    c
}
