//! Repairing snapshots after a pack is lost: exactly the files that used
//! its data go, everything else restores as it was, and the repository
//! checks clean again.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_core::backup::{self, BackupOptions, NoProgress};
use strata_core::check::{self, CheckOptions};
use strata_core::crypto::KdfParams;
use strata_core::format::pack::BlobKind;
use strata_core::maintenance::repair::{self, snapshots as rs};
use strata_core::repository::Repository;
use strata_core::restore::{self, NoRestoreProgress, RestoreOptions};
use strata_core::storage::{Faults, FaultyStorage, MemoryStorage, ObjectKind, Storage};
use strata_core::{ErrorKind, Id};

struct Setup {
    dir: tempfile::TempDir,
    src: PathBuf,
    mem: MemoryStorage,
    repo: Arc<Repository>,
}

/// A backup of thirty files into many small packs.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    common::tree(&src);
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let mem = MemoryStorage::new();
    let storage = Arc::new(mem.clone());
    let config = common::small_config();
    let repo = Arc::new(Repository::init_with(storage, b"pw", kdf, config).unwrap());
    backup::run(&repo, &BackupOptions::new(vec![src.clone()]), &NoProgress).unwrap();
    Setup {
        dir,
        src,
        mem,
        repo,
    }
}

/// Remove the first data pack storage lists; returns the ids it held.
fn lose_a_data_pack(s: &Setup) -> HashSet<Id> {
    for info in s.mem.list(ObjectKind::Pack).unwrap() {
        let entries = s.repo.read_pack_header(&info.name, info.size).unwrap();
        if entries[0].kind == BlobKind::Data {
            s.mem.remove(ObjectKind::Pack, &info.name).unwrap();
            return entries.iter().map(|e| e.id).collect();
        }
    }
    panic!("no data pack")
}

/// Snapshot paths of the files whose content uses any of `ids`.
fn files_using(repo: &Repository, ids: &HashSet<Id>) -> Vec<PathBuf> {
    let (snaps, _) = repo.snapshots().unwrap();
    let dir = repo.find_node(snaps[0].1.tree, b"src").unwrap().unwrap();
    let mut out: Vec<PathBuf> = repo
        .load_tree(&dir.subtree.unwrap())
        .unwrap()
        .nodes
        .into_iter()
        .filter(|n| n.content.iter().flatten().any(|b| ids.contains(b)))
        .map(|n| Path::new("/src").join(String::from_utf8(n.name).unwrap()))
        .collect();
    out.sort();
    out
}

fn plan_all(repo: &Repository) -> strata_core::Result<rs::RepairPlan> {
    let (snaps, _) = repo.snapshots()?;
    rs::plan(repo, snaps, &rs::RepairOptions::default())
}

fn check_all(repo: &Repository) -> check::CheckReport {
    let opts = CheckOptions {
        read_data: true,
        subset: None,
    };
    check::run(repo, &opts).unwrap()
}

#[test]
fn a_lost_pack_takes_exactly_the_files_that_used_it() {
    let s = setup();
    let lost = lose_a_data_pack(&s);
    let expected = files_using(&s.repo, &lost);
    assert!(!expected.is_empty() && expected.len() < 30, "{expected:?}");

    // While the index still lists the lost pack, repair refuses and says why.
    let err = plan_all(&s.repo).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Missing);
    assert!(err.to_string().contains("repair index"), "{err}");
    repair::rebuild_index(&s.repo).unwrap();

    let plan = plan_all(&s.repo).unwrap();
    let damaged = plan.snapshots[0].id;
    let rs::Outcome::Repaired { tree, removed } = &plan.snapshots[0].outcome else {
        panic!("{:?}", plan.snapshots[0].outcome)
    };
    let mut paths: Vec<PathBuf> = removed.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, expected);

    let done = rs::execute(&s.repo, &plan, false).unwrap();
    let repaired = done.replacements[0].1;
    assert_eq!(s.repo.load_snapshot(&repaired).unwrap().tree, *tree);
    let report = check_all(&s.repo);
    assert_eq!(report.damaged_snapshots, [damaged], "{:?}", report.errors);

    // Repeated with forget: no second replacement, the damaged one goes.
    let done = rs::execute(&s.repo, &plan_all(&s.repo).unwrap(), true).unwrap();
    assert_eq!(done.replacements, [(damaged, repaired)]);
    assert_eq!(done.forgotten, [damaged]);
    let report = check_all(&s.repo);
    assert!(report.ok(), "{:?}", report.errors);

    let target = s.dir.path().join("out");
    let opts = RestoreOptions {
        target: target.clone(),
        ..Default::default()
    };
    restore::run(&s.repo, *tree, &opts, &NoRestoreProgress).unwrap();
    for i in 0..30 {
        let name = format!("f{i}");
        let restored = target.join("src").join(&name);
        if expected.contains(&Path::new("/src").join(&name)) {
            assert!(!restored.exists(), "{name} lost its data");
        } else {
            let want = std::fs::read(s.src.join(&name)).unwrap();
            assert_eq!(std::fs::read(&restored).unwrap(), want, "{name}");
        }
    }
}

#[test]
fn a_storage_failure_stops_the_repair_instead_of_dropping_data() {
    let s = setup();
    let faulty = FaultyStorage::new(
        s.mem.clone(),
        Faults {
            reads_before_failure: Some(0),
            only_kind: Some(ObjectKind::Pack),
            ..Faults::default()
        },
    );
    let repo = Repository::open(faulty, b"pw").unwrap();
    let err = plan_all(&repo).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
}
