//! The restore engine: plan what to create from a snapshot, create the
//! tree, then fill files pack by pack in parallel, then set metadata.
//!
//! Safety: every name is checked before it is joined to a path (no `..`,
//! `/`, empty or NUL names), directories on the way down are created or
//! checked to be real directories (a symlink in their place is replaced,
//! never followed), and files are opened with `O_NOFOLLOW`. So nothing is
//! ever written outside the target.

mod data;
mod fsops;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::Id;
use crate::repository::Repository;

pub use fsops::remove_any;

/// What to do with files that already exist in the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overwrite {
    Always,
    /// Rewrite only if size or content differ (metadata is always set).
    #[default]
    IfChanged,
    Never,
    /// Keep an existing file whose contents differ and report it as not
    /// restored: what a single file restored onto an existing one gets
    /// unless `--overwrite` says otherwise (never replaced silently).
    IfAbsentOrSame,
}

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub target: PathBuf,
    /// Restore only this path inside the snapshot (`etc/hosts`); it is
    /// created as `target/<its last component>`.
    pub subpath: Option<Vec<u8>>,
    /// gitignore-style patterns on snapshot paths (`/etc/hosts`, `*.conf`).
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub overwrite: Overwrite,
    /// Remove from the target what the snapshot does not contain.
    pub delete: bool,
    /// Re-read written files and compare them with the snapshot.
    pub verify: bool,
    /// Parallel pack readers; 0 means a default.
    pub threads: usize,
}

/// Events of a running restore.
pub trait RestoreProgress: Sync {
    fn warning(&self, _path: &Path, _message: &str) {}
    fn bytes_written(&self, _n: u64) {}
}

pub struct NoRestoreProgress;
impl RestoreProgress for NoRestoreProgress {}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    pub files: u64,
    pub files_unchanged: u64,
    /// Existing files left alone (`--overwrite never`).
    pub files_skipped: u64,
    pub dirs: u64,
    pub others: u64,
    pub bytes_written: u64,
    pub deleted: u64,
    pub warnings: u64,
    /// Entries that could not be created or replaced (reported as warnings).
    pub failed: u64,
    pub verified: u64,
    pub verify_failures: u64,
    /// Files whose data could not be restored (a damaged or missing blob,
    /// a write error), with the reason. Nothing is left at their paths but
    /// what was there before.
    pub incomplete: Vec<(PathBuf, String)>,
}

/// One thing to create, in creation order (parents first).
struct Entry {
    rel: PathBuf,
    node: Node,
    /// For directories: the names of the children in the snapshot.
    children: Option<HashSet<Vec<u8>>>,
    /// Matched by the include patterns (or there are none).
    selected: bool,
}

/// Restore `tree` (a snapshot's root tree) as described by `opts`.
pub fn run(
    repo: &Arc<Repository>,
    tree: Id,
    opts: &RestoreOptions,
    progress: &dyn RestoreProgress,
) -> Result<RestoreSummary> {
    let _lock = repo.read_lock()?;
    crate::interrupt::listen();
    repo.load_index()?;
    let filter = PathFilter::new(&opts.include, &opts.exclude, opts.delete)?;
    let (roots, start) = resolve_subpath(repo, tree, opts.subpath.as_deref())?;
    let (entries, unreadable) = collect(repo, roots, &start, &filter)?;
    let entries = filter.prune(entries);
    std::fs::create_dir_all(&opts.target)
        .map_err(|e| Error::io(&opts.target, "cannot create target", e))?;
    let mut state = Restorer {
        repo,
        opts,
        progress,
        summary: RestoreSummary::default(),
        root_owner: nix::unistd::geteuid().is_root(),
        skipped: Vec::new(),
        deferred_links: Vec::new(),
    };
    for (rel, why) in unreadable {
        state.not_restored(
            opts.target.join(rel),
            format!("its directory listing is unreadable: {why}"),
        );
    }
    let (jobs, mut created) = state.create_entries(&entries)?;
    let nodes: Vec<&Node> = entries.iter().map(|e| &e.node).collect();
    let mut filled = match data::fill_files(repo, &jobs, &nodes, opts.threads, progress) {
        Ok(filled) => filled,
        Err(e) => {
            fsops::discard_temporaries(&jobs);
            return Err(e);
        }
    };
    state.summary.bytes_written += filled.written;
    // Stopped by the user: the complete files go in place (with their
    // metadata), the others are dropped without being reported as damage.
    let interrupted = filled.interrupted || crate::interrupt::requested();
    let mut unfinished = HashSet::new();
    if interrupted {
        for (j, job) in jobs.iter().enumerate() {
            if job.tmp.is_some() && filled.left.get(j).is_none_or(|&n| n > 0) {
                unfinished.insert(j);
            }
        }
        for &j in &unfinished {
            filled.failed.remove(&j);
        }
    }
    state.finalize(&jobs, &filled.failed, &unfinished, &mut created)?;
    state.link_deferred(&entries, &mut created);
    // Verify before metadata: reading may touch atimes, and the metadata
    // step sets them last.
    if opts.verify && !interrupted {
        // What is in place: written or kept (restore did not give up on
        // it), and what was left alone.
        let done: Vec<&FileJob> = jobs
            .iter()
            .filter(|j| created[j.entry])
            .chain(&state.skipped)
            .collect();
        data::verify(repo, &done, &nodes, &mut state.summary, progress);
    }
    state.finish_metadata(&entries, &created);
    if interrupted {
        return Err(Error::new(crate::ErrorKind::Interrupted, "interrupted"));
    }
    Ok(state.summary)
}

