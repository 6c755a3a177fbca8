//! The repository's `config` object: format version and the parameters
//! every writer must share so that deduplication works.

use serde::{Deserialize, Serialize};

use crate::crypto::random_bytes;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Config {
    pub version: u32,
    /// Random repository id, hex.
    pub id: String,
    pub chunker: ChunkerParams,
    /// Target size of a pack file in bytes.
    pub pack_size: u32,
    /// zstd level for blobs and metadata; 0 disables compression.
    pub compression: i32,
}

/// FastCDC parameters. The seed is secret (the config is encrypted): it
/// perturbs the gear table so chunk boundaries do not fingerprint content.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkerParams {
    pub seed: u64,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Config {
    pub fn new() -> Config {
        Config {
            version: super::VERSION_DELTAS,
            id: hex::encode(random_bytes::<16>()),
            chunker: ChunkerParams {
                seed: u64::from_le_bytes(random_bytes()),
                min_size: 512 * 1024,
                avg_size: 1024 * 1024,
                // 4 MiB rather than restic's 8: only runs without cut
                // points (zeros, repeats) reach it, and it bounds each
                // worker's buffers.
                max_size: 4 * 1024 * 1024,
            },
            pack_size: 16 * 1024 * 1024,
            compression: 3,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}
