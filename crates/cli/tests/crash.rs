//! Crash safety: `strata backup` killed with SIGKILL at random moments must
//! never damage the repository (changed files are stored as deltas where
//! they pay, so killed backups write delta blobs too). After many killed backups, `check
//! --read-data` passes, every snapshot that exists restores exactly the tree
//! it was taken of, and a new backup works.
//!
//! Each backup is tagged with the name of the tree state it saw, so every
//! snapshot, including one whose process finished before the kill, is
//! compared with the manifest (type, mode, mtime, size, content hash,
//! symlink target of every path) recorded when it started.
//!
//! Half of the kills come after a random delay between 0 and the measured
//! duration of a backup. Random delays rarely land in the short window at
//! the end where packs, the index and the snapshot are written, so the
//! other half are aimed: an inotify watch on the repository sees a chosen
//! storage step (a pack, index or snapshot temporary file being created, or
//! renamed into place) and the backup is killed right then.
//!
//! `STRATA_CRASH_ITERATIONS` sets the number of killed backups (default 20),
//! `STRATA_CRASH_SEED` the seed of the tree, the changes and the delays
//! (default: from the clock; it is printed so a run can be repeated);
//! with `STRATA_CRASH_KEEP` set the test directory is kept for inspection.

// Test helpers panic on any unexpected failure; that is their job.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsStr};
use std::fs;
use std::hash::Hasher;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "crash test password";
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// A small seeded PRNG (splitmix64)

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// Text that compresses well but is not all alike.
    fn text(&mut self, len: usize) -> Vec<u8> {
        const WORDS: [&str; 8] = [
            "backup ",
            "strata ",
            "chunk ",
            "pack ",
            "index ",
            "snapshot ",
            "tree ",
            "blob ",
        ];
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            let w = WORDS[self.below(8) as usize];
            out.extend_from_slice(w.as_bytes());
            if self.chance(10) {
                out.extend_from_slice(format!("{}\n", self.below(1000)).as_bytes());
            }
        }
        out.truncate(len);
        out
    }

    fn content(&mut self, len: usize) -> Vec<u8> {
        if self.chance(50) {
            self.bytes(len)
        } else {
            self.text(len)
        }
    }
}

// ---------------------------------------------------------------------------
// Running strata

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    repo: PathBuf,
}

impl Env {
    fn new() -> Env {
        let mut tmp = tempfile::tempdir().unwrap();
        if std::env::var_os("STRATA_CRASH_KEEP").is_some() {
            tmp.disable_cleanup(true);
            println!("keeping {}", tmp.path().display());
        }
        let dir = tmp.path().to_path_buf();
        fs::create_dir(dir.join("home")).unwrap();
        let env = Env {
            repo: dir.join("repo"),
            dir,
            _tmp: tmp,
        };
        env.ok(&["init", "--kdf-memory", "1", "--kdf-iterations", "1"]);
        env
    }

