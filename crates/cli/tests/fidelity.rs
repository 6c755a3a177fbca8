//! Restore fidelity: back up a tree holding every kind of entry and every
//! piece of metadata strata promises to keep, restore it, and compare the
//! result with the source through an independent walk written here (lstat,
//! `O_NOATIME` reads, `llistxattr`), not strata's own walk code.
//!
//! Access times are fragile: reading a directory, a file or a symlink
//! updates its atime (`relatime` updates it whenever it is older than a day).
//! So the source's metadata is captured with lstat and `O_NOATIME` listings
//! only, *before* the backup (which reads directories and symlinks after it
//! has stat'ed them); file contents and link targets of the source are read
//! after the backup. In a restored tree each entry is lstat'ed before it is
//! read.

// Test helpers panic on any unexpected failure; that is their job.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CStr, CString, OsStr};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

const PASSWORD: &str = "fidelity test password";
const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------
// Running strata

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    repo: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
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

    fn strata(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::cargo_bin("strata").unwrap();
        c.env("HOME", self.dir.join("home"))
            .env("STRATA_PASSWORD", PASSWORD)
            .env_remove("STRATA_REPOSITORY")
            .env_remove("STRATA_PASSWORD_FILE")
            .env_remove("STRATA_PASSWORD_COMMAND")
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .arg("-r")
            .arg(&self.repo);
        c
    }

    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.strata().args(args).output().unwrap()
    }

    /// Run and require exit status 0.
    fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "strata {:?} failed\nstdout:\n{}\nstderr:\n{}",
            args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn backup(&self, path: &Path) {
        self.ok(&[OsStr::new("backup"), path.as_os_str()]);
    }

    /// `restore --json ARGS`; requires exit 0 and no warnings, returns the summary.
    fn restore<S: AsRef<OsStr>>(&self, args: &[S]) -> serde_json::Value {
        let mut all: Vec<&OsStr> = vec![OsStr::new("--json"), OsStr::new("restore")];
        all.extend(args.iter().map(|a| a.as_ref()));
        let out = self.ok(&all);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary: serde_json::Value = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message_type"] == "summary")
            .unwrap_or_else(|| panic!("no summary in restore output:\n{stdout}"));
        assert_eq!(
            summary["warnings"],
            0,
            "restore {all:?} printed warnings:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        summary
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------
// Small system helpers (libc where std has nothing)

fn cpath(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

fn errno_result(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Set atime and mtime (seconds, nanoseconds) without following symlinks.
fn set_times(path: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let c = cpath(path);
    let ts = [
        libc::timespec {
            tv_sec: atime.0 as libc::time_t,
            tv_nsec: atime.1 as _,
        },
        libc::timespec {
            tv_sec: mtime.0 as libc::time_t,
            tv_nsec: mtime.1 as _,
        },
    ];
    // SAFETY: valid C string and a two-element timespec array.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    errno_result(r).unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let c = cpath(path);
    let n = CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    errno_result(r).unwrap_or_else(|e| panic!("lsetxattr {} {name}: {e}", path.display()));
}

/// The `user.*` extended attributes of `path` (not following symlinks).
fn user_xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let c = cpath(path);
    let mut out = BTreeMap::new();
    // SAFETY: a null buffer of size 0 asks for the needed size.
    let n = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOTSUP) {
            return out;
        }
        panic!("llistxattr {}: {e}", path.display());
    }
    let mut names = vec![0u8; n as usize];
    // SAFETY: the buffer has names.len() writable bytes.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "llistxattr {}", path.display());
    names.truncate(n as usize);
    for name in names.split(|&b| b == 0).filter(|n| n.starts_with(b"user.")) {
        let cn = CString::new(name).unwrap();
        // SAFETY: size query with a null buffer.
        let len = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), std::ptr::null_mut(), 0) };
        assert!(len >= 0, "lgetxattr {}", path.display());
        let mut value = vec![0u8; len as usize];
        // SAFETY: the buffer has value.len() writable bytes.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cn.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        assert!(len >= 0, "lgetxattr {}", path.display());
        value.truncate(len as usize);
        out.insert(name.to_vec(), value);
    }
    out
}

/// Open for reading without updating atime (falls back when not allowed).
fn open_noatime(path: &Path, extra: libc::c_int) -> io::Result<fs::File> {
    let open = |flags| {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags | extra | libc::O_NOFOLLOW)
            .open(path)
    };
    match open(libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0),
        other => other,
    }
}

