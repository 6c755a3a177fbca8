//! Storage that fails part-way: the backup stops with an error, writes no
//! snapshot, and leaves a repository that checks clean and takes the next
//! backup.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use strata_core::backup::{self, BackupOptions, NoProgress};
use strata_core::check::{self, CheckOptions};
use strata_core::crypto::KdfParams;
use strata_core::repository::Repository;
use strata_core::storage::{Faults, FaultyStorage, MemoryStorage, ObjectKind, Storage};

mod common;
use common::{small_config, tree};

#[test]
fn a_failing_upload_aborts_the_backup_without_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    tree(&src);
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let mem = MemoryStorage::new();
    Repository::init_with(Arc::new(mem.clone()), b"pw", kdf, small_config()).unwrap();

    // small packs so that several are written before the failure
    for (n, kind) in [
        (0, ObjectKind::Pack),
        (5, ObjectKind::Pack),
        (0, ObjectKind::Index),
        (0, ObjectKind::Snapshot),
    ] {
        let faulty = FaultyStorage::new(
            mem.clone(),
            Faults {
                writes_before_failure: Some(n),
                only_kind: Some(kind),
                ..Faults::default()
            },
        );
        let repo = Arc::new(Repository::open(faulty, b"pw").unwrap());
        let err =
            backup::run(&repo, &BackupOptions::new(vec![src.clone()]), &NoProgress).unwrap_err();
        assert!(err.to_string().contains("injected fault"), "{err}");
        assert!(
            mem.list(ObjectKind::Snapshot).unwrap().is_empty(),
            "no snapshot after a failed {kind:?} write"
        );
        let clean = Arc::new(Repository::open(Arc::new(mem.clone()), b"pw").unwrap());
        let report = check::run(
            &clean,
            &CheckOptions {
                read_data: true,
                subset: None,
            },
        )
        .unwrap();
        assert!(
            report.ok(),
            "after failing {kind:?} write {n}: {:?}",
            report.errors
        );
        assert!(
            mem.list(ObjectKind::Lock).unwrap().is_empty(),
            "lock released"
        );
    }

    let repo = Arc::new(Repository::open(Arc::new(mem.clone()), b"pw").unwrap());
    let (_, snap) =
        backup::run(&repo, &BackupOptions::new(vec![src.clone()]), &NoProgress).unwrap();
    assert!(!snap.partial);
    let report = check::run(
        &repo,
        &CheckOptions {
            read_data: true,
            subset: None,
        },
    )
    .unwrap();
    assert!(report.ok(), "{:?}", report.errors);
}

#[test]
fn a_failing_read_fails_the_restore_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    tree(&src);
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let mem = MemoryStorage::new();
    let repo =
        Arc::new(Repository::init_with(Arc::new(mem.clone()), b"pw", kdf, small_config()).unwrap());
    let (_, snap) =
        backup::run(&repo, &BackupOptions::new(vec![src.clone()]), &NoProgress).unwrap();
    let faulty = FaultyStorage::new(
        mem.clone(),
        Faults {
            reads_before_failure: Some(3),
            only_kind: Some(ObjectKind::Pack),
            ..Faults::default()
        },
    );
    let repo = Arc::new(Repository::open(faulty, b"pw").unwrap());
    let opts = strata_core::restore::RestoreOptions {
        target: dir.path().join("out"),
        ..Default::default()
    };
    let err = strata_core::restore::run(
        &repo,
        snap.tree,
        &opts,
        &strata_core::restore::NoRestoreProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains("injected fault"), "{err}");
}
