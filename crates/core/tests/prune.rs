//! Prune beside backups, with the interleavings made deterministic: a
//! backup's progress callback runs `forget` and `prune` from another handle
//! on the same storage while the backup holds its lock and its index.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{random_bytes, small_config, KDF};
use strata_core::backup::{self, BackupOptions, NoProgress, Progress};
use strata_core::check::{self, CheckOptions};
use strata_core::format::snapshot::Summary;
use strata_core::maintenance::prune::{self, PruneOptions, PruneReport, UnusedLimit};
use strata_core::repository::{LockKind, LockTiming, Repository};
use strata_core::restore::{self, NoRestoreProgress, RestoreOptions};
use strata_core::storage::{MemoryStorage, ObjectKind, Storage};
use strata_core::{ErrorKind, Id};

struct Setup {
    _dir: tempfile::TempDir,
    src: PathBuf,
    restore_root: PathBuf,
    storage: MemoryStorage,
}

impl Setup {
    fn new(files: u64) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        for i in 0..files {
            std::fs::write(src.join(format!("f{i}")), random_bytes(i + 1, 200_000)).unwrap();
        }
        let storage = MemoryStorage::new();
        Repository::init_with(Arc::new(storage.clone()), b"pw", KDF, small_config()).unwrap();
        Setup {
            restore_root: dir.path().join("restored"),
            _dir: dir,
            src,
            storage,
        }
    }

    /// Another process's view of the repository.
    fn handle(&self) -> Arc<Repository> {
        Arc::new(Repository::open(Arc::new(self.storage.clone()), b"pw").unwrap())
    }

    fn backup(&self, progress: &dyn Progress) -> strata_core::Result<(Id, Summary)> {
        let repo = self.handle();
        let opts = BackupOptions::new(vec![self.src.clone()]);
        backup::run(&repo, &opts, progress).map(|(id, s)| (id, s.summary.unwrap_or_default()))
    }

    fn prune(&self, max_unused: UnusedLimit) -> PruneReport {
        let opts = PruneOptions {
            max_unused,
            max_repack_size: None,
        };
        prune::run(&self.handle(), &opts, false).unwrap().1
    }

    fn forget(&self, id: &Id) {
        self.storage
            .remove(ObjectKind::Snapshot, &id.to_hex())
            .unwrap();
    }

    fn packs(&self) -> usize {
        self.storage.list(ObjectKind::Pack).unwrap().len()
    }

    /// Full check with data, then restore `snap` and compare it with `want`.
    fn assert_intact(&self, snap: &Id, want: &BTreeMap<PathBuf, Vec<u8>>) {
        let repo = self.handle();
        let report = check::run(
            &repo,
            &CheckOptions {
                read_data: true,
                subset: None,
            },
        )
        .unwrap();
        assert!(report.ok(), "check found damage: {:?}", report.errors);
        repo.load_index().unwrap();
        let target = self.restore_root.join(snap.to_hex());
        let opts = RestoreOptions {
            target: target.clone(),
            ..RestoreOptions::default()
        };
        let tree = repo.load_snapshot(snap).unwrap().tree;
        restore::run(&repo, tree, &opts, &NoRestoreProgress).unwrap();
        assert_eq!(&contents(&target.join("src")), want);
    }
}

fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                PathBuf::from(e.file_name()),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Runs `action` once, from inside a backup, after its lock and index.
struct Hook<F: Fn() + Sync> {
    action: F,
    done: AtomicBool,
}

impl<F: Fn() + Sync> Progress for Hook<F> {
    fn dir_done(&self, _path: &Path) {
        if !self.done.swap(true, Ordering::SeqCst) {
            (self.action)();
        }
    }
}

fn hook<F: Fn() + Sync>(action: F) -> Hook<F> {
    Hook {
        action,
        done: AtomicBool::new(false),
    }
}