/// Find the nodes to restore: the root tree's nodes, or the one at `subpath`.
/// Also returns the snapshot path of the parent of those nodes, for filters.
fn resolve_subpath(
    repo: &Repository,
    tree: Id,
    subpath: Option<&[u8]>,
) -> Result<(Vec<Node>, PathBuf)> {
    let parts: Vec<&[u8]> = subpath
        .unwrap_or_default()
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        let root = repo.load_tree(&tree)?;
        if !root.names_in_order() {
            return Err(Error::corrupted(
                "refusing to restore: the snapshot's root tree has duplicate or unsorted names",
            ));
        }
        return Ok((root.nodes, PathBuf::from("/")));
    }
    let sub = crate::format::quote_bytes(subpath.unwrap_or_default());
    let node = repo
        .find_node(tree, subpath.unwrap_or_default())?
        .ok_or_else(|| Error::missing(format!("{sub} is not in the snapshot")))?;
    let mut parent = PathBuf::from("/");
    for part in &parts[..parts.len() - 1] {
        parent.push(OsStr::from_bytes(part));
    }
    Ok((vec![node], parent))
}

/// Directories whose tree no copy of could be read: `(relative path, why)`.
type Unreadable = Vec<(PathBuf, String)>;

/// Walk the snapshot from `roots` level by level, loading the subtrees of
/// each level together (docs/design.md, "Remote storage"). Entries come
/// out parents first. A directory whose tree is damaged is left out (an
/// empty directory would pass for the real one) and returned apart.
fn collect(
    repo: &Repository,
    roots: Vec<Node>,
    snap_parent: &Path,
    filter: &PathFilter,
) -> Result<(Vec<Entry>, Unreadable)> {
    let mut out = Vec::new();
    let mut unreadable = Vec::new();
    let mut level: Vec<(Node, PathBuf, PathBuf)> = roots
        .into_iter()
        .map(|n| (n, PathBuf::new(), snap_parent.to_path_buf()))
        .collect();
    while !level.is_empty() {
        let mut kept = Vec::with_capacity(level.len());
        for (mut node, rel_parent, snap_parent) in level {
            // Owners are restored by number; the names only cost memory here.
            node.user = None;
            node.group = None;
            if !Node::valid_name(&node.name) {
                return Err(Error::corrupted(format!(
                    "refusing to restore an entry named {} in {}: such a name could write outside the target",
                    crate::format::quote_bytes(&node.name),
                    rel_parent.display()
                )));
            }
            let name = OsStr::from_bytes(&node.name);
            let (rel, snap_path) = (rel_parent.join(name), snap_parent.join(name));
            if !filter.excluded(&snap_path, node.is_dir()) {
                kept.push((node, rel, snap_path));
            }
        }
        let subtree_of = |node: &Node| node.subtree.filter(|_| node.is_dir());
        let ids: Vec<Id> = kept.iter().filter_map(|(n, ..)| subtree_of(n)).collect();
        let mut uses: HashMap<Id, usize> = HashMap::new();
        for id in &ids {
            *uses.entry(*id).or_default() += 1;
        }
        let mut batch = repo.load_trees(&ids)?;
        let mut next = Vec::new();
        for (node, rel, snap_path) in kept {
            let subtree: Option<Tree> = match subtree_of(&node) {
                Some(id) => {
                    let left = uses.entry(id).or_default();
                    *left = left.saturating_sub(1);
                    let tree = if *left == 0 {
                        batch.trees.remove(&id)
                    } else {
                        batch.trees.get(&id).cloned()
                    };
                    match tree {
                        Some(t) => Some(t),
                        None => {
                            let why = batch.damaged.get(&id).cloned();
                            unreadable.push((
                                rel,
                                why.unwrap_or_else(|| format!("tree {id} was not read")),
                            ));
                            continue;
                        }
                    }
                }
                None => None,
            };
            if let Some(t) = &subtree {
                // Names must be strictly increasing, so unique: a second entry
                // of the same name could replace a directory by a symlink
                // after files were created in it.
                if !t.names_in_order() {
                    return Err(Error::corrupted(format!(
                        "refusing to restore {}: its tree has duplicate or unsorted names",
                        snap_path.display()
                    )));
                }
            }
            // Only --delete needs the names of a directory's children.
            let children = subtree
                .as_ref()
                .filter(|_| filter.delete)
                .map(|t| t.nodes.iter().map(|n| n.name.clone()).collect());
            let selected = filter.included(&snap_path, node.is_dir());
            for child in subtree.map(|t| t.nodes).unwrap_or_default() {
                next.push((child, rel.clone(), snap_path.clone()));
            }
            out.push(Entry {
                rel,
                node,
                children,
                selected,
            });
        }
        level = next;
    }
    Ok((out, unreadable))
}

