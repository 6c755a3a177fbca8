//! Restoring snapshots built by someone hostile: names that climb out of
//! the target and duplicate names must be refused before anything is written.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use strata_core::crypto::KdfParams;
use strata_core::format::pack::BlobKind;
use strata_core::format::to_cbor;
use strata_core::format::tree::{Node, NodeKind, Time, Tree};
use strata_core::packer::BlobSaver;
use strata_core::repository::Repository;
use strata_core::restore::{self, NoRestoreProgress, RestoreOptions};
use strata_core::storage::MemoryStorage;
use strata_core::{ErrorKind, Id};

fn node(name: &[u8], kind: NodeKind) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: 0o755,
        uid: 0,
        gid: 0,
        user: None,
        group: None,
        size: 0,
        mtime: Time::default(),
        atime: Time::default(),
        ctime: Time::default(),
        inode: 1,
        device: 1,
        links: 1,
        rdev: None,
        target: None,
        content: None,
        extents: None,
        subtree: None,
        xattrs: vec![],
    }
}

fn save_tree(saver: &BlobSaver, nodes: Vec<Node>) -> Id {
    saver
        .save(BlobKind::Tree, &to_cbor(&Tree { nodes }))
        .unwrap()
        .id
}

fn repo() -> (Arc<Repository>, BlobSaver) {
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let repo = Arc::new(Repository::init(Arc::new(MemoryStorage::new()), b"pw", kdf).unwrap());
    let saver = BlobSaver::new(repo.clone());
    (repo, saver)
}

#[test]
fn duplicate_names_that_swap_a_directory_for_a_symlink_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let (repo, saver) = repo();
    let data = saver.save(BlobKind::Data, b"owned").unwrap().id;
    let mut file = node(b"passwd", NodeKind::File);
    file.size = 5;
    file.content = Some(vec![data]);
    let inner = save_tree(&saver, vec![file]);
    let mut as_dir = node(b"a", NodeKind::Dir);
    as_dir.subtree = Some(inner);
    let mut as_link = node(b"a", NodeKind::Symlink);
    as_link.target = Some(outside.as_os_str().as_encoded_bytes().to_vec());
    let root = save_tree(&saver, vec![as_dir, as_link]);
    saver.finish().unwrap();

    let target = dir.path().join("target");
    let opts = RestoreOptions {
        target: target.clone(),
        ..RestoreOptions::default()
    };
    let err = restore::run(&repo, root, &opts, &NoRestoreProgress).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(!outside.join("passwd").exists());
}

#[test]
fn names_that_climb_out_of_the_target_are_refused() {
    for bad in [&b".."[..], b".", b"", b"a/b", b"x\0y"] {
        let dir = tempfile::tempdir().unwrap();
        let (repo, saver) = repo();
        let data = saver.save(BlobKind::Data, b"owned").unwrap().id;
        let mut file = node(bad, NodeKind::File);
        file.size = 5;
        file.content = Some(vec![data]);
        let inner = save_tree(&saver, vec![file]);
        let mut sub = node(b"sub", NodeKind::Dir);
        sub.subtree = Some(inner);
        let root = save_tree(&saver, vec![sub]);
        saver.finish().unwrap();
        let target = dir.path().join("t");
        let opts = RestoreOptions {
            target: target.clone(),
            ..RestoreOptions::default()
        };
        let err = restore::run(&repo, root, &opts, &NoRestoreProgress).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupted, "name {bad:?}: {err}");
        assert!(!dir.path().join("owned").exists());
        assert!(
            !target.exists() || std::fs::read_dir(&target).unwrap().next().is_none(),
            "nothing restored for {bad:?}"
        );
    }
}

/// Found by attacking streams (2026-11-30): a backup stored a root tree
/// with a file and a directory of the same name, restore refused it, and
/// `check --read-data` said there were no errors.
#[test]
fn check_passed_a_snapshot_whose_tree_has_duplicate_names() {
    let (repo, saver) = repo();
    let data = saver.save(BlobKind::Data, b"1\n").unwrap().id;
    let mut file = node(b"a", NodeKind::File);
    file.size = 2;
    file.content = Some(vec![data]);
    let inner = save_tree(&saver, vec![]);
    let mut dir = node(b"a", NodeKind::Dir);
    dir.subtree = Some(inner);
    let root = save_tree(&saver, vec![file, dir]);
    saver.finish().unwrap();
    let snapshot = strata_core::format::snapshot::Snapshot {
        version: 1,
        time: jiff::Timestamp::UNIX_EPOCH,
        tree: root,
        paths: vec!["/a".into()],
        streams: vec![],
        sources: vec![],
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
    };
    repo.save_snapshot(&snapshot).unwrap();
    let report = strata_core::check::run(&repo, &Default::default()).unwrap();
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("duplicate or unsorted names")),
        "{:?}",
        report.errors
    );
}
