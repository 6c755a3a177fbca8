//! Races found in review, one regression test each: a pack named by two
//! condemned lists, a lock refreshed while prune reads it, a reader that
//! started after a condemnation, a file whose bytes equal a tree.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{random_bytes, small_config, KDF};
use strata_core::backup::{self, BackupOptions, NoProgress, Progress};
use strata_core::check::{self, CheckOptions};
use strata_core::format::condemned::{Condemned, CondemnedPack};
use strata_core::format::{ad, seal_object};
use strata_core::maintenance::prune::{self, PruneOptions, UnusedLimit};
use strata_core::repository::{LockKind, Repository};
use strata_core::storage::{MemoryStorage, ObjectInfo, ObjectKind, ObjectWriter, Storage};
use strata_core::{Id, Result};

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

fn setup(files: u64) -> (tempfile::TempDir, PathBuf, MemoryStorage) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..files {
        std::fs::write(src.join(format!("f{i}")), random_bytes(i + 1, 200_000)).unwrap();
    }
    let storage = MemoryStorage::new();
    Repository::init_with(Arc::new(storage.clone()), b"pw", KDF, small_config()).unwrap();
    (dir, src, storage)
}

fn open(s: &dyn Fn() -> Arc<dyn Storage>) -> Arc<Repository> {
    Arc::new(Repository::open(s(), b"pw").unwrap())
}

fn prune0(repo: &Arc<Repository>) -> prune::PruneReport {
    let opts = PruneOptions {
        max_unused: UnusedLimit::Percent(0.0),
        max_repack_size: None,
    };
    prune::run(repo, &opts, false).unwrap().1
}

fn full_check(repo: &Repository) -> Vec<String> {
    check::run(
        repo,
        &CheckOptions {
            read_data: true,
            subset: None,
        },
    )
    .unwrap()
    .errors
}

/// A prune killed right after its draft (old index files not yet deleted),
/// then a prune beside a running backup: the pack ends up on two lists.
#[test]
fn a_pack_on_two_ready_lists_is_decided_once() {
    let (_d, src, storage) = setup(4);
    let st = storage.clone();
    let mk = move || -> Arc<dyn Storage> { Arc::new(st.clone()) };
    std::thread::sleep(Duration::from_millis(1100));
    let (first, _) = backup::run(
        &open(&mk),
        &BackupOptions::new(vec![src.clone()]),
        &NoProgress,
    )
    .unwrap();
    let (second, _) = backup::run(
        &open(&mk),
        &BackupOptions::new(vec![src.clone()]),
        &hook(|| {
            storage
                .remove(ObjectKind::Snapshot, &first.to_hex())
                .unwrap();
            // prune 1, SIGKILLed right after writing its draft: every pack is
            // condemned (nothing used), no new index (nothing kept), the old
            // index file is still there.
            let repo = open(&mk);
            let mut packs = Vec::new();
            for info in storage.list(ObjectKind::Index).unwrap() {
                for p in repo.read_index_file(&info.name).unwrap().packs {
                    packs.push(CondemnedPack {
                        id: p.id,
                        size: 0,
                        blobs: p.blobs,
                    });
                }
            }
            let draft = Condemned {
                version: 1,
                time: jiff::Timestamp::now(),
                hostname: "killed".into(),
                locks: None,
                packs,
            };
            let sealed = seal_object(repo.key(), ad::CONDEMNED, &draft, 0);
            storage
                .write(
                    ObjectKind::Condemned,
                    &Id::of_object(&sealed).to_hex(),
                    &sealed,
                )
                .unwrap();
            // prune 2 beside this backup
            let r = prune0(&open(&mk));
            assert_eq!(r.sweep.deleted_packs, 0, "{r:?}");
        }),
    )
    .unwrap();
    eprintln!(
        "lists after: {}",
        storage.list(ObjectKind::Condemned).unwrap().len()
    );
    let r = prune::run(
        &open(&mk),
        &PruneOptions {
            max_unused: UnusedLimit::Percent(0.0),
            max_repack_size: None,
        },
        false,
    );
    eprintln!("prune 3 alone: {:?}", r.map(|x| x.1));
    let errors = full_check(&open(&mk));
    assert!(errors.is_empty(), "snapshot {second} damaged: {errors:#?}");
}

/// Storage on which, in every other listing of the locks, the first lock
/// read races with its holder's refresh: between list and read, the lock
/// object is replaced by a new one.
#[derive(Clone)]
struct Refreshing {
    inner: MemoryStorage,
    /// Listings of the locks so far, and the one whose race has happened.
    lists: Arc<std::sync::atomic::AtomicUsize>,
    raced: Arc<std::sync::atomic::AtomicUsize>,
    /// The locks of the other process (whose names move on refresh).
    theirs: Arc<Mutex<std::collections::HashSet<String>>>,
}

impl Storage for Refreshing {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> Result<()> {
        self.inner.create()
    }
    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        if kind == ObjectKind::Lock {
            self.lists.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.list(kind)
    }
    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        let listing = self.lists.load(Ordering::SeqCst);
        let racing = kind == ObjectKind::Lock
            && listing % 2 == 1
            && self.theirs.lock().unwrap().contains(name)
            && self.raced.swap(listing, Ordering::SeqCst) != listing;
        if racing {
            // the holder refreshes: new object first, then the old one goes
            let data = self.inner.read(kind, name)?;
            let new = Id(rand::random()).to_hex();
            self.inner.write(kind, &new, &data)?;
            self.inner.remove(kind, name)?;
            self.theirs.lock().unwrap().insert(new);
        }
        self.inner.read(kind, name)
    }
    fn read_range(&self, kind: ObjectKind, name: &str, o: u64, l: u64) -> Result<Vec<u8>> {
        self.inner.read_range(kind, name, o, l)
    }
    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()> {
        self.inner.write(kind, name, data)
    }
    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        self.inner.remove(kind, name)
    }
    fn create_writer(&self, kind: ObjectKind) -> Result<Box<dyn ObjectWriter>> {
        self.inner.create_writer(kind)
    }
}

