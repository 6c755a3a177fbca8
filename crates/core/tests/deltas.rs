//! Delta blobs (format version 2, docs/format.md "Delta blobs"): this
//! strata reads them and keeps what they need, although backups do not
//! write them yet. Chains decode to the exact plaintext, prune keeps every
//! base a kept delta needs, and damage in a base is damage in every blob
//! built on it.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{random_bytes, small_config, KDF};
use strata_core::format::pack::BlobKind;
use strata_core::format::snapshot::Snapshot;
use strata_core::format::to_cbor;
use strata_core::format::tree::{Node, NodeKind, Time, Tree};
use strata_core::maintenance::prune::{self, PruneOptions, UnusedLimit};
use strata_core::packer::BlobSaver;
use strata_core::repository::Repository;
use strata_core::storage::{MemoryStorage, ObjectKind, Storage};
use strata_core::{ErrorKind, Id};

fn repo_v2(storage: Arc<MemoryStorage>) -> Arc<Repository> {
    let mut config = small_config();
    config.version = strata_core::format::VERSION_DELTAS;
    Arc::new(Repository::init_with(storage, b"pw", KDF, config).unwrap())
}

/// Versions of a 300 KB chunk, each with a few bytes changed.
fn versions(n: usize) -> Vec<Vec<u8>> {
    let mut v = vec![random_bytes(1, 300_000)];
    for i in 1..n {
        let mut next = v[i - 1].clone();
        next[(i * 7919) % 300_000] ^= 0x5a;
        next.extend_from_slice(format!("row {i}\n").as_bytes());
        v.push(next);
    }
    v
}

/// Save the versions as a chain: each a delta against the one before.
fn save_chain(repo: &Arc<Repository>, versions: &[Vec<u8>]) -> Vec<Id> {
    let saver = BlobSaver::new(repo.clone());
    let mut ids = vec![saver.save(BlobKind::Data, &versions[0]).unwrap().id];
    for w in versions.windows(2) {
        let base = *ids.last().unwrap();
        let saved = saver.save_delta(&w[1], base, &w[0]).unwrap();
        assert!(saved.stored < 2_000, "a delta of {} bytes", saved.stored);
        ids.push(saved.id);
    }
    saver.finish().unwrap();
    ids
}

fn file(name: &str, content: Id, size: usize) -> Node {
    Node {
        name: name.as_bytes().to_vec(),
        kind: NodeKind::File,
        mode: 0o600,
        uid: 0,
        gid: 0,
        user: None,
        group: None,
        size: size as u64,
        mtime: Time::default(),
        atime: Time::default(),
        ctime: Time::default(),
        inode: 0,
        device: 0,
        links: 1,
        rdev: None,
        target: None,
        content: Some(vec![content]),
        extents: None,
        subtree: None,
        xattrs: vec![],
    }
}

/// A snapshot whose one file is `content`.
fn snapshot_of(repo: &Arc<Repository>, content: Id, size: usize) -> Id {
    let saver = BlobSaver::new(repo.clone());
    let tree = to_cbor(&Tree {
        nodes: vec![file("db.sql", content, size)],
    });
    let root = saver.save(BlobKind::Tree, &tree).unwrap().id;
    saver.finish().unwrap();
    repo.save_snapshot(&Snapshot {
        version: 1,
        time: jiff::Timestamp::now(),
        tree: root,
        paths: vec![],
        streams: vec!["db.sql".into()],
        sources: vec!["stream:db.sql".into()],
        hostname: "h".into(),
        username: "u".into(),
        uid: 0,
        gid: 0,
        tags: vec![],
        parent: None,
        sequence: 0,
        original: None,
        partial: false,
        summary: None,
        program_version: "test".into(),
    })
    .unwrap()
}

#[test]
fn every_version_of_a_chain_reads_back_exactly() {
    let storage = Arc::new(MemoryStorage::new());
    let repo = repo_v2(storage.clone());
    let versions = versions(12);
    let ids = save_chain(&repo, &versions);
    // A fresh process: the index from storage, bases from the entries.
    let again = Repository::open(storage, b"pw").unwrap();
    again.load_index().unwrap();
    for (id, want) in ids.iter().zip(&versions) {
        assert_eq!(&again.read_blob(id).unwrap(), want);
    }
    let index = again.index();
    assert_eq!(index.get(&ids[5]).unwrap().base, Some(ids[4]));
    assert_eq!(index.get(&ids[0]).unwrap().base, None);
}