#[test]
fn a_backup_that_saw_condemned_data_keeps_it() {
    let s = Setup::new(6);
    let want = contents(&s.src);
    // Files changed within a second of a backup are read again by the next
    // one; this test wants them reused from the parent instead.
    std::thread::sleep(Duration::from_millis(1100));
    let (first, _) = s.backup(&NoProgress).unwrap();
    let during = Mutex::new(None);
    // The second backup loaded an index listing the first one's blobs and
    // reuses them; meanwhile the first snapshot is forgotten and pruned.
    let (second, summary) = s
        .backup(&hook(|| {
            s.forget(&first);
            *during.lock().unwrap() = Some(s.prune(UnusedLimit::Percent(0.0)));
        }))
        .unwrap();
    assert_eq!(
        summary.files_unchanged, 6,
        "the files were reused, not read"
    );
    let during = during.into_inner().unwrap().unwrap();
    assert!(during.condemned_packs > 0, "{during:?}");
    assert_eq!(
        during.sweep.deleted_packs, 0,
        "the running backup's lock holds them"
    );
    // The next prune sees the finished backup's snapshot need them.
    let after = s.prune(UnusedLimit::Percent(0.0));
    assert!(after.sweep.rescued_packs > 0, "{after:?}");
    s.assert_intact(&second, &want);
    let again = s.prune(UnusedLimit::Percent(0.0));
    assert_eq!(again.sweep.deleted_packs, 0);
    s.assert_intact(&second, &want);
}

#[test]
fn a_backup_after_condemnation_stores_the_data_again() {
    let s = Setup::new(4);
    let want = contents(&s.src);
    let (first, _) = s.backup(&NoProgress).unwrap();
    s.forget(&first);
    let packs_before = s.packs();
    // A restore still running elsewhere holds a lock: nothing is deleted.
    let other = s.handle();
    let held = other.lock(LockKind::Shared).unwrap();
    let condemned = s.prune(UnusedLimit::Percent(0.0));
    assert_eq!(condemned.condemned_packs, packs_before);
    assert_eq!(condemned.sweep.deleted_packs, 0);
    assert_eq!(s.packs(), packs_before);
    let (second, summary) = s.backup(&NoProgress).unwrap();
    assert!(
        summary.data_added >= 4 * 200_000,
        "condemned blobs must be stored again, not referenced: {summary:?}"
    );
    drop(held);
    let swept = s.prune(UnusedLimit::Percent(0.0));
    assert_eq!(swept.sweep.deleted_packs, packs_before, "{swept:?}");
    assert_eq!(swept.sweep.rescued_packs, 0);
    s.assert_intact(&second, &want);
}

#[test]
fn repack_keeps_used_blobs_and_frees_the_rest() {
    let s = Setup::new(8);
    s.backup(&NoProgress).unwrap();
    for i in 0..4 {
        std::fs::remove_file(s.src.join(format!("f{i}"))).unwrap();
    }
    let want = contents(&s.src);
    let (second, _) = s.backup(&NoProgress).unwrap();
    let first = s.handle().snapshots().unwrap().0[0].0;
    s.forget(&first);
    let bytes = |s: &Setup| -> u64 {
        s.storage
            .list(ObjectKind::Pack)
            .unwrap()
            .iter()
            .map(|o| o.size)
            .sum()
    };
    let before = bytes(&s);
    let report = s.prune(UnusedLimit::Bytes(0));
    assert!(report.repacked_blobs > 0 || report.sweep.deleted_packs > 0);
    assert!(
        bytes(&s) < before * 7 / 10,
        "{} of {before} bytes left",
        bytes(&s)
    );
    s.assert_intact(&second, &want);
}

#[test]
fn a_backup_whose_lock_was_removed_writes_no_snapshot() {
    let s = Setup::new(3);
    let mut repo = Repository::open(Arc::new(s.storage.clone()), b"pw").unwrap();
    repo.set_lock_timing(LockTiming {
        refresh: Duration::from_millis(20),
        stale_after: Duration::from_secs(3600),
    });
    let repo = Arc::new(repo);
    let opts = BackupOptions::new(vec![s.src.clone()]);
    let err = backup::run(
        &repo,
        &opts,
        &hook(|| {
            // `unlock --remove-all` run by someone else, for example
            for l in s.storage.list(ObjectKind::Lock).unwrap() {
                s.storage.remove(ObjectKind::Lock, &l.name).unwrap();
            }
            std::thread::sleep(Duration::from_millis(300));
        }),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert!(s.storage.list(ObjectKind::Snapshot).unwrap().is_empty());
    assert!(s.storage.list(ObjectKind::Index).unwrap().is_empty());
}