    fn command(&self) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("strata"));
        c.env("HOME", self.dir.join("home"))
            .env("STRATA_PASSWORD", PASSWORD)
            .env_remove("STRATA_REPOSITORY")
            .env_remove("STRATA_PASSWORD_FILE")
            .env_remove("STRATA_PASSWORD_COMMAND")
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .arg("-r")
            .arg(&self.repo)
            .stdin(Stdio::null());
        c
    }

    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.command().args(args).output().unwrap()
    }

    fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "strata {:?} failed ({})\nstdout:\n{}\nstderr:\n{}",
            args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn backup_args<'a>(&self, src: &'a Path, tag: &'a str) -> Vec<&'a OsStr> {
        vec![
            OsStr::new("-q"),
            OsStr::new("backup"),
            OsStr::new("--tag"),
            OsStr::new(tag),
            // Every changed file stored with deltas where they pay: killed
            // backups write delta blobs too.
            OsStr::new("--delta-pattern"),
            OsStr::new("*"),
            src.as_os_str(),
        ]
    }

    /// `restore SNAPSHOT --target DIR --verify`, requiring success.
    fn restore_verified(&self, snapshot: &str, target: &Path) {
        let out = self.ok(&[
            OsStr::new("--json"),
            OsStr::new("restore"),
            OsStr::new(snapshot),
            OsStr::new("--target"),
            target.as_os_str(),
            OsStr::new("--verify"),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message_type"] == "summary")
            .unwrap_or_else(|| panic!("no restore summary in:\n{stdout}"));
        assert_eq!(
            (&summary["verify_failures"], &summary["warnings"]),
            (&serde_json::json!(0), &serde_json::json!(0)),
            "restore of {snapshot}: {summary}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------
// The tree and its manifest

#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Dir {
        mode: u32,
        mtime: (i64, i64),
    },
    File {
        mode: u32,
        mtime: (i64, i64),
        size: u64,
        hash: u64,
    },
    Symlink {
        target: Vec<u8>,
        mtime: (i64, i64),
    },
}

/// Every path under a root (relative, the root itself is "") and what it is.
type Manifest = BTreeMap<PathBuf, Item>;

fn hash_file(path: &Path) -> u64 {
    // SipHash with fixed keys: stable within a process, which is all we need.
    let mut h = std::hash::DefaultHasher::new();
    let mut f = fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 256 * KIB];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
    }
    h.finish()
}

fn manifest(root: &Path) -> Manifest {
    let mut out = Manifest::new();
    walk(root, PathBuf::new(), &mut out);
    out
}

fn walk(path: &Path, rel: PathBuf, out: &mut Manifest) {
    let m = fs::symlink_metadata(path).unwrap();
    let mode = m.mode() & 0o7777;
    let mtime = (m.mtime(), m.mtime_nsec());
    let ft = m.file_type();
    if ft.is_dir() {
        out.insert(rel.clone(), Item::Dir { mode, mtime });
        let mut names: Vec<_> = fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            walk(&path.join(&n), rel.join(&n), out);
        }
    } else if ft.is_symlink() {
        let target = fs::read_link(path).unwrap().as_os_str().as_bytes().to_vec();
        out.insert(rel, Item::Symlink { target, mtime });
    } else {
        assert!(ft.is_file(), "unexpected file type at {}", path.display());
        out.insert(
            rel,
            Item::File {
                mode,
                mtime,
                size: m.size(),
                hash: hash_file(path),
            },
        );
    }
}

