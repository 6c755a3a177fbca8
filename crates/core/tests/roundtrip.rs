//! Property tests: random trees and random edits, backed up snapshot after
//! snapshot; every snapshot must restore to exactly the tree it was taken of.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use strata_core::backup::{self, BackupOptions, NoProgress};
use strata_core::crypto::KdfParams;
use strata_core::repository::Repository;
use strata_core::restore::{self, NoRestoreProgress, RestoreOptions};
use strata_core::storage::MemoryStorage;

/// A tree as relative path → contents (`None` for a directory).
type Model = BTreeMap<String, Option<Vec<u8>>>;

#[derive(Debug, Clone)]
enum Edit {
    Write { file: usize, data: Vec<u8> },
    Append { file: usize, data: Vec<u8> },
    Delete { file: usize },
    Add { name: String, data: Vec<u8> },
}

fn contents() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2000),
        // larger, repetitive content spanning several chunks of the test chunker
        (any::<u8>(), 1usize..40).prop_map(|(b, n)| (0..n * 5000)
            .map(|i| b.wrapping_add((i / 7) as u8))
            .collect()),
    ]
}

fn name() -> impl Strategy<Value = String> {
    "[a-z]{1,6}"
}

fn model() -> impl Strategy<Value = Model> {
    prop::collection::vec((prop::collection::vec(name(), 1..4), contents()), 1..25).prop_map(
        |files| {
            let mut m = Model::new();
            for (parts, data) in files {
                let path = parts.join("/");
                // skip paths that would put a file where a directory is, or the reverse
                let clash = m.keys().any(|k| {
                    k.starts_with(&format!("{path}/")) || path.starts_with(&format!("{k}/"))
                });
                if !clash {
                    m.insert(path, Some(data));
                }
            }
            m
        },
    )
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), contents()).prop_map(|(file, data)| Edit::Write { file, data }),
            (any::<usize>(), contents()).prop_map(|(file, data)| Edit::Append { file, data }),
            any::<usize>().prop_map(|file| Edit::Delete { file }),
            (name(), contents()).prop_map(|(name, data)| Edit::Add {
                name: format!("new-{name}"),
                data
            }),
        ],
        1..8,
    )
}

fn apply(m: &mut Model, edit: &Edit) {
    let files: Vec<String> = m
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.clone())
        .collect();
    let pick = |i: &usize| files.get(i % files.len().max(1)).cloned();
    match edit {
        Edit::Write { file, data } => {
            if let Some(f) = pick(file) {
                m.insert(f, Some(data.clone()));
            }
        }
        Edit::Append { file, data } => {
            if let Some(f) = pick(file) {
                if let Some(Some(old)) = m.get_mut(&f) {
                    old.extend_from_slice(data);
                }
            }
        }
        Edit::Delete { file } => {
            if let Some(f) = pick(file) {
                m.remove(&f);
            }
        }
        Edit::Add { name, data } => {
            if !m.contains_key(name) {
                m.insert(name.clone(), Some(data.clone()));
            }
        }
    }
}

fn materialize(root: &Path, m: &Model) {
    if root.exists() {
        fs::remove_dir_all(root).unwrap();
    }
    fs::create_dir_all(root).unwrap();
    for (path, data) in m {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        if let Some(d) = data {
            fs::write(&p, d).unwrap();
        }
    }
}

fn read_back(root: &Path) -> Model {
    let mut m = Model::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                m.insert(rel, Some(fs::read(&p).unwrap()));
            }
        }
    }
    m
}

fn files_only(m: &Model) -> Model {
    m.iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_snapshot_restores_its_tree(start in model(), rounds in prop::collection::vec(edits(), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let storage = Arc::new(MemoryStorage::new());
        let kdf = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };
        let repo = Arc::new(Repository::init(storage, b"pw", kdf).unwrap());

        let mut model = start;
        let mut history = Vec::new();
        for round in std::iter::once(Vec::new()).chain(rounds) {
            for e in &round {
                apply(&mut model, e);
            }
            materialize(&src, &model);
            let (_, snap) = backup::run(&repo, &BackupOptions::new(vec![src.clone()]), &NoProgress).unwrap();
            prop_assert!(!snap.partial);
            history.push((snap.tree, files_only(&model)));
        }
        for (i, (tree, expected)) in history.iter().enumerate() {
            let target = dir.path().join(format!("restore-{i}"));
            let opts = RestoreOptions { target: target.clone(), verify: true, ..RestoreOptions::default() };
            let summary = restore::run(&repo, *tree, &opts, &NoRestoreProgress).unwrap();
            prop_assert_eq!(summary.verify_failures, 0);
            prop_assert_eq!(&read_back(&target.join("src")), expected, "snapshot {}", i);
        }
        let report = strata_core::check::run(&repo, &strata_core::check::CheckOptions { read_data: true, subset: None }).unwrap();
        prop_assert!(report.ok(), "{:?}", report.errors);
    }
}