/// Include and exclude patterns, matched like gitignore lines against the
/// snapshot path of each entry (`/etc/ssh/sshd_config`).
struct PathFilter {
    include: Option<Gitignore>,
    exclude: Option<Gitignore>,
    /// Whether children lists are kept for --delete.
    delete: bool,
}

fn patterns(lines: &[String]) -> Result<Option<Gitignore>> {
    if lines.is_empty() {
        return Ok(None);
    }
    let mut b = GitignoreBuilder::new("/");
    for l in lines {
        crate::walk::check_pattern(l)?;
        b.add_line(None, l)
            .map_err(|e| Error::invalid(format!("bad pattern {l:?}: {e}")))?;
    }
    b.build()
        .map(Some)
        .map_err(|e| Error::invalid(format!("bad patterns: {e}")))
}

impl PathFilter {
    fn new(include: &[String], exclude: &[String], delete: bool) -> Result<PathFilter> {
        Ok(PathFilter {
            include: patterns(include)?,
            exclude: patterns(exclude)?,
            delete,
        })
    }

    fn excluded(&self, path: &Path, is_dir: bool) -> bool {
        self.exclude
            .as_ref()
            .is_some_and(|g| g.matched(path, is_dir).is_ignore())
    }

    fn included(&self, path: &Path, is_dir: bool) -> bool {
        self.include
            .as_ref()
            .is_none_or(|g| g.matched_path_or_any_parents(path, is_dir).is_ignore())
    }

    /// Keep selected entries and the directories leading to them.
    fn prune(&self, entries: Vec<Entry>) -> Vec<Entry> {
        if self.include.is_none() {
            return entries;
        }
        let mut needed: HashSet<PathBuf> = HashSet::new();
        for e in &entries {
            if e.selected {
                let mut p = e.rel.parent();
                while let Some(dir) = p.filter(|d| !d.as_os_str().is_empty()) {
                    if !needed.insert(dir.to_path_buf()) {
                        break;
                    }
                    p = dir.parent();
                }
            }
        }
        entries
            .into_iter()
            .filter(|e| e.selected || needed.contains(&e.rel))
            .map(|mut e| {
                if !e.selected {
                    e.children = None; // only an ancestor: never delete inside it
                }
                e
            })
            .collect()
    }
}

/// A regular file restore created or kept.
pub(crate) struct FileJob {
    pub path: PathBuf,
    /// Where its data is written: a temporary name in the same directory,
    /// renamed to `path` once complete, so an interrupted or failed restore
    /// leaves at `path` either what was there before or the whole file.
    /// (A file that replaces another is synced before the rename; a new
    /// one is not, so after a power cut, unlike a kill, it may be short.)
    pub tmp: Option<PathBuf>,
    /// Whether a file exists at `path` (the rename replaces it: its data
    /// is synced first, so a crash cannot leave an empty file instead).
    pub replaces: bool,
    /// Index of its entry in the plan.
    pub entry: usize,
    /// Whether its data must be written (false: an identical file was kept).
    pub write: bool,
}