fn differences(want: &Manifest, got: &Manifest) -> Vec<String> {
    let mut out = Vec::new();
    for (k, w) in want {
        match got.get(k) {
            None => out.push(format!("{}: missing", k.display())),
            Some(g) if g != w => {
                out.push(format!("{}: expected {w:?}, restored {g:?}", k.display()))
            }
            _ => {}
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        out.push(format!("{}: not expected", k.display()));
    }
    out
}

fn assert_restores_as(env: &Env, snapshot: &str, want: &Manifest, what: &str) {
    let target = env.dir.join(format!("restore-{snapshot}"));
    env.restore_verified(snapshot, &target);
    let got = manifest(&target.join("src"));
    let diff = differences(want, &got);
    assert!(
        diff.is_empty(),
        "{what}: snapshot {snapshot} restored with {} differences:\n  {}",
        diff.len(),
        diff.join("\n  ")
    );
    fs::remove_dir_all(&target).unwrap();
}

struct Tree {
    root: PathBuf,
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
    next: u64,
}

impl Tree {
    /// A few hundred files in nested directories: some of several MiB,
    /// many small ones, random (incompressible) and text (compressible).
    fn build(root: &Path, rng: &mut Rng) -> Tree {
        let mut t = Tree {
            root: root.to_path_buf(),
            dirs: vec![PathBuf::new()],
            files: Vec::new(),
            next: 0,
        };
        fs::create_dir(root).unwrap();
        for i in 0..16 {
            let parent = t.dirs[rng.below(t.dirs.len() as u64) as usize].clone();
            let d = parent.join(format!("dir{i}"));
            fs::create_dir(root.join(&d)).unwrap();
            t.dirs.push(d);
        }
        fs::create_dir(root.join("empty-dir")).unwrap();
        std::os::unix::fs::symlink("dir0", root.join("link-to-dir0")).unwrap();
        std::os::unix::fs::symlink("nowhere", root.join("dangling")).unwrap();
        for _ in 0..30 {
            let size = rng.range(2 * MIB, 6 * MIB);
            t.new_file(rng, size);
        }
        for _ in 0..60 {
            let size = rng.range(64 * KIB, 512 * KIB);
            t.new_file(rng, size);
        }
        for _ in 0..200 {
            let size = rng.range(0, 24 * KIB);
            t.new_file(rng, size);
        }
        t
    }

    fn new_file(&mut self, rng: &mut Rng, size: usize) {
        let dir = self.dirs[rng.below(self.dirs.len() as u64) as usize].clone();
        let rel = dir.join(format!("file{}", self.next));
        self.next += 1;
        fs::write(self.root.join(&rel), rng.content(size)).unwrap();
        if rng.chance(10) {
            let mode = [0o600, 0o640, 0o444, 0o755][rng.below(4) as usize];
            fs::set_permissions(self.root.join(&rel), fs::Permissions::from_mode(mode)).unwrap();
        }
        self.files.push(rel);
    }

    fn pick(&self, rng: &mut Rng) -> PathBuf {
        self.root
            .join(&self.files[rng.below(self.files.len() as u64) as usize])
    }

    /// Change the tree the way a day of work does: rewrite some big files,
    /// edit and grow others, add and delete a few, touch one.
    fn modify(&mut self, rng: &mut Rng) {
        for _ in 0..3 {
            let size = rng.range(2 * MIB, 6 * MIB);
            let p = self.pick(rng);
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
            fs::write(&p, rng.bytes(size)).unwrap();
        }
        for _ in 0..12 {
            let p = self.pick(rng);
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
            let mut data = fs::read(&p).unwrap();
            if data.is_empty() || rng.chance(30) {
                let extra = rng.range(1, 64 * KIB);
                data.extend(rng.content(extra));
            } else {
                let at = rng.below(data.len() as u64) as usize;
                let len = rng.range(1, 16 * KIB).min(data.len() - at);
                data[at..at + len].copy_from_slice(&rng.bytes(len));
            }
            fs::write(&p, data).unwrap();
        }
        for _ in 0..3 {
            let size = rng.range(0, 256 * KIB);
            self.new_file(rng, size);
        }
        for _ in 0..2 {
            let i = rng.below(self.files.len() as u64) as usize;
            let rel = self.files.swap_remove(i);
            fs::remove_file(self.root.join(rel)).unwrap();
        }
        // Same content, new mtime.
        let p = self.pick(rng);
        let f = fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(std::time::SystemTime::now()).unwrap();
    }
}

// ---------------------------------------------------------------------------
// Watching the repository's storage steps (inotify)

/// A storage step of a backup, as seen in the repository directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// A file was created (strata's `.tmp-*` file): an object is being written.
    Writing(&'static str),
    /// A file was renamed into place (or, for a writer that does not
    /// rename, a file other than a `.tmp-*` one was closed): an object is stored.
    Stored(&'static str),
}

/// The steps aimed at, with how many must be seen before the kill.
const TARGETS: [(Step, usize); 8] = [
    (Step::Writing("pack"), 1),
    (Step::Stored("pack"), 1),
    (Step::Writing("pack"), 2),
    (Step::Stored("pack"), 2),
    (Step::Writing("index"), 1),
    (Step::Stored("index"), 1),
    (Step::Writing("snapshot"), 1),
    (Step::Stored("snapshot"), 1),
];

struct Watcher {
    fd: libc::c_int,
    dirs: HashMap<libc::c_int, &'static str>,
}

impl Watcher {
    fn new(repo: &Path) -> Watcher {
        // SAFETY: plain system call.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(
            fd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        let mut w = Watcher {
            fd,
            dirs: HashMap::new(),
        };
        w.add(&repo.join("index"), "index");
        w.add(&repo.join("snapshots"), "snapshot");
        for i in 0..=255u8 {
            w.add(&repo.join("data").join(format!("{i:02x}")), "pack");
        }
        w
    }

    fn add(&mut self, dir: &Path, kind: &'static str) {
        let c = CString::new(dir.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C string.
        let wd = unsafe {
            libc::inotify_add_watch(
                self.fd,
                c.as_ptr(),
                libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE,
            )
        };
        assert!(
            wd >= 0,
            "inotify_add_watch {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
        self.dirs.insert(wd, kind);
    }

    /// The steps seen within `timeout_ms`, in order (empty on timeout).
    fn steps(&self, timeout_ms: libc::c_int) -> Vec<Step> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, timeout_ms) } <= 0 {
            return Vec::new();
        }
        let mut buf = vec![0u8; 64 * KIB];
        // SAFETY: the buffer has buf.len() writable bytes.
        let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return Vec::new();
        }
        let head = std::mem::size_of::<libc::inotify_event>();
        let (mut off, mut out) = (0, Vec::new());
        while off + head <= n as usize {
            // SAFETY: the kernel wrote a whole event header at `off`.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off).cast()) };
            let name = &buf[off + head..off + head + ev.len as usize];
            off += head + ev.len as usize;
            let Some(&kind) = self.dirs.get(&ev.wd) else {
                continue;
            };
            let tmp = name.starts_with(b".tmp-");
            if ev.mask & libc::IN_CREATE != 0 {
                out.push(Step::Writing(kind));
            } else if ev.mask & libc::IN_MOVED_TO != 0
                || (ev.mask & libc::IN_CLOSE_WRITE != 0 && !tmp)
            {
                out.push(Step::Stored(kind));
            }
        }
        out
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // SAFETY: our descriptor, closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// Wait until `step` has been seen `count` times or the child exits.
/// Returns whether the step was seen.
fn wait_for_step(
    watcher: &Watcher,
    child: &mut std::process::Child,
    step: Step,
    count: usize,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut seen = 0;
    while Instant::now() < deadline {
        seen += watcher.steps(2).iter().filter(|s| **s == step).count();
        if seen >= count {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
    }
    panic!("backup still running after {timeout:?} without reaching {step:?}");
}

// ---------------------------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

#[test]
fn killed_backups_never_damage_the_repository() {
    let started = Instant::now();
    let iterations = env_u64("STRATA_CRASH_ITERATIONS").unwrap_or(20);
    let seed = env_u64("STRATA_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    println!("crash test: seed {seed} (STRATA_CRASH_SEED), {iterations} killed backups");
    let mut rng = Rng(seed);
    let env = Env::new();
    let src = env.dir.join("src");
    let mut tree = Tree::build(&src, &mut rng);
    let mut states: BTreeMap<String, Manifest> = BTreeMap::new();

    // One good snapshot first.
    let base = manifest(&src);
    let bytes: u64 = base
        .values()
        .map(|i| match i {
            Item::File { size, .. } => *size,
            _ => 0,
        })
        .sum();
    let t = Instant::now();
    env.ok(&env.backup_args(&src, "base"));
    println!(
        "first backup: {} entries, {:.1} MiB in {:.2}s",
        base.len(),
        bytes as f64 / MIB as f64,
        t.elapsed().as_secs_f64()
    );
    states.insert("base".into(), base);

    // An incremental backup that is not killed tells how long one takes.
    tree.modify(&mut rng);
    states.insert("calibration".into(), manifest(&src));
    let t = Instant::now();
    env.ok(&env.backup_args(&src, "calibration"));
    // Killed backups leave no snapshot, so the next one compares with an
    // older parent and has more to do: the estimate follows what the aimed
    // kills observe.
    let mut typical = t.elapsed();
    println!("incremental backup takes {:.2}s", typical.as_secs_f64());

    let mut killed = 0;
    let mut finished: Vec<String> = Vec::new();
    let loop_started = Instant::now();
    for i in 0..iterations {
        tree.modify(&mut rng);
        let tag = format!("iteration-{i}");
        states.insert(tag.clone(), manifest(&src));
        let aimed = (i % 2 == 1).then(|| TARGETS[rng.below(TARGETS.len() as u64) as usize]);
        let delay = Duration::from_micros(rng.below(typical.as_micros() as u64 + 1));
        let watcher = Watcher::new(&env.repo);
        let spawned = Instant::now();
        let mut child = env
            .command()
            .args(env.backup_args(&src, &tag))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let plan = match aimed {
            None => {
                std::thread::sleep(delay);
                format!(
                    "after {:.3}s of about {:.3}s",
                    delay.as_secs_f64(),
                    typical.as_secs_f64()
                )
            }
            Some((step, count)) => {
                let timeout = typical * 20 + Duration::from_secs(10);
                let hit = wait_for_step(&watcher, &mut child, step, count, timeout);
                let at = spawned.elapsed();
                match step {
                    _ if !hit => typical = at,
                    Step::Stored("snapshot") | Step::Writing("snapshot") => typical = at,
                    _ => typical = typical.max(at),
                }
                format!(
                    "at {step:?} #{count}{} ({:.3}s)",
                    if hit { "" } else { " (never came)" },
                    spawned.elapsed().as_secs_f64()
                )
            }
        };
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        match (status.signal(), status.code()) {
            (Some(libc::SIGKILL), _) => killed += 1,
            (_, Some(0)) => {
                typical = spawned.elapsed();
                finished.push(tag.clone())
            }
            _ => panic!("backup {i} failed by itself: {status}"),
        }
        println!("iteration {i}: kill {plan}: {status}");
    }
    println!(
        "loop of {iterations} took {:.1}s",
        loop_started.elapsed().as_secs_f64()
    );
    println!(
        "{killed} backups killed, {} finished before the kill",
        finished.len()
    );
    assert!(
        killed > 0,
        "no backup was interrupted: the test did not test anything"
    );

    // The repository is sound.
    let t = Instant::now();
    let out = env.ok(&["--json", "check", "--read-data"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    println!(
        "check --read-data: ok in {:.1}s, {} packs, warnings: {:#}",
        t.elapsed().as_secs_f64(),
        report["packs"],
        report["warnings"]
    );
    let t = Instant::now();

    // Every snapshot restores exactly the tree it was taken of.
    let out = env.ok(&["--json", "snapshots"]);
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut seen_tags = Vec::new();
    for s in &snaps {
        let id = s["short_id"].as_str().unwrap();
        assert_eq!(s["partial"], false, "snapshot {id} is partial: {s}");
        let tags = s["tags"].as_array().unwrap();
        assert_eq!(tags.len(), 1, "snapshot {id}: {s}");
        let tag = tags[0].as_str().unwrap().to_string();
        let want = states
            .get(&tag)
            .unwrap_or_else(|| panic!("snapshot {id} has unknown tag {tag}"));
        assert_restores_as(&env, id, want, &tag);
        seen_tags.push(tag);
    }
    seen_tags.sort();
    let before = seen_tags.len();
    seen_tags.dedup();
    assert_eq!(before, seen_tags.len(), "a backup saved two snapshots");
    assert!(seen_tags.contains(&"base".to_string()));
    assert!(seen_tags.contains(&"calibration".to_string()));
    for tag in &finished {
        assert!(
            seen_tags.contains(tag),
            "backup {tag} exited 0 but its snapshot is missing: {seen_tags:?}"
        );
    }
    println!(
        "{} snapshots restored and verified in {:.1}s: {seen_tags:?}",
        seen_tags.len(),
        t.elapsed().as_secs_f64()
    );

    // A new backup works and restores the tree as it is now.
    tree.modify(&mut rng);
    let now = manifest(&src);
    let out = env.ok(&[
        OsStr::new("--json"),
        OsStr::new("backup"),
        OsStr::new("--tag"),
        OsStr::new("final"),
        src.as_os_str(),
    ]);
    let summary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .unwrap();
    let id = summary["short_id"].as_str().unwrap().to_string();
    assert_restores_as(&env, &id, &now, "final");
    env.ok(&["check"]);
    println!("done in {:.1}s", started.elapsed().as_secs_f64());
}
