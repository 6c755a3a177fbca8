//! Delta storage of streams (format version 2, the default): an hourly
//! dump with rows changed all over costs the changes, every version
//! restores exactly, chains stay bounded, prune keeps what kept versions
//! need, and damage in a base is found.
#![allow(clippy::unwrap_used)]

mod common;

use common::Env;

/// A dump-like text: one line per row, rows of random letters.
struct Table {
    rows: Vec<String>,
    seed: u64,
}

impl Table {
    fn new(rows: usize) -> Table {
        let mut t = Table {
            rows: Vec::new(),
            seed: 0x9e37_79b9,
        };
        t.rows = (0..rows).map(|i| t.row(i)).collect();
        t
    }

    fn next(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    fn row(&mut self, id: usize) -> String {
        let text: String = (0..60)
            .map(|_| (b'a' + (self.next() % 26) as u8) as char)
            .collect();
        format!("INSERT INTO t VALUES ({id},'{text}');\n")
    }

    /// Rewrite `n` rows spread over the table.
    fn change(&mut self, n: usize) {
        for _ in 0..n {
            let i = (self.next() % self.rows.len() as u64) as usize;
            self.rows[i] = self.row(i);
        }
    }

    fn dump(&self) -> Vec<u8> {
        self.rows.concat().into_bytes()
    }
}

/// Back up `data` as the stream `db.sql`: the JSON summary.
fn backup(env: &Env, data: &[u8], file: &std::path::Path) -> serde_json::Value {
    std::fs::write(file, data).unwrap();
    let file = file.to_str().unwrap();
    env.backup(&[
        "--stdin-from-command",
        "--stdin-filename",
        "db.sql",
        "--",
        "cat",
        file,
    ])
}

fn dump_of(env: &Env, snapshot: &str) -> Vec<u8> {
    dump_path(env, snapshot, "db.sql")
}

fn dump_path(env: &Env, snapshot: &str, path: &str) -> Vec<u8> {
    let out = env.cmd().args(["dump", snapshot, path]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn init_deltas(env: &Env) {
    env.init();
}

#[test]
fn an_hourly_dump_costs_its_changes_and_every_version_restores() {
    let env = Env::new();
    init_deltas(&env);
    let file = env.path("dump.sql");
    let mut table = Table::new(80_000);
    let mut versions = Vec::new();
    let mut added = Vec::new();
    // Enough hours for skip deltas to go back 16 versions.
    for hour in 0..20 {
        if hour > 0 {
            table.change(80);
        }
        let data = table.dump();
        let summary = backup(&env, &data, &file);
        added.push(summary["summary"]["data_added_stored"].as_u64().unwrap());
        versions.push((summary["snapshot_id"].as_str().unwrap().to_string(), data));
    }
    // Every hour costs its changes, and no chain restarts with a whole
    // dump: all 19 hours together cost less than one. (An hour where
    // changed rows moved a chunk boundary, merging two chunks, may store
    // that chunk whole: chunk boundaries depend on the random seed.)
    let full = added[0];
    let big = added[1..].iter().filter(|&&a| a * 20 >= full).count();
    assert!(
        big <= 3 && added[1..].iter().sum::<u64>() < full,
        "stored per hour: {added:?}"
    );
    // Chains follow the skip-delta rule: version n decodes popcount(n)
    // deltas at most (4 for these 20), and stats shows the saving.
    let stats = env.json(&["stats"]);
    assert!(stats["longest_chain"].as_u64().unwrap() <= 4, "{stats}");
    assert!(stats["delta_blobs"].as_u64().unwrap() >= 19, "{stats}");
    assert!(
        stats["delta_stored"].as_u64().unwrap() * 50 < stats["delta_size"].as_u64().unwrap(),
        "{stats}"
    );
    for (id, data) in &versions {
        assert!(
            dump_of(&env, id) == *data,
            "snapshot {id} does not restore exactly"
        );
    }
    // Forget the oldest versions, whose chunks are the bases of every
    // chain: what the kept ones need stays.
    let out = env
        .cmd()
        .args(["forget", "--keep-last", "7", "--prune"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (id, data) in &versions[13..] {
        assert!(
            dump_of(&env, id) == *data,
            "snapshot {id} lost data to prune"
        );
    }
    let out = env.cmd().args(["check", "--read-data"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A disk-image-like file: `size` random bytes, `writes` random 4 KiB
/// blocks rewritten between versions.
fn image_versions(size: usize, writes: usize, versions: usize) -> Vec<Vec<u8>> {
    let mut image = common::pseudo_random(size, 7);
    let mut out = vec![image.clone()];
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for v in 1..versions {
        for w in 0..writes {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x as usize % (size / 4096)) * 4096;
            image[at..at + 4096]
                .copy_from_slice(&common::pseudo_random(4096, (v * 1000 + w) as u64));
        }
        out.push(image.clone());
    }
    out
}

/// Back up `dir` with `extra` options; what the backup stored.
fn stored(env: &Env, dir: &std::path::Path, extra: &[&str]) -> (String, u64) {
    let mut args = vec![dir.to_str().unwrap()];
    args.extend(extra);
    let s = env.backup(&args);
    (
        s["snapshot_id"].as_str().unwrap().to_string(),
        s["summary"]["data_added_stored"].as_u64().unwrap(),
    )
}

#[test]
fn a_big_file_written_in_places_is_stored_as_deltas_and_every_version_restores() {
    let env = Env::new();
    init_deltas(&env);
    let dir = env.path("src");
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("disk.img");
    let versions = image_versions(12 << 20, 20, 6);
    let mut snaps = Vec::new();
    let mut added = Vec::new();
    for v in &versions {
        std::fs::write(&image, v).unwrap();
        let (id, a) = stored(&env, &dir, &[]);
        snaps.push(id);
        added.push(a);
    }
    // 20 blocks of 4 KiB changed: far less than the ~12 chunks they touch
    // (12 MiB, incompressible). A write that moves a chunk boundary makes
    // a chunk no old one covers well, stored whole: so the median version
    // is small, and all five together cost less than one whole file.
    let mut later = added[1..].to_vec();
    later.sort_unstable();
    assert!(
        later[2] < 1 << 20 && later.iter().sum::<u64>() < 12 << 20,
        "stored per version: {added:?}"
    );
    for (id, v) in snaps.iter().zip(&versions) {
        let out = env.path(&format!("restore-{id}"));
        env.cmd()
            .args(["restore", id, "--target", out.to_str().unwrap()])
            .assert()
            .success();
        let restored = std::fs::read(out.join("src/disk.img")).unwrap();
        assert!(restored == *v, "snapshot {id} does not restore exactly");
    }
    env.cmd().args(["check", "--read-data"]).assert().success();
}

#[test]
fn delta_off_stores_changed_files_whole_and_a_pattern_forces_deltas_on_small_files() {
    let env = Env::new();
    init_deltas(&env);
    let dir = env.path("src");
    std::fs::create_dir_all(&dir).unwrap();
    let big = image_versions(6 << 20, 4, 3);
    let small = image_versions(2 << 20, 4, 4);
    let write = |i: usize| {
        std::fs::write(dir.join("big.img"), &big[i]).unwrap();
        std::fs::write(dir.join("small.db"), &small[i]).unwrap();
    };
    write(0);
    stored(&env, &dir, &[]);
    // Off: every touched chunk of both files is stored whole.
    write(1);
    let (_, off) = stored(&env, &dir, &["--delta", "off"]);
    assert!(off > 3 << 20, "--delta off stored only {off} bytes");
    // Auto: the big file as deltas, the small one (under 4 MiB) whole.
    write(2);
    let (_, auto) = stored(&env, &dir, &[]);
    assert!(
        auto > 1 << 20 && auto < off,
        "auto stored {auto} bytes, off {off}"
    );
    // A pattern: the small one as deltas too.
    std::fs::write(dir.join("small.db"), &small[3]).unwrap();
    let (_, forced) = stored(&env, &dir, &["--delta-pattern", "*.db"]);
    assert!(
        forced < 1 << 20,
        "with --delta-pattern stored {forced} bytes"
    );
}

#[test]
fn a_repository_without_deltas_stores_whole_chunks() {
    let env = Env::new();
    env.init_with(&["--format-version", "1"]);
    let file = env.path("dump.sql");
    let mut table = Table::new(80_000);
    let first = backup(&env, &table.dump(), &file)["summary"]["data_added_stored"]
        .as_u64()
        .unwrap();
    table.change(80);
    let second = backup(&env, &table.dump(), &file)["summary"]["data_added_stored"]
        .as_u64()
        .unwrap();
    assert!(second * 2 > first, "{second} of {first}");
}

#[test]
fn a_damaged_base_is_found_in_the_versions_built_on_it() {
    let env = Env::new();
    init_deltas(&env);
    let file = env.path("dump.sql");
    let mut table = Table::new(40_000);
    backup(&env, &table.dump(), &file);
    let first_packs = walkdir(&env.repo().join("data"));
    table.change(40);
    backup(&env, &table.dump(), &file);
    // Damage what the first backup wrote: the bases of the second version
    // (whose own deltas and tree are in packs of its own).
    for pack in &first_packs {
        let mut bytes = std::fs::read(pack).unwrap();
        bytes[100] ^= 1;
        std::fs::write(pack, &bytes).unwrap();
    }
    let out = env
        .cmd()
        .args(["dump", "latest", "db.sql"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a version built on a damaged base was read"
    );
    let out = env.cmd().args(["check", "--read-data"]).output().unwrap();
    assert!(!out.status.success());
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

// Found by attacking delta storage (2026-11-30).

/// Two versions stored (the second as deltas), then the packs of the first
/// lost and the index rebuilt from what is left: the second's deltas are
/// listed, their bases are not.
fn lose_the_bases(env: &Env, file: &std::path::Path) -> Vec<u8> {
    init_deltas(env);
    let mut table = Table::new(40_000);
    backup(env, &table.dump(), file);
    let first_packs = walkdir(&env.repo().join("data"));
    table.change(40);
    let second = table.dump();
    backup(env, &second, file);
    for pack in &first_packs {
        std::fs::remove_file(pack).unwrap();
    }
    let out = env.cmd().args(["repair", "index"]).output().unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    second
}

#[test]
fn after_repair_index_a_backup_reused_deltas_whose_base_was_gone() {
    let env = Env::new();
    let file = env.path("dump.sql");
    let second = lose_the_bases(&env, &file);
    // The same data again: it must be stored so that it can be read.
    let summary = backup(&env, &second, &file);
    let id = summary["snapshot_id"].as_str().unwrap().to_string();
    assert!(
        dump_of(&env, &id) == second,
        "the new snapshot cannot be restored"
    );
}

#[test]
fn repair_snapshots_left_deltas_whose_base_was_gone() {
    let env = Env::new();
    let file = env.path("dump.sql");
    lose_the_bases(&env, &file);
    let out = env
        .cmd()
        .args(["repair", "snapshots", "--forget"])
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What is left checks clean and prunes.
    let out = env.cmd().args(["check"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.cmd().args(["prune"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn upgrade_turns_a_format_1_repository_into_one_with_deltas() {
    let env = Env::new();
    env.init_with(&["--format-version", "1"]);
    let file = env.path("dump.sql");
    let mut table = Table::new(40_000);
    let first = table.dump();
    let full = backup(&env, &first, &file)["summary"]["data_added_stored"]
        .as_u64()
        .unwrap();
    let out = env.cmd().arg("upgrade").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("from format version 1 to 2"));
    assert_eq!(env.json(&["cat", "config"])["version"], 2);
    table.change(40);
    let second = table.dump();
    let delta = backup(&env, &second, &file)["summary"]["data_added_stored"]
        .as_u64()
        .unwrap();
    assert!(delta * 20 < full, "after upgrade: {delta} of {full}");
    let again = env.cmd().arg("upgrade").output().unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already"));
    let snaps = env.snapshots();
    assert_eq!(dump_of(&env, snaps[0]["id"].as_str().unwrap()), first);
    assert_eq!(dump_of(&env, snaps[1]["id"].as_str().unwrap()), second);
    env.cmd().args(["check", "--read-data"]).assert().success();
}

/// Random edits at random places, each version a mix of overwrites,
/// insertions and deletions (which shift everything after them): every
/// version of the file restores exactly, before and after a prune that
/// forgot the oldest ones.
#[test]
fn a_file_edited_at_random_places_restores_every_version_exactly() {
    let env = Env::new();
    env.init();
    let dir = env.path("src");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mail.box");
    let mut seed = 0x5eed_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut data = Table::new(60_000).dump();
    let mut versions = Vec::new();
    for v in 0..14 {
        if v > 0 {
            for _ in 0..(next() % 12 + 1) {
                let at = (next() % data.len() as u64) as usize;
                let len = (next() % 3000) as usize + 1;
                let new = common::pseudo_random(len, next());
                match next() % 3 {
                    0 => {
                        let end = (at + len).min(data.len());
                        data.splice(at..end, new);
                    }
                    1 => {
                        data.splice(at..at, new);
                    }
                    _ => {
                        let end = (at + len).min(data.len());
                        data.drain(at..end);
                    }
                }
            }
        }
        std::fs::write(&path, &data).unwrap();
        let summary = env.backup(&[dir.to_str().unwrap(), "--delta-pattern", "*.box"]);
        versions.push((
            summary["snapshot_id"].as_str().unwrap().to_string(),
            data.clone(),
        ));
    }
    let restored = |id: &str| dump_path(&env, id, "src/mail.box");
    for (id, want) in &versions {
        assert!(
            restored(id) == *want,
            "snapshot {id} does not restore exactly"
        );
    }
    let stats = env.json(&["stats"]);
    assert!(stats["delta_blobs"].as_u64().unwrap() > 13, "{stats}");
    env.cmd()
        .args(["forget", "--keep-last", "5", "--prune"])
        .assert()
        .success();
    for (id, want) in &versions[9..] {
        assert!(restored(id) == *want, "snapshot {id} lost data to prune");
    }
    env.cmd().args(["check", "--read-data"]).assert().success();
}

// Found by attacking delta storage, second round (2026-11-30).

/// A blob stored as a delta whose base a prune removed (the delta itself
/// stayed, in a mostly used pack), then stored again whole: every later
/// prune refused ("blobs that snapshots need are in no index") because it
/// counted the base of every copy as needed, although the whole copy
/// needs none, and check, repair index and repair snapshots found nothing
/// to fix.
#[test]
fn prune_refused_for_good_after_a_delta_copy_lost_its_base() {
    let env = Env::new();
    env.init();
    let dir = env.path("in");
    std::fs::create_dir_all(&dir).unwrap();
    let text = |seed: usize, edits: usize| {
        let mut t = Table::new(60_000);
        t.seed ^= seed as u64 * 0x1234_5678;
        t.rows = (0..t.rows.len()).map(|i| t.row(i)).collect();
        t.change(edits);
        t.dump()
    };
    let v0 = Table::new(60_000).dump();
    let mut t1 = Table::new(60_000);
    t1.change(30);
    let v1 = t1.dump();
    let v22 = text(22, 0);
    let v23 = text(22, 30);
    let big = common::pseudo_random(8 << 20, 9);
    let run = |files: &[(&str, &[u8])]| {
        let mut args = Vec::new();
        for (name, data) in files {
            let path = dir.join(name);
            std::fs::write(&path, data).unwrap();
            args.push("--command".to_string());
            args.push(format!("{name}=cat {}", path.display()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.backup(&args);
    };
    run(&[("x.sql", &v0), ("z.bin", b"small")]);
    run(&[("x.sql", &v1), ("z.bin", &big)]);
    run(&[("x.sql", &v22), ("z.bin", &big)]);
    env.cmd()
        .args(["forget", "--keep-last", "1", "--prune"])
        .assert()
        .success();
    run(&[("x.sql", &v23), ("z.bin", &big), ("copy.sql", &v1)]);
    let out = env
        .cmd()
        .args(["forget", "--keep-last", "1", "--prune"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "prune refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let latest = env.snapshots().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(dump_path(&env, &latest, "copy.sql") == v1);
    assert!(dump_path(&env, &latest, "x.sql") == v23);
    env.cmd().args(["check", "--read-data"]).assert().success();
}

/// `cat pack` read every pack with the version 1 header parser: a pack
/// holding a delta was "pack header has a bad version or length".
#[test]
fn cat_pack_called_a_pack_with_deltas_damaged() {
    let env = Env::new();
    env.init();
    let file = env.path("dump.sql");
    let mut table = Table::new(40_000);
    backup(&env, &table.dump(), &file);
    table.change(40);
    backup(&env, &table.dump(), &file);
    let mut bases = 0;
    for pack in walkdir(&env.repo().join("data")) {
        let name = pack.file_name().unwrap().to_str().unwrap().to_string();
        let listed = env.json(&["cat", "pack", &name]);
        bases += listed["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["base"].is_string())
            .count();
    }
    assert!(bases > 0, "no pack lists a delta with its base");
}

/// A directory pattern (`sub/`) in --delta-pattern matched nothing: files
/// were matched alone, not with their directories, unlike --exclude.
#[test]
fn a_directory_delta_pattern_matched_no_file_in_it() {
    let env = Env::new();
    env.init();
    let dir = env.path("src");
    let file = dir.join("sub/x.db");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let versions = image_versions(2 << 20, 4, 2);
    std::fs::write(&file, &versions[0]).unwrap();
    stored(&env, &dir, &["--delta-pattern", "sub/"]);
    std::fs::write(&file, &versions[1]).unwrap();
    let (_, added) = stored(&env, &dir, &["--delta-pattern", "sub/"]);
    assert!(added < 1 << 20, "sub/x.db stored whole: {added} bytes");
}