impl FileJob {
    pub(crate) fn data_path(&self) -> &Path {
        self.tmp.as_deref().unwrap_or(&self.path)
    }
}

/// What restore does with a regular file.
enum FilePlan {
    /// Write its data into this new temporary file, renamed when complete.
    Write(PathBuf),
    /// An identical file is there already.
    Kept,
    /// Something is there and `--overwrite never` keeps it.
    LeftAlone,
    /// Could not even start (reported).
    Failed,
}

/// A hard link to a file whose data is still being written: made once the
/// file is complete. `(entry, path, entry of the file linked to)`.
type DeferredLink = (usize, PathBuf, usize);

struct Restorer<'a> {
    repo: &'a Arc<Repository>,
    opts: &'a RestoreOptions,
    progress: &'a dyn RestoreProgress,
    summary: RestoreSummary,
    root_owner: bool,
    /// Existing files left alone, for `--verify`.
    skipped: Vec<FileJob>,
    deferred_links: Vec<DeferredLink>,
}

impl Restorer<'_> {
    fn warn(&mut self, path: &Path, message: &str) {
        self.summary.warnings += 1;
        self.progress.warning(path, message);
    }

    /// Create directories, links and special files; create (empty, sized)
    /// the regular files that need data and return them as jobs. Also
    /// returns, per entry, whether restore created it (or kept an identical
    /// file): metadata is applied to those entries only, never to something
    /// it left alone or that lies under a directory it skipped.
    fn create_entries(&mut self, entries: &[Entry]) -> Result<(Vec<FileJob>, Vec<bool>)> {
        let mut jobs = Vec::new();
        let mut created = vec![false; entries.len()];
        // Where each hard-linked inode was restored first: a path, and the
        // entry of a file whose data is still to be written.
        let mut links: HashMap<(u64, u64), (PathBuf, Option<usize>)> = HashMap::new();
        let mut skipped_dirs: Vec<PathBuf> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if skipped_dirs.iter().any(|d| e.rel.starts_with(d)) {
                continue;
            }
            let path = self.opts.target.join(&e.rel);
            let existing = path.symlink_metadata().ok();
            let link_key = (e.node.device, e.node.inode);
            created[i] = match e.node.kind {
                NodeKind::Dir => {
                    let made = self
                        .ensure_dir(&path, existing.as_ref())
                        .unwrap_or_else(|err| {
                            self.not_restored(path.clone(), err.to_string());
                            false
                        });
                    if !made {
                        skipped_dirs.push(e.rel.clone());
                        continue;
                    }
                    self.summary.dirs += 1;
                    if let Some(children) = e.children.as_ref().filter(|_| self.opts.delete) {
                        self.delete_extra(&path, children);
                    }
                    true
                }
                _ if e.node.links > 1 && links.contains_key(&link_key) => {
                    // Another name of an inode restored already (files,
                    // symlinks, fifos and devices can all be hard-linked).
                    let (first, pending) = links[&link_key].clone();
                    if let Some(file_entry) = pending {
                        if existing.is_some() && self.opts.overwrite == Overwrite::Never {
                            continue;
                        }
                        self.deferred_links.push((i, path, file_entry));
                        continue;
                    }
                    let linked = self.replace(&path, existing.as_ref(), &e.node)
                        && match std::fs::hard_link(&first, &path) {
                            Ok(()) => true,
                            Err(err) => {
                                self.not_restored(
                                    path.clone(),
                                    format!("cannot create hard link: {err}"),
                                );
                                false
                            }
                        };
                    if linked {
                        self.summary.others += 1;
                    }
                    linked
                }
                NodeKind::File => match self.prepare_file(&path, &e.node, existing.as_ref()) {
                    FilePlan::Write(tmp) => {
                        jobs.push(FileJob {
                            path: path.clone(),
                            replaces: existing.is_some(),
                            tmp: Some(tmp),
                            entry: i,
                            write: true,
                        });
                        true
                    }
                    FilePlan::Kept => {
                        jobs.push(FileJob {
                            path: path.clone(),
                            replaces: false,
                            tmp: None,
                            entry: i,
                            write: false,
                        });
                        true
                    }
                    FilePlan::Failed => false,
                    FilePlan::LeftAlone => {
                        self.summary.files_skipped += 1;
                        self.skipped.push(FileJob {
                            path: path.clone(),
                            tmp: None,
                            replaces: false,
                            entry: i,
                            write: false,
                        });
                        false
                    }
                },
                NodeKind::Symlink => {
                    let target = e.node.target.as_deref().unwrap_or_default();
                    let make = self.replace(&path, existing.as_ref(), &e.node)
                        && match fsops::create_symlink(&path, target) {
                            Ok(()) => true,
                            Err(err) => {
                                self.not_restored(
                                    path.clone(),
                                    format!("cannot create symlink: {err}"),
                                );
                                false
                            }
                        };
                    if make {
                        self.summary.others += 1;
                    }
                    make
                }
                NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev => {
                    self.replace(&path, existing.as_ref(), &e.node)
                        && match fsops::create_special(&path, &e.node) {
                            Ok(()) => {
                                self.summary.others += 1;
                                true
                            }
                            Err(err) => {
                                self.summary.failed += 1;
                                self.warn(&path, &format!("cannot create special file: {err}"));
                                false
                            }
                        }
                }
                NodeKind::Socket => false,
            };
            if created[i] && e.node.kind != NodeKind::Dir && e.node.links > 1 {
                // A file still being written is linked to once complete.
                let pending = jobs
                    .last()
                    .filter(|j: &&FileJob| j.entry == i && j.tmp.is_some())
                    .map(|_| i);
                links.entry(link_key).or_insert((path, pending));
            }
        }
        Ok((jobs, created))
    }

    /// Make `path` a real directory. Returns false if it must be skipped.
    fn ensure_dir(&mut self, path: &Path, existing: Option<&std::fs::Metadata>) -> Result<bool> {
        match existing {
            Some(m) if m.is_dir() => {
                // A read-only directory left by an earlier restore: make it
                // writable for us; its own mode is set again at the end.
                if !self.root_owner && m.permissions().mode() & 0o300 != 0o300 {
                    let mode = m.permissions().mode() | 0o700;
                    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
                }
                return Ok(true);
            }
            Some(_) if self.opts.overwrite == Overwrite::Never => {
                self.warn(
                    path,
                    "exists and is not a directory; skipped (--overwrite never)",
                );
                return Ok(false);
            }
            Some(_) => fsops::remove_any(path).map_err(|e| Error::io(path, "cannot replace", e))?,
            None => {}
        }
        std::fs::create_dir(path).map_err(|e| Error::io(path, "cannot create directory", e))?;
        Ok(true)
    }

    /// Clear the way for a non-directory entry; false if it must be skipped.
    fn replace(&mut self, path: &Path, existing: Option<&std::fs::Metadata>, node: &Node) -> bool {
        let Some(existing) = existing else {
            return true;
        };
        if self.opts.overwrite == Overwrite::Never {
            return false;
        }
        if self.opts.overwrite == Overwrite::IfAbsentOrSame {
            if !fsops::same_special(path, existing, node) {
                self.not_restored(
                    path.to_path_buf(),
                    "exists and differs from the snapshot; left as it is (--overwrite always replaces it)".into(),
                );
            }
            return false;
        }
        match fsops::remove_any(path) {
            Ok(()) => true,
            Err(e) => {
                self.summary.failed += 1;
                self.warn(path, &format!("cannot replace: {e}"));
                false
            }
        }
    }

    /// Decide what to do with a regular file. An existing file stays in
    /// place until its replacement is complete.
    /// Whatever is in the way (a directory, a symlink) stays until the
    /// data is complete.
    fn prepare_file(
        &mut self,
        path: &Path,
        node: &Node,
        existing: Option<&std::fs::Metadata>,
    ) -> FilePlan {
        if let Some(m) = existing {
            let compare = matches!(
                self.opts.overwrite,
                Overwrite::IfChanged | Overwrite::IfAbsentOrSame
            );
            let unchanged = m.is_file()
                && compare
                && m.len() == node.size
                && data::same_content(self.repo, path, node);
            if unchanged {
                self.summary.files_unchanged += 1;
                return FilePlan::Kept;
            }
            if self.opts.overwrite == Overwrite::Never {
                return FilePlan::LeftAlone;
            }
            if self.opts.overwrite == Overwrite::IfAbsentOrSame {
                self.not_restored(
                    path.to_path_buf(),
                    "exists and differs from the snapshot; left as it is (--overwrite always replaces it)".into(),
                );
                return FilePlan::Failed;
            }
        }
        match fsops::create_temporary(path, node.size) {
            Ok(tmp) => {
                self.summary.files += 1;
                FilePlan::Write(tmp)
            }
            Err(e) => {
                self.not_restored(
                    path.to_path_buf(),
                    format!("cannot create a temporary file: {e}"),
                );
                FilePlan::Failed
            }
        }
    }

    /// An entry restore gives up on: counted, and listed with the reason.
    fn not_restored(&mut self, path: PathBuf, reason: String) {
        self.summary.failed += 1;
        self.summary.incomplete.push((path, reason));
    }

    /// Put every complete file in place (synced first where it replaces
    /// one, so a crash leaves the old or the new file, never a mix or an
    /// empty one) and remove the temporary files of the incomplete ones.
    /// `unfinished` files (an interrupted restore) are dropped silently.
    fn finalize(
        &mut self,
        jobs: &[FileJob],
        failed: &HashMap<usize, String>,
        unfinished: &HashSet<usize>,
        created: &mut [bool],
    ) -> Result<()> {
        let mut synced_dirs: HashSet<PathBuf> = HashSet::new();
        for (j, job) in jobs.iter().enumerate() {
            let Some(tmp) = &job.tmp else { continue };
            if unfinished.contains(&j) {
                let _ = std::fs::remove_file(tmp);
                created[job.entry] = false;
                self.summary.files -= 1;
                continue;
            }
            // A single file is made durable before it appears, like one
            // that replaces another (a restore of one file is often the
            // one copy someone is waiting for).
            let sync = job.replaces || jobs.len() == 1;
            let placed = match failed.get(&j) {
                Some(reason) => Err(reason.clone()),
                None => fsops::put_in_place(tmp, &job.path, sync)
                    .map_err(|e| format!("cannot put in place: {e}")),
            };
            if let Err(reason) = placed {
                let _ = std::fs::remove_file(tmp);
                created[job.entry] = false;
                self.summary.files -= 1;
                self.not_restored(job.path.clone(), reason);
            } else if sync {
                if let Some(dir) = job.path.parent() {
                    synced_dirs.insert(dir.to_path_buf());
                }
            }
        }
        for dir in synced_dirs {
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(&dir, "cannot sync directory", e))?;
        }
        Ok(())
    }

    /// Make the hard links to files that are now complete.
    fn link_deferred(&mut self, entries: &[Entry], created: &mut [bool]) {
        for (i, path, file_entry) in std::mem::take(&mut self.deferred_links) {
            if !created[file_entry] {
                let reason = "the file it is a hard link to was not restored".to_string();
                self.not_restored(path, reason);
                continue;
            }
            let first = self.opts.target.join(&entries[file_entry].rel);
            match fsops::link_in_place(&first, &path) {
                Ok(()) => {
                    self.summary.others += 1;
                    created[i] = true;
                }
                Err(e) => self.not_restored(path, format!("cannot create hard link: {e}")),
            }
        }
    }

    fn delete_extra(&mut self, dir: &Path, keep: &HashSet<Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in rd.filter_map(|e| e.ok()) {
            if keep.contains(entry.file_name().as_bytes()) {
                continue;
            }
            match fsops::remove_any(&entry.path()) {
                Ok(()) => self.summary.deleted += 1,
                Err(e) => self.warn(&entry.path(), &format!("cannot delete: {e}")),
            }
        }
    }

    /// Set metadata on what restore created: files and other entries first,
    /// directories last and deepest first, so writing into a directory does
    /// not change its times.
    fn finish_metadata(&mut self, entries: &[Entry], created: &[bool]) {
        let made = || {
            entries
                .iter()
                .zip(created)
                .filter(|(_, c)| **c)
                .map(|(e, _)| e)
        };
        for e in made().filter(|e| !e.node.is_dir()) {
            self.apply(&self.opts.target.join(&e.rel), &e.node);
        }
        let dirs: Vec<&Entry> = made().filter(|e| e.node.is_dir()).collect();
        for e in dirs.into_iter().rev() {
            self.apply(&self.opts.target.join(&e.rel), &e.node);
        }
    }

    fn apply(&mut self, path: &Path, node: &Node) {
        let owner = self.root_owner
            || (node.uid == nix::unistd::geteuid().as_raw()
                && node.gid == nix::unistd::getegid().as_raw());
        for f in fsops::apply_metadata(path, node, owner) {
            self.warn(path, &format!("cannot restore {}: {}", f.field, f.error));
        }
        if !owner {
            self.warn(
                path,
                &format!(
                    "cannot restore owner {}:{} as an ordinary user",
                    node.uid, node.gid
                ),
            );
        }
    }
}