/// The names in a directory, read without touching its atime.
fn list_dir(path: &Path) -> Vec<Vec<u8>> {
    use std::os::fd::IntoRawFd;
    let fd = open_noatime(path, libc::O_DIRECTORY)
        .unwrap_or_else(|e| panic!("open dir {}: {e}", path.display()))
        .into_raw_fd();
    // SAFETY: fd is an open directory descriptor that fdopendir takes over.
    let dir = unsafe { libc::fdopendir(fd) };
    assert!(!dir.is_null(), "fdopendir {}", path.display());
    let mut names = Vec::new();
    loop {
        // SAFETY: dir is a valid DIR*; the entry is read before the next call.
        let ent = unsafe { libc::readdir(dir) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    // SAFETY: dir is valid and not used afterwards.
    unsafe { libc::closedir(dir) };
    names.sort();
    names
}

fn read_noatime(path: &Path) -> Vec<u8> {
    let mut f = open_noatime(path, 0).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    v
}

fn show(p: &[u8]) -> String {
    if p.is_empty() {
        "<root>".into()
    } else {
        p.escape_ascii().to_string()
    }
}

/// Deterministic pseudo-random bytes (splitmix64).
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------
// The independent walk

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Char,
    Block,
    Socket,
}

#[derive(Clone, Debug)]
struct Entry {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    atime: (i64, i64),
    dev: u64,
    ino: u64,
    blocks: u64,
    rdev: u64,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    target: Option<Vec<u8>>,
    content: Option<Vec<u8>>,
}

/// Every entry under (and including) a root, by path relative to it as raw
/// bytes (the root is the empty path).
type Scan = BTreeMap<Vec<u8>, Entry>;

fn scan(root: &Path, read_data: bool) -> Scan {
    let mut out = Scan::new();
    scan_into(root, Vec::new(), read_data, &mut out);
    out
}

fn scan_into(path: &Path, rel: Vec<u8>, read_data: bool, out: &mut Scan) {
    // lstat first, before anything reads the entry.
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    let ft = m.file_type();
    let kind = if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_char_device() {
        Kind::Char
    } else if ft.is_block_device() {
        Kind::Block
    } else if ft.is_socket() {
        Kind::Socket
    } else {
        assert!(ft.is_file());
        Kind::File
    };
    let mut e = Entry {
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        atime: (m.atime(), m.atime_nsec()),
        dev: m.dev(),
        ino: m.ino(),
        blocks: m.blocks(),
        rdev: m.rdev(),
        xattrs: user_xattrs(path),
        target: None,
        content: None,
    };
    match kind {
        Kind::File if read_data => e.content = Some(read_noatime(path)),
        Kind::Symlink if read_data => {
            e.target = Some(fs::read_link(path).unwrap().as_os_str().as_bytes().to_vec())
        }
        _ => {}
    }
    let children = (kind == Kind::Dir).then(|| list_dir(path));
    out.insert(rel.clone(), e);
    for name in children.into_iter().flatten() {
        let mut child = rel.clone();
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(&name);
        scan_into(&path.join(OsStr::from_bytes(&name)), child, read_data, out);
    }
}

/// Metadata from `meta` (taken before the backup), contents and link
/// targets from `data` (taken after it).
fn merge(meta: Scan, data: Scan) -> Scan {
    assert_eq!(
        meta.keys().collect::<Vec<_>>(),
        data.keys().collect::<Vec<_>>(),
        "the source changed during the backup"
    );
    meta.into_iter()
        .map(|(k, mut e)| {
            let d = &data[&k];
            e.content = d.content.clone();
            e.target = d.target.clone();
            (k, e)
        })
        .collect()
}

/// The entries at and below `prefix`, with paths relative to it.
fn subtree(scan: &Scan, prefix: &[u8]) -> Scan {
    let mut out = Scan::new();
    for (k, e) in scan {
        if k == prefix {
            out.insert(Vec::new(), e.clone());
        } else if k.len() > prefix.len() + 1 && k.starts_with(prefix) && k[prefix.len()] == b'/' {
            out.insert(k[prefix.len() + 1..].to_vec(), e.clone());
        }
    }
    out
}

fn describe_content_difference(a: &[u8], b: &[u8]) -> String {
    let first = a.iter().zip(b).position(|(x, y)| x != y);
    format!(
        "content differs: source {} bytes, restored {} bytes, first difference at {}",
        a.len(),
        b.len(),
        first.map_or("the end of the shorter".to_string(), |i| format!(
            "offset {i}"
        ))
    )
}

fn show_xattrs(x: &BTreeMap<Vec<u8>, Vec<u8>>) -> String {
    let items: Vec<String> = x
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", k.escape_ascii(), v.escape_ascii()))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// Every difference between a source entry and its restored copy.
fn compare_entry(label: &str, s: &Entry, r: &Entry, problems: &mut Vec<String>) {
    let mut diff = |what: &str, src: String, got: String| {
        if src != got {
            problems.push(format!("{label}: {what}: source {src}, restored {got}"));
        }
    };
    diff("type", format!("{:?}", s.kind), format!("{:?}", r.kind));
    if s.kind != r.kind {
        return;
    }
    diff("mode", format!("{:04o}", s.mode), format!("{:04o}", r.mode));
    diff("uid", s.uid.to_string(), r.uid.to_string());
    diff("gid", s.gid.to_string(), r.gid.to_string());
    diff("mtime", format!("{:?}", s.mtime), format!("{:?}", r.mtime));
    diff("atime", format!("{:?}", s.atime), format!("{:?}", r.atime));
    diff("xattrs", show_xattrs(&s.xattrs), show_xattrs(&r.xattrs));
    match s.kind {
        Kind::File => {
            diff("size", s.size.to_string(), r.size.to_string());
            let (sc, rc) = (s.content.as_ref().unwrap(), r.content.as_ref().unwrap());
            if sc != rc {
                problems.push(format!("{label}: {}", describe_content_difference(sc, rc)));
            }
            // A sparse source must give a sparse copy: holes stay holes (a
            // little slack for allocation differences, none for filling).
            if s.blocks * 512 < s.size / 2 && r.blocks * 512 > s.blocks * 512 * 2 + 256 * 1024 {
                problems.push(format!(
                    "{label}: sparse file was filled in: source {} blocks, restored {} blocks for {} bytes",
                    s.blocks, r.blocks, s.size
                ));
            }
        }
        Kind::Symlink => diff(
            "symlink target",
            show(s.target.as_ref().unwrap()),
            show(r.target.as_ref().unwrap()),
        ),
        Kind::Char | Kind::Block => {
            diff("rdev", format!("{:#x}", s.rdev), format!("{:#x}", r.rdev))
        }
        _ => {}
    }
}

/// Which paths share an inode, as a set of groups of two or more.
fn link_groups(scan: &Scan) -> BTreeSet<Vec<Vec<u8>>> {
    let mut by_inode: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    for (k, e) in scan {
        if e.kind != Kind::Dir {
            by_inode.entry((e.dev, e.ino)).or_default().push(k.clone());
        }
    }
    by_inode
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect()
}

fn show_groups(g: &BTreeSet<Vec<Vec<u8>>>) -> String {
    let v: Vec<Vec<String>> = g
        .iter()
        .map(|grp| grp.iter().map(|p| show(p)).collect())
        .collect();
    format!("{v:?}")
}

/// Every difference between two scans: names (as bytes), fields, links.
fn compare(source: &Scan, restored: &Scan) -> Vec<String> {
    let mut problems = Vec::new();
    for k in source.keys().filter(|k| !restored.contains_key(*k)) {
        problems.push(format!("{}: missing from the restore", show(k)));
    }
    for k in restored.keys().filter(|k| !source.contains_key(*k)) {
        problems.push(format!("{}: in the restore but not in the source", show(k)));
    }
    for (k, s) in source {
        if let Some(r) = restored.get(k) {
            compare_entry(&show(k), s, r, &mut problems);
        }
    }
    let (sg, rg) = (link_groups(source), link_groups(restored));
    if sg != rg {
        problems.push(format!(
            "hard link groups differ: source {}, restored {}",
            show_groups(&sg),
            show_groups(&rg)
        ));
    }
    problems
}

fn assert_same(source: &Scan, restored: &Scan, what: &str) {
    let problems = compare(source, restored);
    assert!(
        problems.is_empty(),
        "{what}: {} differences between source and restore:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// The source tree

/// What the tree builder could not create here, and the names it used.
struct Built {
    owners: bool,
    devices: bool,
    /// The year-9000 time as the filesystem stored it.
    far_future: (i64, i64),
}

const UID: u32 = 1234;
const GID: u32 = 5678;

fn write(path: &Path, data: &[u8]) {
    fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn symlink(target: &[u8], path: &Path) {
    std::os::unix::fs::symlink(OsStr::from_bytes(target), path).unwrap();
}

fn mknod(path: &Path, kind: libc::mode_t, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    let c = cpath(path);
    // SAFETY: valid C string.
    errno_result(unsafe { libc::mknod(c.as_ptr(), kind | mode, dev) })
}

/// Build the tree at `root` (which must not exist). `outside` is a directory
/// outside the tree for a file hard-linked from inside it.
fn build_tree(root: &Path, outside: &Path) -> Built {
    let owners = is_root();
    if !owners {
        println!("note: not running as root: owner (chown) cases are skipped");
    }
    let p = |rel: &str| root.join(rel);
    for d in [
        "",
        "sticky",
        "setgid-dir",
        "readonly",
        "owned-dir",
        "times",
        "times/old-dir",
        "links",
        "hard",
        "hard/a",
        "hard/b",
        "empty-dirs",
        "empty-dirs/a",
        "empty-dirs/a/b",
        "empty-dirs/a/b/c",
        "empty-dirs/other",
        "special",
        "xattrs",
        "xattrs/dir",
        "names",
        "sub",
        "sub/deeper",
        "sub/empty",
    ] {
        fs::create_dir(p(d)).unwrap();
    }

    // Regular files of several sizes; the big one spans several chunks.
    write(&p("empty"), b"");
    write(&p("small"), b"hello, strata\n");
    write(&p("multi"), &random_bytes(1, (6 * MIB + 12345) as usize));
    write(&p("setuid"), b"#!/bin/sh\necho setuid\n");
    write(&p("setgid"), b"#!/bin/sh\necho setgid\n");
    write(&p("setuid-setgid-owned"), b"both bits and another owner\n");
    write(&p("mode0600"), b"private\n");
    write(&p("mode0444"), b"read only\n");
    write(&p("mode0000"), b"no permissions at all\n");
    write(&p("sticky/inside"), b"in a sticky dir\n");
    write(&p("setgid-dir/inside"), b"in a setgid dir\n");
    write(&p("readonly/file"), b"in a read-only dir\n");
    write(&p("owned"), b"owned by someone else\n");
    write(&p("owned-dir/f"), b"owned file in an owned dir\n");

    // Times.
    for name in [
        "nanos",
        "pre1970",
        "pre1970-frac",
        "y2200",
        "y9000",
        "y2446",
    ] {
        write(&p(&format!("times/{name}")), name.as_bytes());
    }

    // Symbolic links.
    symlink(b"../small", &p("links/relative"));
    symlink(p("small").as_os_str().as_bytes(), &p("links/absolute"));
    symlink(b"does/not/exist", &p("links/dangling"));
    symlink(b"caf\xe9/\xff\xfe-target", &p("links/non-utf8-target"));
    symlink(b"../sticky", &p("links/to-dir"));
    symlink(b"small", &p("links/owned-link"));

    // Hard links: three names across directories, a pair inside sub/, and
    // one name whose other link lies outside the backed-up tree.
    write(&p("hard/a/one"), b"one inode, three names\n");
    fs::hard_link(p("hard/a/one"), p("hard/b/two")).unwrap();
    fs::hard_link(p("hard/a/one"), p("hard/three")).unwrap();
    write(&p("sub/linked"), b"linked inside sub\n");
    fs::hard_link(p("sub/linked"), p("sub/deeper/linked-too")).unwrap();
    let outside_name = outside.join("outside-link");
    write(&outside_name, b"the other name is outside the tree\n");
    fs::hard_link(&outside_name, p("hard/linked-from-outside")).unwrap();

    // Special files.
    mknod(&p("special/fifo"), libc::S_IFIFO, 0o640, 0).unwrap();
    let devices = match mknod(
        &p("special/null"),
        libc::S_IFCHR,
        0o666,
        libc::makedev(1, 3),
    ) {
        Ok(()) => {
            mknod(
                &p("special/loop200"),
                libc::S_IFBLK,
                0o660,
                libc::makedev(7, 200),
            )
            .unwrap();
            true
        }
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            println!("note: mknod is not permitted here ({e}): device cases are skipped");
            false
        }
        Err(e) => panic!("mknod: {e}"),
    };

    // Extended attributes.
    write(&p("xattrs/file"), b"has xattrs\n");
    let binary: Vec<u8> = (0..=255u8).collect();
    set_xattr(&p("xattrs/file"), "user.test", b"value");
    set_xattr(&p("xattrs/file"), "user.binary", &binary);
    set_xattr(&p("xattrs/file"), "user.empty", b"");
    set_xattr(&p("xattrs/dir"), "user.test", b"dir value");
    set_xattr(&p("hard/a/one"), "user.on-a-link", b"shared by three names");

    // Sparse files: 64 MiB with three small data runs, and one all hole.
    let f = fs::File::create(p("sparse")).unwrap();
    f.set_len(64 * MIB).unwrap();
    f.write_all_at(b"start of the sparse file", 0).unwrap();
    f.write_all_at(&random_bytes(2, 100_000), 20 * MIB).unwrap();
    f.write_all_at(b"end", 64 * MIB - 3).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let f = fs::File::create(p("sparse-all-hole")).unwrap();
    f.set_len(16 * MIB).unwrap();
    drop(f);

    // Names that are not UTF-8 or are awkward for shells and parsers.
    for name in [
        &b"caf\xe9"[..],
        b"\xff\xfe",
        b"with space",
        b" leading space",
        b"trailing space ",
        b"new\nline",
        b"-leading-dash",
        b"--",
        b"-r",
        b"tab\there",
        b"back\\slash",
        b"colon:name",
        b"star*?[x]",
    ] {
        write(&root.join("names").join(OsStr::from_bytes(name)), name);
    }
    fs::create_dir(root.join("names").join(OsStr::from_bytes(b"dir-\xe9"))).unwrap();
    write(
        &root
            .join("names")
            .join(OsStr::from_bytes(b"dir-\xe9"))
            .join(OsStr::from_bytes(b"\xc3\x28")),
        b"invalid two-byte sequence",
    );

    // sub/: what the partial restores take.
    write(&p("sub/file"), b"the single file\n");
    set_xattr(&p("sub/file"), "user.test", b"single");
    write(&p("sub/deeper/x"), &random_bytes(3, 3000));

    // Owners (chown clears setuid/setgid, so modes come after).
    if owners {
        for rel in [
            "owned",
            "owned-dir",
            "owned-dir/f",
            "setuid-setgid-owned",
            "special/fifo",
            "sub/file",
            "hard/a/one",
        ] {
            std::os::unix::fs::lchown(p(rel), Some(UID), Some(GID)).unwrap();
        }
        std::os::unix::fs::lchown(p("links/owned-link"), Some(4321), Some(8765)).unwrap();
        std::os::unix::fs::lchown(p("sub/deeper"), Some(0), Some(GID)).unwrap();
        if devices {
            std::os::unix::fs::lchown(p("special/loop200"), Some(0), Some(6)).unwrap();
        }
    } else {
        fs::remove_file(p("mode0000")).unwrap();
    }

    // Modes.
    for (rel, mode) in [
        ("setuid", 0o4755),
        ("setgid", 0o2755),
        ("setuid-setgid-owned", 0o6750),
        ("mode0600", 0o600),
        ("mode0444", 0o444),
        ("mode0000", 0o000),
        ("sticky", 0o1777),
        ("setgid-dir", 0o2775),
        ("owned", 0o640),
        ("owned-dir", 0o750),
        ("special/fifo", 0o620),
        ("sub/file", 0o640),
        ("sub/deeper", 0o711),
        ("hard/three", 0o604),
        ("xattrs/dir", 0o700),
        ("empty-dirs/a/b", 0o500),
        ("readonly", 0o555), // after its contents exist
    ] {
        if p(rel).symlink_metadata().is_ok() {
            chmod(&p(rel), mode);
        }
    }

    // Times, last: every entry gets distinct atime and mtime with
    // nanoseconds; then the special cases. Setting times on an entry does
    // not change its directory's times.
    let mut all = Vec::new();
    collect_paths(root, &mut all);
    for (i, path) in all.iter().enumerate() {
        let i = i as i64;
        set_times(
            path,
            (
                1_100_000_000 + i * 86_413,
                (i * 7_654_321 + 11) % 1_000_000_000,
            ),
            (
                1_300_000_000 + i * 90_001,
                (i * 123_456_789 + 7) % 1_000_000_000,
            ),
        );
    }
    set_times(
        &p("times/nanos"),
        (1_234_567_891, 987_654_321),
        (1_234_567_890, 123_456_789),
    );
    // 1960-06-01 and just before the epoch, with fractions.
    set_times(
        &p("times/pre1970"),
        (-302_486_400, 0),
        (-302_486_400, 250_000_000),
    );
    set_times(
        &p("times/pre1970-frac"),
        (-1, 999_999_999),
        (-1, 500_000_000),
    );
    set_times(
        &p("times/old-dir"),
        (-86_400 * 365, 1),
        (-86_400 * 3650, 42),
    );
    set_times(&p("links/dangling"), (-100, 5), (-200, 6));
    // 2200-01-01 and 2446 (near ext4's limit), beyond 2038.
    set_times(
        &p("times/y2200"),
        (7_258_118_400, 1),
        (7_258_118_400, 500_000_000),
    );
    set_times(
        &p("times/y2446"),
        (15_032_385_000, 999_999_999),
        (15_032_385_000, 123),
    );
    let y9000 = "9000-01-01T00:00:00.123456789Z"
        .parse::<jiff::Timestamp>()
        .unwrap();
    let want = (y9000.as_second(), i64::from(y9000.subsec_nanosecond()));
    set_times(&p("times/y9000"), want, want);
    let m = p("times/y9000").symlink_metadata().unwrap();
    let far_future = (m.mtime(), m.mtime_nsec());
    if far_future != want {
        println!(
            "note: the filesystem stores year 9000 ({}.{:09}) as {}.{:09} (clamped to its limit); the test compares what it stored",
            want.0, want.1, far_future.0, far_future.1
        );
    }
    // These must be stored exactly, or the tree does not test what it should.
    let m = p("times/y2200").symlink_metadata().unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (7_258_118_400, 500_000_000));
    let m = p("times/pre1970").symlink_metadata().unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (-302_486_400, 250_000_000));
    let m = p("times/pre1970-frac").symlink_metadata().unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (-1, 500_000_000));

    Built {
        owners,
        devices,
        far_future,
    }
}

/// All paths under `root`, parents before children (reads directories, so
/// only used before times are set).
fn collect_paths(path: &Path, out: &mut Vec<PathBuf>) {
    out.push(path.to_path_buf());
    if path.symlink_metadata().unwrap().is_dir() {
        let mut names: Vec<_> = fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            collect_paths(&path.join(n), out);
        }
    }
}

