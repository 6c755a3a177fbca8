//! `strata prune` and `forget --prune`, alone and beside running backups.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Stdio;

use common::{last_json, pack_bytes, pseudo_random, tree_files, write, Env};
use serde_json::Value;

/// Rewrite `dir` with `n` files drawn from a pool of contents shared by all
/// hosts and rounds, so that backups keep deduplicating against data that
/// forgotten snapshots held, which is what prune must not lose.
fn refill(dir: &Path, rng: &mut u64, n: usize) {
    let _ = fs::remove_dir_all(dir);
    for k in 0..n {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let pick = *rng % 24;
        let size = 30_000 + (pick as usize * 70_919) % 1_500_000;
        write(
            &dir.join(format!("sub{}/f{k}", k % 3)),
            &pseudo_random(size, pick + 1),
        );
    }
    // and something new each time, which takes the backup a while to store
    write(&dir.join("new.bin"), &pseudo_random(4 << 20, *rng));
    // many small files: the walk keeps the backup running (and holding
    // references it took from its index) while prune works
    for k in 0..1500 {
        write(
            &dir.join(format!("many/{}/{k}", k % 10)),
            &pseudo_random(200 + k % 900, *rng + k as u64),
        );
    }
}

fn prune_json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "prune failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    last_json(&out.stdout)
}

#[test]
fn forget_prune_frees_space_and_keeps_what_snapshots_need() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    let mut rng = 7;
    let mut kept = Vec::new();
    for _ in 0..4 {
        refill(&src, &mut rng, 8);
        kept.push(tree_files(&src));
        env.backup(&[src.to_str().unwrap()]);
    }
    let before = pack_bytes(&env.repo());
    let out = env
        .cmd()
        .args(["forget", "--keep-last", "1", "--prune", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("would forget 3 snapshots"), "{text}");
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    assert_eq!(pack_bytes(&env.repo()), before);
    assert_eq!(env.snapshots().len(), 4);

    let out = env
        .cmd()
        .args(["--json", "forget", "--keep-last", "1", "--prune"])
        .args(["--max-unused", "0"])
        .output()
        .unwrap();
    let report = prune_json(&out);
    assert!(report["deleted_packs"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["waiting_packs"], 0);
    assert!(pack_bytes(&env.repo()) < before);
    env.cmd().args(["check", "--read-data"]).assert().success();
    let target = env.path("restored");
    env.cmd()
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .assert()
        .success();
    assert_eq!(tree_files(&target.join("data")), kept[3]);
    // nothing left to do
    let again = prune_json(&env.cmd().args(["--json", "prune"]).output().unwrap());
    assert_eq!(again["deleted_packs"], 0);
    assert_eq!(again["freed_bytes"], 0);
}

#[test]
fn prune_rejects_a_bad_limit() {
    let env = Env::new();
    env.init();
    env.cmd()
        .args(["prune", "--max-unused", "150%"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("between 0% and 100%"));
}

fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: plain kill(2) on our own child, which has not been reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// Backups from two hosts run while the snapshots they use as parents (and
/// deduplicate against) are forgotten and pruned, round after round (every
/// third round's snapshots are kept to the end). Each
/// backup is stopped (SIGSTOP) at a random point for the length of the
/// prune, so prune meets backups at every stage: before their lock, with an
/// index loaded and references taken, with packs written but not indexed,
/// finished. Every snapshot left must restore exactly what it saw.
#[test]
fn prune_beside_concurrent_backups_loses_nothing() {
    let rounds: usize = std::env::var("STRATA_PRUNE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30);
    let env = Env::new();
    env.init();
    let mut rng = 0x5EED_u64;
    let mut expected: HashMap<String, Vec<(String, Vec<u8>)>> = HashMap::new();
    let mut previous: Vec<String> = Vec::new();
    let (mut deleted, mut waited) = (0, 0);
    for round in 0..rounds {
        let mut backups = Vec::new();
        for host in ["a", "b"] {
            let dir = env.path(&format!("{host}/data"));
            if round % 5 == 0 {
                refill(&dir, &mut rng, 8);
            } else {
                // mostly what the parent saw: reused or deduplicated
                let _ = fs::remove_file(dir.join(format!("sub{}/f{}", round % 3, round % 8)));
                write(
                    &dir.join("new.bin"),
                    &pseudo_random(2 << 20, rng + round as u64),
                );
            }
            let child = env
                .std_cmd()
                .args(["backup", "--json", "--host", host])
                .arg(&dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            backups.push((tree_files(&dir), child));
        }
        for (_, child) in &backups {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            std::thread::sleep(std::time::Duration::from_millis(rng % 50));
            signal(child, libc::SIGSTOP);
        }
        if !previous.is_empty() {
            let prune = env
                .std_cmd()
                .args(["--json", "forget"])
                .args(&previous)
                .args(["--prune", "--max-unused", "0"])
                .output()
                .unwrap();
            let report = prune_json(&prune);
            deleted += report["deleted_packs"].as_u64().unwrap();
            waited += report["waiting_packs"].as_u64().unwrap()
                + report["rescued_packs"].as_u64().unwrap();
        }
        for (_, child) in &backups {
            signal(child, libc::SIGCONT);
        }
        previous.clear();
        for (files, child) in backups {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "backup failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let id = last_json(&out.stdout)["snapshot_id"]
                .as_str()
                .unwrap()
                .to_string();
            // every third round's snapshots are kept to the end, the
            // others forgotten by the next round
            if !round.is_multiple_of(3) {
                previous.push(id.clone());
            }
            expected.insert(id, files);
        }
        // before the next round forgets them: every blob of these snapshots
        // is indexed and its pack present
        let check = env.cmd().arg("check").output().unwrap();
        assert!(
            check.status.success(),
            "round {round}: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    // Alone at last: whatever waited for the backups goes now.
    let last = prune_json(
        &env.cmd()
            .args(["--json", "prune", "--max-unused", "0"])
            .output()
            .unwrap(),
    );
    deleted += last["deleted_packs"].as_u64().unwrap();
    assert_eq!(last["waiting_packs"], 0);
    println!("{rounds} rounds: {deleted} packs deleted, {waited} waited or were rescued");
    assert!(deleted > 0, "prune never deleted anything");
    env.cmd().args(["check", "--read-data"]).assert().success();
    let snaps = env.snapshots();
    let kept = 2 * rounds.div_ceil(3) + if (rounds - 1).is_multiple_of(3) { 0 } else { 2 };
    assert_eq!(
        snaps.len(),
        kept,
        "every third round's and the last round's"
    );
    for snap in snaps {
        let id = snap["id"].as_str().unwrap();
        let target = env.path(&format!("restore-{id}"));
        env.cmd()
            .args(["restore", id, "--target"])
            .arg(&target)
            .assert()
            .success();
        assert_eq!(
            tree_files(&target.join("data")),
            expected[id],
            "snapshot {id} does not restore what it saw"
        );
    }
}
