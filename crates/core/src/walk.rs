//! Reading the filesystem: a path's metadata as a [`Node`], sparse-file
//! extents, and the exclusion rules of a backup.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{Error, Result};
use crate::format::tree::{Extent, Node, NodeKind, Time, Xattr};

/// Caches uid and gid to name lookups for one walk.
#[derive(Default)]
pub struct NameCache {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl NameCache {
    pub fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }

    pub fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(gid.into())
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .clone()
    }
}

pub fn kind_of(meta: &Metadata) -> NodeKind {
    let ft = meta.file_type();
    if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::Chardev
    } else if ft.is_block_device() {
        NodeKind::Blockdev
    } else if ft.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    }
}

/// The metadata of `path` (already `lstat`ed as `meta`) as a node without
/// content. Extended attributes that cannot be read are skipped.
pub fn node_from_metadata(
    path: &Path,
    name: &[u8],
    meta: &Metadata,
    names: &mut NameCache,
) -> Result<Node> {
    node_reusing(path, name, meta, names, None)
}

/// Like [`node_from_metadata`], but when `same` is the node of this very
/// inode from the parent snapshot with an unchanged ctime (which every
/// change of xattrs or of a link target updates), its xattrs and symlink
/// target are taken over instead of being read again.
pub fn node_reusing(
    path: &Path,
    name: &[u8],
    meta: &Metadata,
    names: &mut NameCache,
    same: Option<&Node>,
) -> Result<Node> {
    let kind = kind_of(meta);
    let same = same.filter(|p| {
        p.kind == kind && p.inode == meta.ino() && p.ctime == ctime(meta) && p.mtime == mtime(meta)
    });
    let mut node = match same {
        Some(p) => p.clone(),
        None => {
            let target = match kind {
                NodeKind::Symlink => {
                    let t = std::fs::read_link(path)
                        .map_err(|e| Error::io(path, "cannot read link", e))?;
                    Some(t.as_os_str().as_bytes().to_vec())
                }
                _ => None,
            };
            Node {
                name: Vec::new(),
                kind,
                mode: 0,
                uid: 0,
                gid: 0,
                user: None,
                group: None,
                size: 0,
                mtime: Time::default(),
                atime: Time::default(),
                ctime: Time::default(),
                inode: meta.ino(),
                device: 0,
                links: 0,
                rdev: None,
                target,
                content: None,
                extents: None,
                subtree: None,
                xattrs: read_xattrs(path),
            }
        }
    };
    fill_from_metadata(&mut node, name, meta, names);
    Ok(node)
}

/// A file's modification time as stored in nodes.
pub fn mtime(meta: &Metadata) -> Time {
    Time {
        s: meta.mtime(),
        ns: meta.mtime_nsec() as u32,
    }
}

/// A file's change time as stored in nodes.
pub fn ctime(meta: &Metadata) -> Time {
    Time {
        s: meta.ctime(),
        ns: meta.ctime_nsec() as u32,
    }
}

/// Refresh everything `lstat` tells into a node; content, xattrs and link
/// target are left as they are (the caller read them or kept them).
fn fill_from_metadata(node: &mut Node, name: &[u8], meta: &Metadata, names: &mut NameCache) {
    node.name = name.to_vec();
    node.mode = meta.mode() & 0o7777;
    node.uid = meta.uid();
    node.gid = meta.gid();
    node.user = names.user(meta.uid());
    node.group = names.group(meta.gid());
    node.size = if node.kind == NodeKind::File {
        meta.size()
    } else {
        0
    };
    node.mtime = mtime(meta);
    node.atime = Time {
        s: meta.atime(),
        ns: meta.atime_nsec() as u32,
    };
    node.ctime = ctime(meta);
    node.inode = meta.ino();
    node.device = meta.dev();
    node.links = meta.nlink();
    node.rdev = matches!(node.kind, NodeKind::Chardev | NodeKind::Blockdev).then(|| meta.rdev());
    node.content = None;
    node.extents = None;
    node.subtree = None;
}