#[test]
fn a_lock_refreshed_between_list_and_read_is_still_waited_for() {
    let (_d, src, storage) = setup(4);
    let st = storage.clone();
    let mk = move || -> Arc<dyn Storage> { Arc::new(st.clone()) };
    std::thread::sleep(Duration::from_millis(1100));
    let (first, _) = backup::run(
        &open(&mk),
        &BackupOptions::new(vec![src.clone()]),
        &NoProgress,
    )
    .unwrap();
    let during = Mutex::new(None);
    // The simulated refresh renames the backup's lock behind its back, so
    // the backup itself sees its lock gone and stops: what matters is that
    // the prune beside it still waited for it.
    let result = backup::run(
        &open(&mk),
        &BackupOptions::new(vec![src.clone()]),
        &hook(|| {
            storage
                .remove(ObjectKind::Snapshot, &first.to_hex())
                .unwrap();
            let racy = Refreshing {
                inner: storage.clone(),
                lists: Arc::default(),
                raced: Arc::default(),
                theirs: Arc::new(Mutex::new(
                    storage
                        .list(ObjectKind::Lock)
                        .unwrap()
                        .into_iter()
                        .map(|o| o.name)
                        .collect(),
                )),
            };
            let repo = Arc::new(Repository::open(Arc::new(racy), b"pw").unwrap());
            *during.lock().unwrap() = Some(prune0(&repo));
        }),
    );
    let during = during.into_inner().unwrap().unwrap();
    assert!(during.condemned_packs > 0, "{during:?}");
    assert_eq!(
        during.sweep.deleted_packs, 0,
        "the prune did not wait for the backup: {during:?}"
    );
    if let Err(e) = &result {
        assert_eq!(e.kind(), strata_core::ErrorKind::Locked, "{e}");
    }
    let errors = full_check(&open(&mk));
    assert!(errors.is_empty(), "damage: {errors:#?}");
}

/// A reader that loaded the index after the condemnation (so its lock is on
/// no list) reads a kept snapshot's blob from the condemned pack; another
/// backup stores the blob again; the next sweep deletes the pack.
#[test]
fn a_reader_started_after_condemnation_finds_the_blob_again() {
    let (_d, src, storage) = setup(4);
    let st = storage.clone();
    let mk = move || -> Arc<dyn Storage> { Arc::new(st.clone()) };
    std::thread::sleep(Duration::from_millis(1100));
    let (first, _) = backup::run(
        &open(&mk),
        &BackupOptions::new(vec![src.clone()]),
        &NoProgress,
    )
    .unwrap();
    let (second, snap) = backup::run(
        &open(&mk),
        &BackupOptions::new(vec![src.clone()]),
        &hook(|| {
            storage
                .remove(ObjectKind::Snapshot, &first.to_hex())
                .unwrap();
            prune0(&open(&mk));
        }),
    )
    .unwrap();
    // a restore of the kept snapshot `second` starts: lock, index
    let reader = open(&mk);
    let _lock = reader.lock(LockKind::Shared).unwrap();
    reader.load_index().unwrap();
    let root = reader.load_tree(&snap.tree).unwrap();
    let dir = reader.load_tree(&root.nodes[0].subtree.unwrap()).unwrap();
    let blobs: Vec<Id> = dir
        .nodes
        .iter()
        .flat_map(|n| n.content.clone().unwrap_or_default())
        .collect();
    // meanwhile another host backs up the same data (stores it again) and prunes
    std::thread::sleep(Duration::from_millis(1100));
    let mut o = BackupOptions::new(vec![src.clone()]);
    o.force = true;
    backup::run(&open(&mk), &o, &NoProgress).unwrap();
    let r = prune0(&open(&mk));
    eprintln!("prune after: {r:?}");
    for b in &blobs {
        reader
            .read_blob(b)
            .unwrap_or_else(|e| panic!("restore of kept snapshot {second} fails: {e}"));
    }
}

/// A file whose bytes equal a directory's tree blob has the tree's id as
/// its content: prune's walk then marks the tree used without descending.
#[test]
fn a_file_equal_to_a_tree_does_not_hide_the_subtree_from_prune() {
    let (_d, src, storage) = setup(0);
    let st = storage.clone();
    let mk = move || -> Arc<dyn Storage> { Arc::new(st.clone()) };
    std::fs::create_dir(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/a"), random_bytes(9, 300_000)).unwrap();
    let repo = open(&mk);
    let (first, snap) =
        backup::run(&repo, &BackupOptions::new(vec![src.clone()]), &NoProgress).unwrap();
    repo.load_index().unwrap();
    let root = repo.load_tree(&snap.tree).unwrap();
    let s = repo.load_tree(&root.nodes[0].subtree.unwrap()).unwrap();
    let t = s
        .nodes
        .iter()
        .find(|n| n.name == b"sub")
        .unwrap()
        .subtree
        .unwrap();
    std::fs::write(src.join("zz"), repo.read_blob(&t).unwrap()).unwrap();
    let (second, _) = backup::run(
        &open(&mk),
        &BackupOptions::new(vec![src.clone()]),
        &NoProgress,
    )
    .unwrap();
    storage
        .remove(ObjectKind::Snapshot, &first.to_hex())
        .unwrap();
    let r = prune0(&open(&mk));
    eprintln!("prune: {r:?}");
    let errors = full_check(&open(&mk));
    assert!(errors.is_empty(), "snapshot {second} damaged: {errors:#?}");
}
