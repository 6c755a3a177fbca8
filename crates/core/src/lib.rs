//! # strata-core
//!
//! Building blocks for incremental backups: an encrypted, deduplicating,
//! content-addressed repository and the engines that write and read it.
//!
//! Layers, each knowing only the one below it:
//! - [`storage`]: named immutable objects (local directory, memory, faults);
//! - [`repository`] with [`format`](mod@format) and [`crypto`]: keys, packs, index, snapshots;
//! - [`backup`], [`restore`], [`check`]: the engines;
//! - [`walk`] (directory trees) and [`sources`] (standard input, commands,
//!   MySQL/MariaDB and PostgreSQL databases): what a backup reads;
//! - the `strata` command-line program (a separate crate) on top.
//!
//! A first backup and restore:
//! ```no_run
//! use std::sync::Arc;
//! use strata_core::{storage::LocalStorage, repository::Repository, crypto::KdfParams};
//! let storage = Arc::new(LocalStorage::new("/tmp/repo"));
//! let repo = Arc::new(Repository::init(storage, b"password", KdfParams::default())?);
//! let opts = strata_core::backup::BackupOptions::new(vec!["/etc".into()]);
//! let (id, _snapshot) = strata_core::backup::run(&repo, &opts, &strata_core::backup::NoProgress)?;
//! # Ok::<(), strata_core::Error>(())
//! ```

pub mod backup;
pub mod check;
pub mod chunker;
pub mod crypto;
pub mod diff;
pub mod error;
pub mod format;
pub mod id;
pub mod interrupt;
pub mod maintenance;
pub mod packer;
pub mod repository;
pub mod restore;
pub mod select;
pub mod sources;
pub mod stats;
pub mod storage;
pub mod walk;

pub use error::{Error, ErrorKind, Result};

/// The most worker threads an engine starts, whatever it is asked: each
/// holds buffers of several MiB, and thousands abort the process when the
/// system refuses more.
pub const MAX_THREADS: usize = 256;
pub use id::Id;

/// This machine's host name, or `unknown`.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The current user's name, or the numeric uid.
pub fn username() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// Data for the unit tests of the engine's modules.
#[cfg(test)]
pub(crate) mod test_data {
    /// Deterministic incompressible bytes (xorshift64); seeds that differ
    /// only in their lowest bit give the same bytes.
    pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }
}