/// All extended attributes readable on `path` (not following symlinks).
pub fn read_xattrs(path: &Path) -> Vec<Xattr> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Vec<Xattr> = names
        .filter_map(|name| {
            let value = xattr::get(path, &name).ok().flatten()?;
            Some(Xattr {
                name: name.as_bytes().to_vec(),
                value,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The data extents of a file that has holes, or `None` if it is dense.
/// Uses `SEEK_DATA`/`SEEK_HOLE`, so holes are never read.
pub fn sparse_extents(file: &File, meta: &Metadata) -> Option<Vec<Extent>> {
    let size = meta.size();
    if size == 0 || meta.blocks() * 512 >= size {
        return None;
    }
    let fd = file.as_raw_fd();
    let mut extents = Vec::new();
    let mut pos: i64 = 0;
    while (pos as u64) < size {
        // SAFETY: lseek on a valid, open descriptor has no memory effects.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                break; // no more data after pos: the rest is a hole
            }
            // SAFETY: as above.
            unsafe { libc::lseek(fd, 0, libc::SEEK_SET) };
            return None; // cannot tell holes apart: read it as dense
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 {
            size as i64
        } else {
            hole.min(size as i64)
        };
        if end > data {
            extents.push(Extent {
                offset: data as u64,
                length: (end - data) as u64,
            });
        }
        pos = end;
    }
    // SAFETY: as above; rewind for the reader.
    unsafe { libc::lseek(fd, 0, libc::SEEK_SET) };
    let dense = extents.len() == 1 && extents[0].offset == 0 && extents[0].length == size;
    (!dense).then_some(extents)
}

/// What to leave out of a backup.
#[derive(Clone, Debug, Default)]
pub struct ExcludeOptions {
    /// gitignore-style patterns, `!` negates; a pattern with a `/` is anchored at `/`.
    pub exclude: Vec<String>,
    /// The same, matched case-insensitively.
    pub iexclude: Vec<String>,
    /// Leave out directories that contain a file of one of these names.
    pub if_present: Vec<String>,
    /// Leave out directories with a valid CACHEDIR.TAG.
    pub caches: bool,
    /// Leave out files larger than this many bytes.
    pub larger_than: Option<u64>,
    /// Do not cross filesystem boundaries.
    pub one_file_system: bool,
    /// Read the contents of pseudo filesystems (procfs, sysfs…) too. By
    /// default such a directory is stored without its contents: they are
    /// the kernel's state, not data, and some files never end.
    pub pseudo_filesystems: bool,
}

/// Filesystems whose files are the kernel's state: statfs magic numbers
/// (linux/magic.h) and names.
const PSEUDO_FILESYSTEMS: [(i64, &str); 16] = [
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0x6165_676c, "pstore"),
    (0xcafe_4a11, "bpf"),
    (0x6265_6570, "configfs"),
    (0x1cd1, "devpts"),
    (0x6573_5543, "fusectl"),
    (0x1980_0202, "mqueue"),
    (0xde5e_81e0, "efivarfs"),
    (0x4249_4e4d, "binfmt_misc"),
    (0xf97c_ff8c, "selinuxfs"),
];

/// The name of the pseudo filesystem `path` is on, if it is on one.
fn pseudo_filesystem(path: &Path) -> Option<&'static str> {
    let fs = nix::sys::statfs::statfs(path).ok()?;
    let magic = fs.filesystem_type().0 as i64;
    PSEUDO_FILESYSTEMS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

pub struct Excluder {
    opts: ExcludeOptions,
    patterns: Option<Gitignore>,
    ipatterns: Option<Gitignore>,
    /// Device → pseudo filesystem name, asked once per device.
    pseudo: std::sync::Mutex<std::collections::HashMap<u64, Option<&'static str>>>,
}

impl Excluder {
    pub fn new(opts: ExcludeOptions) -> Result<Excluder> {
        let patterns = build_patterns(&opts.exclude, false)?;
        let ipatterns = build_patterns(&opts.iexclude, true)?;
        Ok(Excluder {
            opts,
            patterns,
            ipatterns,
            pseudo: Default::default(),
        })
    }

    /// The pseudo filesystem (`proc`, `sysfs`…) whose contents are left
    /// out at the directory `path` on device `dev`, if any.
    pub fn pseudo_filesystem(&self, path: &Path, dev: u64) -> Option<&'static str> {
        if self.opts.pseudo_filesystems {
            return None;
        }
        let mut known = self.pseudo.lock().unwrap_or_else(|p| p.into_inner());
        *known.entry(dev).or_insert_with(|| pseudo_filesystem(path))
    }

    pub fn one_file_system(&self) -> bool {
        self.opts.one_file_system
    }

    /// Whether `path` (absolute) is excluded by patterns or size.
    pub fn excludes(&self, path: &Path, meta: &Metadata) -> bool {
        let is_dir = meta.is_dir();
        for set in [&self.patterns, &self.ipatterns].into_iter().flatten() {
            if set.matched(path, is_dir).is_ignore() {
                return true;
            }
        }
        if let Some(limit) = self.opts.larger_than {
            if meta.is_file() && meta.len() > limit {
                return true;
            }
        }
        false
    }

    /// Whether the directory at `path` is excluded by its contents.
    pub fn excludes_dir_contents(&self, path: &Path) -> bool {
        if self
            .opts
            .if_present
            .iter()
            .any(|name| path.join(name).symlink_metadata().is_ok())
        {
            return true;
        }
        if self.opts.caches {
            if let Ok(mut f) = File::open(path.join("CACHEDIR.TAG")) {
                let mut head = [0u8; 43];
                if std::io::Read::read_exact(&mut f, &mut head).is_ok()
                    && head == CACHEDIR_SIGNATURE
                {
                    return true;
                }
            }
        }
        false
    }
}

/// Whether the file at `path` matches `set`, itself or by a directory it
/// is in (`sub/` names every file under `sub`), as --exclude would leave
/// it out.
pub(crate) fn matches_file(set: &Gitignore, path: &Path) -> bool {
    if path.is_absolute() {
        set.matched_path_or_any_parents(path, false).is_ignore()
    } else {
        set.matched(path, false).is_ignore()
    }
}

/// A gitignore-style matcher for `lines` (`None` if there are none);
/// `what` names the option in messages.
pub(crate) fn patterns(lines: &[String], what: &str) -> Result<Option<Gitignore>> {
    build_patterns(lines, false).map_err(|e| Error::invalid(format!("{what}: {e}")))
}

fn build_patterns(lines: &[String], case_insensitive: bool) -> Result<Option<Gitignore>> {
    if lines.is_empty() {
        return Ok(None);
    }
    let mut b = GitignoreBuilder::new("/");
    b.case_insensitive(case_insensitive)
        .map_err(|e| Error::invalid(format!("bad exclude option: {e}")))?;
    for line in lines {
        check_pattern(line)?;
        b.add_line(None, line)
            .map_err(|e| Error::invalid(format!("bad exclude pattern {line:?}: {e}")))?;
    }
    b.build()
        .map(Some)
        .map_err(|e| Error::invalid(format!("bad exclude patterns: {e}")))
}

/// Refuse a pattern the gitignore matcher would silently never match (an
/// unclosed `[`, a lone trailing `\`), naming it.
pub(crate) fn check_pattern(line: &str) -> Result<()> {
    let glob = line.strip_prefix('!').unwrap_or(line);
    let glob = glob.strip_suffix('/').unwrap_or(glob);
    if glob.trim().is_empty() || glob.starts_with('#') {
        return Ok(());
    }
    globset::GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|_| ())
        .map_err(|e| Error::invalid(format!("bad pattern {line:?}: {}", e.kind())))
}