#[test]
fn prune_keeps_the_bases_a_kept_delta_needs() {
    let storage = Arc::new(MemoryStorage::new());
    let repo = repo_v2(storage.clone());
    let versions = versions(6);
    let ids = save_chain(&repo, &versions);
    // Only the newest version is in a snapshot: the five below it are
    // needed all the same.
    snapshot_of(&repo, ids[5], versions[5].len());
    let opts = PruneOptions {
        max_unused: UnusedLimit::Bytes(0),
        ..PruneOptions::default()
    };
    prune::run(&repo, &opts, false).unwrap();
    let again = Repository::open(storage.clone(), b"pw").unwrap();
    again.load_index().unwrap();
    assert_eq!(again.read_blob(&ids[5]).unwrap(), versions[5]);
    let report = strata_core::check::run(
        &again,
        &strata_core::check::CheckOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.ok(), "{:?}", report.errors);
}

#[test]
fn a_flipped_byte_in_a_base_is_damage_in_every_delta_built_on_it() {
    let storage = Arc::new(MemoryStorage::new());
    let repo = repo_v2(storage.clone());
    let versions = versions(4);
    let ids = save_chain(&repo, &versions);
    snapshot_of(&repo, ids[3], versions[3].len());
    // The first version is the only full blob: damage it where it lies.
    let loc = *repo.index().get(&ids[0]).unwrap();
    let name = loc.pack.to_hex();
    let mut pack = storage.read(ObjectKind::Pack, &name).unwrap();
    pack[loc.offset as usize + 100] ^= 1;
    storage.remove(ObjectKind::Pack, &name).unwrap();
    storage.write(ObjectKind::Pack, &name, &pack).unwrap();
    let again = Repository::open(storage, b"pw").unwrap();
    again.load_index().unwrap();
    for id in &ids {
        let err = again.read_blob(id).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    }
    let report = strata_core::check::run(
        &again,
        &strata_core::check::CheckOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!report.ok());
}

#[test]
fn a_format_1_repository_stores_no_deltas() {
    let storage = Arc::new(MemoryStorage::new());
    let mut config = small_config();
    config.version = strata_core::format::VERSION;
    let repo = Arc::new(Repository::init_with(storage, b"pw", KDF, config).unwrap());
    let versions = versions(2);
    let saver = BlobSaver::new(repo.clone());
    let base = saver.save(BlobKind::Data, &versions[0]).unwrap().id;
    let saved = saver.save_delta(&versions[1], base, &versions[0]).unwrap();
    saver.finish().unwrap();
    assert!(saved.stored > 100_000, "stored {} bytes", saved.stored);
    assert_eq!(repo.index().get(&saved.id).unwrap().base, None);
}

#[test]
fn check_without_reading_data_reports_a_delta_whose_base_is_gone() {
    let storage = Arc::new(MemoryStorage::new());
    let repo = repo_v2(storage.clone());
    let versions = versions(3);
    let ids = save_chain(&repo, &versions);
    snapshot_of(&repo, ids[2], versions[2].len());
    // Lose the pack of the full first version (the others are deltas).
    let pack = repo.index().get(&ids[0]).unwrap().pack;
    let delta_pack = repo.index().get(&ids[2]).unwrap().pack;
    // The full version fills a pack of the test config (256 KiB) alone.
    assert_ne!(pack, delta_pack);
    storage.remove(ObjectKind::Pack, &pack.to_hex()).unwrap();
    let again = Repository::open(storage, b"pw").unwrap();
    let report = strata_core::check::run(&again, &Default::default()).unwrap();
    assert!(
        report.errors.iter().any(|e| e.contains("db.sql")),
        "{:?}",
        report.errors
    );
}

// Found by attacking delta storage (2026-11-30): a command that opened a
// format 1 repository before `upgrade` and took its lock after it went on
// as format 1 (repair index left the new delta packs unindexed).
#[test]
fn a_command_opened_before_an_upgrade_worked_from_the_old_format() {
    let storage = Arc::new(MemoryStorage::new());
    let mut config = small_config();
    config.version = strata_core::format::VERSION;
    Repository::init_with(storage.clone(), b"pw", KDF, config).unwrap();
    let early = Repository::open(storage.clone(), b"pw").unwrap();
    let upgrader = Repository::open(storage.clone(), b"pw").unwrap();
    assert_eq!(upgrader.upgrade().unwrap(), 1);
    let Err(err) = early.lock(strata_core::repository::LockKind::Shared) else {
        panic!("a lock was given on a config that changed");
    };
    assert!(err.to_string().contains("upgraded"), "{err}");
    let late = Repository::open(storage, b"pw").unwrap();
    assert!(late.deltas());
    late.lock(strata_core::repository::LockKind::Shared)
        .unwrap();
}