/// Check that the source has what the test means to cover, so that a
/// passing comparison is not vacuous.
fn check_source_features(source: &Scan, built: &Built) {
    let get = |k: &[u8]| {
        source
            .get(k)
            .unwrap_or_else(|| panic!("{} missing from source", show(k)))
    };
    assert_eq!(get(b"setuid").mode, 0o4755);
    assert_eq!(get(b"setgid").mode, 0o2755);
    assert_eq!(get(b"sticky").mode, 0o1777);
    assert_eq!(get(b"readonly").mode, 0o555);
    assert!(get(b"multi").size > 6 * MIB);
    let sparse = get(b"sparse");
    assert!(
        sparse.blocks * 512 < MIB,
        "the source file system did not keep the sparse file sparse ({} blocks)",
        sparse.blocks
    );
    assert_eq!(get(b"sparse-all-hole").blocks, 0);
    assert_eq!(get(b"times/pre1970").mtime.0, -302_486_400);
    assert_eq!(get(b"times/y9000").mtime, built.far_future);
    assert!(get(b"times/y9000").mtime.0 > 1 << 33);
    assert_eq!(
        get(b"links/non-utf8-target").target.as_deref(),
        Some(&b"caf\xe9/\xff\xfe-target"[..])
    );
    assert!(source.contains_key(&b"names/caf\xe9"[..]));
    assert!(source.contains_key(&b"names/\xff\xfe"[..]));
    assert_eq!(get(b"xattrs/file").xattrs.len(), 3);
    assert_eq!(get(b"special/fifo").kind, Kind::Fifo);
    if built.owners {
        assert_eq!((get(b"owned").uid, get(b"owned").gid), (UID, GID));
        assert_eq!(get(b"setuid-setgid-owned").mode, 0o6750);
    }
    if built.devices {
        assert_eq!(get(b"special/null").kind, Kind::Char);
        assert_eq!(get(b"special/null").rdev, libc::makedev(1, 3));
        assert_eq!(get(b"special/loop200").kind, Kind::Block);
        assert_eq!(get(b"special/loop200").rdev, libc::makedev(7, 200));
    }
    let groups = link_groups(source);
    assert!(groups.contains(&vec![
        b"hard/a/one".to_vec(),
        b"hard/b/two".to_vec(),
        b"hard/three".to_vec()
    ]));
    assert!(groups.contains(&vec![
        b"sub/deeper/linked-too".to_vec(),
        b"sub/linked".to_vec()
    ]));
    // Every entry has times this test chose, not "now".
    let now = jiff::Timestamp::now().as_second();
    for (k, e) in source {
        assert!(
            e.mtime.0 < now - 86_400 * 30 || e.mtime.0 > now + 86_400 * 30,
            "{} has a recent mtime: the tree builder missed it",
            show(k)
        );
    }
}