/// Read patterns from an exclude file: one per line, `#` comments and blank
/// lines ignored.
pub fn read_exclude_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(path, "cannot read exclude file", e))?;
    Ok(text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// Reads the data extents of a sparse file back to back.
pub struct ExtentReader<'f> {
    file: &'f File,
    extents: Vec<Extent>,
    index: usize,
    done: u64,
}

impl<'f> ExtentReader<'f> {
    pub fn new(file: &'f File, extents: Vec<Extent>) -> Self {
        ExtentReader {
            file,
            extents,
            index: 0,
            done: 0,
        }
    }
}

impl Read for ExtentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while let Some(ext) = self.extents.get(self.index) {
            if self.done >= ext.length {
                self.index += 1;
                self.done = 0;
                continue;
            }
            let want = ((ext.length - self.done) as usize).min(out.len());
            let n = self
                .file
                .read_at(&mut out[..want], ext.offset + self.done)?;
            if n == 0 {
                // The file shrank; treat the rest of this extent as gone.
                self.index += 1;
                self.done = 0;
                continue;
            }
            self.done += n as u64;
            return Ok(n);
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluder(ex: &[&str]) -> Excluder {
        Excluder::new(ExcludeOptions {
            exclude: ex.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn gitignore_semantics_with_negation() {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("keep.log");
        let other = dir.path().join("other.log");
        std::fs::write(&keep, b"").unwrap();
        std::fs::write(&other, b"").unwrap();
        let meta = std::fs::metadata(&keep).unwrap();
        let ex = excluder(&["*.log", "!keep.log"]);
        assert!(!ex.excludes(&keep, &meta));
        assert!(ex.excludes(&other, &meta));
        let anchored = excluder(&[&format!("{}/other.log", dir.path().display())]);
        assert!(anchored.excludes(&other, &meta));
        assert!(!anchored.excludes(&keep, &meta));
    }

    #[test]
    fn case_insensitive_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("BIG.ISO");
        std::fs::write(&f, vec![0u8; 2000]).unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        let ex = Excluder::new(ExcludeOptions {
            iexclude: vec!["*.iso".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(ex.excludes(&f, &meta));
        let ex = Excluder::new(ExcludeOptions {
            larger_than: Some(1000),
            ..Default::default()
        })
        .unwrap();
        assert!(ex.excludes(&f, &meta));
        let ex = Excluder::new(ExcludeOptions {
            larger_than: Some(5000),
            ..Default::default()
        })
        .unwrap();
        assert!(!ex.excludes(&f, &meta));
    }

    #[test]
    fn cachedir_tag_needs_the_signature() {
        let dir = tempfile::tempdir().unwrap();
        let ex = Excluder::new(ExcludeOptions {
            caches: true,
            ..Default::default()
        })
        .unwrap();
        std::fs::write(dir.path().join("CACHEDIR.TAG"), b"not a tag").unwrap();
        assert!(!ex.excludes_dir_contents(dir.path()));
        std::fs::write(
            dir.path().join("CACHEDIR.TAG"),
            [CACHEDIR_SIGNATURE, b"\n"].concat(),
        )
        .unwrap();
        assert!(ex.excludes_dir_contents(dir.path()));
    }

    #[test]
    fn sparse_file_extents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let f = File::create(&path).unwrap();
        f.set_len(10 * 1024 * 1024).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_at(b"data", 4 * 1024 * 1024).unwrap();
        f.sync_all().unwrap();
        let f = File::open(&path).unwrap();
        let meta = f.metadata().unwrap();
        let ext = sparse_extents(&f, &meta).expect("file has holes");
        assert_eq!(ext.len(), 1);
        assert!(
            ext[0].offset <= 4 * 1024 * 1024
                && ext[0].offset + ext[0].length >= 4 * 1024 * 1024 + 4
        );
    }
}
