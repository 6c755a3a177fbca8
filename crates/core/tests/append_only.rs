//! Growing files (`--append-only`): reading only the tail of a file that
//! grew must give exactly the snapshot a full read gives, for appends of
//! any size (smaller than a chunk, around the chunk limits, many chunks),
//! and any change before the old end must be caught.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use common::{random_bytes, small_config, KDF};
use strata_core::backup::{self, AppendVerify, BackupOptions, NoProgress, Progress};
use strata_core::format::snapshot::Snapshot;
use strata_core::format::tree::Node;
use strata_core::repository::Repository;
use strata_core::storage::MemoryStorage;

fn repo() -> Arc<Repository> {
    let storage = Arc::new(MemoryStorage::new());
    Arc::new(Repository::init_with(storage, b"pw", KDF, small_config()).unwrap())
}

fn options(dir: &Path, verify: AppendVerify) -> BackupOptions {
    let mut opts = BackupOptions::new(vec![dir.to_path_buf()]);
    opts.append_only = vec!["*.fs".into()];
    opts.append_verify = verify;
    opts
}

fn file_node(repo: &Repository, snap: &Snapshot) -> Node {
    repo.find_node(snap.tree, b"src/Data.fs").unwrap().unwrap()
}

/// Counts the warnings a backup gives.
#[derive(Default)]
struct Warnings(std::sync::Mutex<Vec<String>>);

impl Progress for Warnings {
    fn warning(&self, _path: &Path, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

/// What a full read of the file stores now: the same repository, --force.
fn full_read(repo: &Arc<Repository>, dir: &Path) -> Node {
    let mut opts = BackupOptions::new(vec![dir.to_path_buf()]);
    opts.force = true;
    let (_, snap) = backup::run(repo, &opts, &NoProgress).unwrap();
    file_node(repo, &snap)
}

#[test]
fn tail_reads_give_the_snapshot_a_full_read_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("src");
    fs::create_dir(&dir).unwrap();
    let file = dir.join("Data.fs");
    let repo = repo();
    // Appends from one byte to several maximal chunks (512 KiB here),
    // including sizes around min (64 KiB) and avg (128 KiB).
    let appends = [
        1usize,
        700,
        64 << 10,
        (128 << 10) + 3,
        5,
        1 << 20,
        300_000,
        2 << 20,
        17,
    ];
    fs::write(&file, random_bytes(1, 3 << 20)).unwrap();
    backup::run(&repo, &options(&dir, AppendVerify::Quick), &NoProgress).unwrap();
    for (round, n) in appends.iter().enumerate() {
        let old = fs::metadata(&file).unwrap().len();
        let mut f = fs::OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(&random_bytes(round as u64 + 100, *n)).unwrap();
        drop(f);
        let warnings = Warnings::default();
        let (_, snap) = backup::run(&repo, &options(&dir, AppendVerify::Quick), &warnings).unwrap();
        let summary = snap.summary.clone().unwrap();
        let tail = file_node(&repo, &snap);
        assert!(
            warnings.0.lock().unwrap().is_empty(),
            "round {round}: {:?}",
            warnings.0.lock().unwrap()
        );
        // A full read is exactly the new size; the tail path reads less
        // (how much less depends on where the random seed puts the cuts).
        assert!(
            summary.bytes_read < old + *n as u64,
            "round {round}: read {} of a file that was {old} bytes and grew by {n}",
            summary.bytes_read
        );
        let full = full_read(&repo, &dir);
        assert_eq!(tail.content, full.content, "round {round}: appended {n}");
        assert_eq!(tail.size, full.size);
    }
}

#[test]
fn a_byte_changed_at_the_old_end_forces_a_full_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("src");
    fs::create_dir(&dir).unwrap();
    let file = dir.join("Data.fs");
    let repo = repo();
    fs::write(&file, random_bytes(7, 4 << 20)).unwrap();
    backup::run(&repo, &options(&dir, AppendVerify::Quick), &NoProgress).unwrap();
    // Positions in the old file's last chunk, and anywhere in its last
    // `min` bytes (64 KiB here): the old last chunk and the one before it
    // (at least `min` long) are always verified, whatever the cut points.
    for back in [1usize, 1000, 30_000, 65_000] {
        let mut data = fs::read(&file).unwrap();
        let at = data.len() - back;
        data[at] ^= 0x40;
        data.extend_from_slice(&random_bytes(back as u64, 10_000));
        fs::write(&file, &data).unwrap();
        let warnings = Warnings::default();
        let (_, snap) = backup::run(&repo, &options(&dir, AppendVerify::Quick), &warnings).unwrap();
        let got = warnings.0.lock().unwrap().clone();
        assert!(
            got.iter().any(|w| w.contains("read in full")),
            "a change {back} bytes before the old end went unnoticed: {got:?}"
        );
        let summary = snap.summary.clone().unwrap();
        assert_eq!(summary.bytes_read, data.len() as u64);
        assert_eq!(
            file_node(&repo, &snap).content,
            full_read(&repo, &dir).content
        );
    }
}

#[test]
fn full_verification_catches_a_change_anywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("src");
    fs::create_dir(&dir).unwrap();
    let file = dir.join("Data.fs");
    let repo = repo();
    let mut data = random_bytes(9, 6 << 20);
    fs::write(&file, &data).unwrap();
    backup::run(&repo, &options(&dir, AppendVerify::Full), &NoProgress).unwrap();
    data[1_234_567] ^= 1;
    data.extend_from_slice(b"appended");
    fs::write(&file, &data).unwrap();
    let warnings = Warnings::default();
    let (_, snap) = backup::run(&repo, &options(&dir, AppendVerify::Full), &warnings).unwrap();
    assert!(warnings
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|w| w.contains("read in full")));
    assert_eq!(
        file_node(&repo, &snap).content,
        full_read(&repo, &dir).content
    );
}

#[test]
fn a_file_that_shrank_or_was_replaced_is_read_in_full() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("src");
    fs::create_dir(&dir).unwrap();
    let file = dir.join("Data.fs");
    let repo = repo();
    fs::write(&file, random_bytes(3, 2 << 20)).unwrap();
    backup::run(&repo, &options(&dir, AppendVerify::Quick), &NoProgress).unwrap();
    // Replaced by a longer file with a new inode (a ZODB pack does this).
    let replacement = dir.join("new");
    fs::write(&replacement, random_bytes(4, 3 << 20)).unwrap();
    fs::rename(&replacement, &file).unwrap();
    let (_, snap) = backup::run(&repo, &options(&dir, AppendVerify::Quick), &NoProgress).unwrap();
    assert_eq!(snap.summary.clone().unwrap().bytes_read, 3 << 20);
    assert_eq!(
        file_node(&repo, &snap).content,
        full_read(&repo, &dir).content
    );
}