/// Build the tree, capture it, back it up. Returns the env, the source
/// root and its scan (metadata from before the backup, data from after).
fn backed_up_tree() -> (Env, PathBuf, Scan) {
    let env = Env::new();
    let outside = env.dir.join("outside");
    fs::create_dir(&outside).unwrap();
    let src = env.dir.join("src");
    let built = build_tree(&src, &outside);
    let before = scan(&src, false);
    env.backup(&src);
    let source = merge(before, scan(&src, true));
    check_source_features(&source, &built);
    (env, src, source)
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn full_restore_reproduces_every_entry_and_field() {
    let (env, _src, source) = backed_up_tree();
    let target = env.dir.join("restore");
    env.restore(&[
        OsStr::new("latest"),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    assert_eq!(list_dir(&target), vec![b"src".to_vec()]);
    let restored = scan(&target.join("src"), true);
    assert_same(&source, &restored, "full restore");
}

#[test]
fn restore_with_verify_reproduces_every_entry_and_field() {
    // The same comparison after `restore --verify`, which re-reads every
    // restored file after its times were set.
    let (env, _src, source) = backed_up_tree();
    let target = env.dir.join("restore");
    let summary = env.restore(&[
        OsStr::new("latest"),
        OsStr::new("--target"),
        target.as_os_str(),
        OsStr::new("--verify"),
    ]);
    assert_eq!(summary["verify_failures"], 0, "{summary}");
    let inodes: BTreeSet<(u64, u64)> = source
        .values()
        .filter(|e| e.kind == Kind::File)
        .map(|e| (e.dev, e.ino))
        .collect();
    assert_eq!(
        summary["verified"].as_u64(),
        Some(inodes.len() as u64),
        "restore --verify did not verify every file: {summary}"
    );
    let restored = scan(&target.join("src"), true);
    assert_same(&source, &restored, "restore --verify");
}

#[test]
fn partial_restores_reproduce_what_they_select() {
    let (env, _src, source) = backed_up_tree();

    // One file, restored as TARGET/<its name>.
    let one = env.dir.join("one");
    env.restore(&[
        OsStr::new("latest:/src/sub/file"),
        OsStr::new("--target"),
        one.as_os_str(),
    ]);
    assert_eq!(list_dir(&one), vec![b"file".to_vec()]);
    let mut want = Scan::new();
    want.insert(Vec::new(), source[&b"sub/file"[..]].clone());
    assert_same(&want, &scan(&one.join("file"), true), "single file restore");

    // A directory given as SNAPSHOT:PATH.
    let dir = env.dir.join("dir");
    env.restore(&[
        OsStr::new("latest:/src/sub"),
        OsStr::new("--target"),
        dir.as_os_str(),
    ]);
    assert_eq!(list_dir(&dir), vec![b"sub".to_vec()]);
    assert_same(
        &subtree(&source, b"sub"),
        &scan(&dir.join("sub"), true),
        "SNAPSHOT:PATH subtree restore",
    );

    // A subtree selected with --include: only it and its ancestors appear.
    let inc = env.dir.join("include");
    env.restore(&[
        OsStr::new("latest"),
        OsStr::new("--target"),
        inc.as_os_str(),
        OsStr::new("--include"),
        OsStr::new("/src/sub"),
    ]);
    assert_eq!(list_dir(&inc), vec![b"src".to_vec()]);
    assert_eq!(list_dir(&inc.join("src")), vec![b"sub".to_vec()]);
    assert_same(
        &subtree(&source, b"sub"),
        &scan(&inc.join("src/sub"), true),
        "--include subtree restore",
    );

    // --include of one name of a three-name hard link group restores a
    // plain file with the right data and metadata.
    let hl = env.dir.join("hardlink");
    env.restore(&[
        OsStr::new("latest"),
        OsStr::new("--target"),
        hl.as_os_str(),
        OsStr::new("--include"),
        OsStr::new("/src/hard/b/two"),
    ]);
    let got = scan(&hl.join("src/hard"), true);
    assert_eq!(
        got.keys().map(|k| show(k)).collect::<Vec<_>>(),
        vec!["<root>", "b", "b/two"]
    );
    let mut want = Scan::new();
    want.insert(Vec::new(), source[&b"hard/b/two"[..]].clone());
    assert_same(
        &want,
        &subtree(&got, b"b/two"),
        "--include of one hard link",
    );
}

#[test]
fn restore_replaces_symlinks_in_the_target_instead_of_following_them() {
    let (env, _src, source) = backed_up_tree();
    let outside = env.dir.join("outside-target");
    fs::create_dir(&outside).unwrap();
    let victim = outside.join("file");
    write(&victim, b"must not change\n");
    let outside_before = scan(&outside, true);

    // target/src/sub is a symlink to a directory outside the target, and
    // target/src/small a symlink to a file outside it.
    let target = env.dir.join("restore");
    fs::create_dir_all(target.join("src")).unwrap();
    symlink(outside.as_os_str().as_bytes(), &target.join("src/sub"));
    symlink(victim.as_os_str().as_bytes(), &target.join("src/small"));
    env.restore(&[
        OsStr::new("latest"),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    assert_same(
        &outside_before,
        &scan(&outside, true),
        "directory outside the target",
    );
    let m = target.join("src/sub").symlink_metadata().unwrap();
    assert!(
        m.is_dir(),
        "target/src/sub is still not a real directory: {m:?}"
    );
    assert_same(
        &source,
        &scan(&target.join("src"), true),
        "restore over symlinks",
    );

    // The same with the top-level directory itself a symlink.
    let target2 = env.dir.join("restore2");
    fs::create_dir(&target2).unwrap();
    symlink(outside.as_os_str().as_bytes(), &target2.join("src"));
    env.restore(&[
        OsStr::new("latest"),
        OsStr::new("--target"),
        target2.as_os_str(),
    ]);
    assert_same(
        &outside_before,
        &scan(&outside, true),
        "directory outside the target",
    );
    assert!(target2.join("src").symlink_metadata().unwrap().is_dir());
    assert_same(
        &source,
        &scan(&target2.join("src"), true),
        "restore over a top-level symlink",
    );
}

#[test]
fn hard_links_of_symlinks_fifos_and_devices_stay_linked() {
    // `cp -al` and rsnapshot-style trees hard-link symlinks too; link(2)
    // never follows them.
    let env = Env::new();
    let src = env.dir.join("links");
    fs::create_dir(&src).unwrap();
    symlink(b"some/target", &src.join("symlink"));
    fs::hard_link(src.join("symlink"), src.join("symlink-2")).unwrap();
    mknod(&src.join("fifo"), libc::S_IFIFO, 0o644, 0).unwrap();
    fs::hard_link(src.join("fifo"), src.join("fifo-2")).unwrap();
    if mknod(&src.join("null"), libc::S_IFCHR, 0o666, libc::makedev(1, 3)).is_ok() {
        fs::hard_link(src.join("null"), src.join("null-2")).unwrap();
    } else {
        println!("note: mknod not permitted: device case skipped");
    }
    let mut paths = Vec::new();
    collect_paths(&src, &mut paths);
    // The backup's readlink of one name updates the atime that the other
    // name shares unless that atime is newer than mtime and ctime and less
    // than a day old (relatime); an atime an hour ahead keeps it stable.
    let soon = jiff::Timestamp::now().as_second() + 3600;
    for (i, p) in paths.iter().enumerate() {
        set_times(p, (soon + i as i64, 1), (1_200_000_000 + i as i64, 2));
    }
    let before = scan(&src, false);
    env.backup(&src);
    let source = merge(before, scan(&src, true));
    assert!(link_groups(&source).len() >= 2);
    let target = env.dir.join("restore");
    env.restore(&[
        OsStr::new("latest"),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    assert_same(
        &source,
        &scan(&target.join("links"), true),
        "hard-linked non-regular files",
    );
}

#[test]
fn single_file_restore_of_a_non_utf8_path() {
    // SNAPSHOT:PATH with a file name that is not UTF-8, in a directory whose
    // name is not UTF-8 either.
    let (env, _src, source) = backed_up_tree();
    let odd = env.dir.join("odd");
    let spec = OsStr::from_bytes(b"latest:/src/names/dir-\xe9/\xc3\x28");
    env.restore(&[spec, OsStr::new("--target"), odd.as_os_str()]);
    assert_eq!(list_dir(&odd), vec![b"\xc3\x28".to_vec()]);
    let mut want = Scan::new();
    want.insert(Vec::new(), source[&b"names/dir-\xe9/\xc3\x28"[..]].clone());
    let got = scan(&odd.join(OsStr::from_bytes(b"\xc3\x28")), true);
    assert_same(&want, &got, "non-UTF-8 single file restore");
}
