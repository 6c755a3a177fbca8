//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use strata_core::crypto::KdfParams;
use strata_core::format::config::{ChunkerParams, Config};

/// The cheapest key derivation: tests open repositories many times.
pub const KDF: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

/// Deterministic incompressible bytes (xorshift64).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Small chunks and packs, so that a few files make many packs.
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

/// Thirty files of pseudo-random data, from 10 bytes to about 2.8 MB.
pub fn tree(dir: &std::path::Path) {
    for i in 0..30u64 {
        let data = random_bytes(i + 1, i as usize * 97_000 + 10);
        std::fs::write(dir.join(format!("f{i}")), data).expect("writing the test tree");
    }
}
