//! The backup engine: walk paths, save changed files, write a snapshot.
//!
//! One walker thread visits directories depth first, stats entries and
//! builds trees; worker threads read, chunk, hash, compress, seal and pack
//! file contents. The job queue is bounded, so memory is bounded by the
//! number of workers times their buffers, not by the size of the tree.
//! A file whose size, mtime, ctime and inode equal its node in the parent
//! snapshot is not opened: its content list is reused.
//!
//! Write order (what makes a killed backup harmless): every pack is stored
//! before the index file that lists it, and the index before the snapshot.

mod append;
mod delta;
use delta::DeltaPlan;
mod file;
mod prefetch;
mod streams;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::format::snapshot::{Snapshot, Summary};
use crate::format::to_cbor;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::Id;
use crate::packer::BlobSaver;
use crate::repository::{LockKind, Repository};
use crate::select;
use crate::sources::{Source, Stream};
use crate::walk::{node_reusing, ExcludeOptions, Excluder, NameCache};

pub use append::AppendVerify;
pub(crate) use file::chunk_ids;
pub use file::{content_of, open_for_reading, FileError, FileOutcome};

/// What the caller wants backed up and how.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub excludes: ExcludeOptions,
    pub hostname: Option<String>,
    pub tags: Vec<String>,
    pub time: Option<jiff::Timestamp>,
    /// Use this snapshot as parent instead of looking one up.
    pub parent: Option<Id>,
    /// Read every file even if the parent says it is unchanged.
    pub force: bool,
    /// Worker threads reading files; 0 means one per core.
    pub threads: usize,
    /// Streams and databases stored beside the paths.
    pub sources: Vec<Source>,
    /// gitignore-style patterns of files that only grow at the end: when
    /// one grew, only its new tail is read (after verifying the old part).
    pub append_only: Vec<String>,
    pub append_verify: AppendVerify,
    /// Streams (commands, database dumps) read at the same time; 0 means
    /// one per core.
    pub stream_jobs: usize,
    /// Whether changed files are stored as deltas against their previous
    /// version (format version 2 repositories; streams always are).
    pub delta: DeltaMode,
    /// gitignore-style patterns of files stored as deltas whatever their
    /// size, and without giving up (`--delta-pattern`).
    pub delta_patterns: Vec<String>,
}

/// Which changed files a backup stores as deltas against their previous
/// version (docs/design.md, "Delta storage").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeltaMode {
    /// Files of at least [`DELTA_FILE_THRESHOLD`] bytes, until deltas stop
    /// paying for one, and files matching a delta pattern.
    #[default]
    Auto,
    /// Only files matching a delta pattern.
    Off,
}

pub use delta::FILE_THRESHOLD as DELTA_FILE_THRESHOLD;

impl BackupOptions {
    pub fn new(paths: Vec<PathBuf>) -> BackupOptions {
        BackupOptions {
            paths,
            excludes: ExcludeOptions::default(),
            hostname: None,
            tags: Vec::new(),
            time: None,
            parent: None,
            force: false,
            threads: 0,
            sources: Vec::new(),
            stream_jobs: DEFAULT_STREAM_JOBS,
            append_only: Vec::new(),
            append_verify: AppendVerify::Quick,
            delta: DeltaMode::Auto,
            delta_patterns: Vec::new(),
        }
    }
}

/// Streams read at once unless asked otherwise: database dumps load their
/// server, so a few at a time.
pub const DEFAULT_STREAM_JOBS: usize = 2;

/// Events of a running backup; every method has a do-nothing default.
pub trait Progress: Sync {
    /// A path could not be backed up; the snapshot will be partial.
    fn error(&self, _path: &Path, _message: &str) {}
    /// Something worth telling that does not make the snapshot partial.
    fn warning(&self, _path: &Path, _message: &str) {}
    /// A file is done: how many of its bytes were read and added.
    fn file_done(&self, _path: &Path, _outcome: &FileOutcome) {}
    fn dir_done(&self, _path: &Path) {}
}

/// A [`Progress`] that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Files queued for the workers, each already opened and being read ahead
/// by the kernel: deep enough that the workers stay busy while the walker
/// waits for the disk to stat a directory, small enough to bound open files.
const QUEUE: usize = 64;

/// Threads stat'ing ahead of the walker (see `prefetch.rs`): enough to keep
/// several metadata reads in flight on a cold cache.
const PREFETCHERS: usize = 2;

/// The reply of a worker: the file's node (with content) or why it failed.
type FileReply = (Node, Result<FileOutcome, FileError>);
/// Files handed to workers and not yet collected, with their paths.
/// Files being read by the workers, with what the parent snapshot held at
/// their path: `None` if nothing, else its contents (if it was a file).
type Pending = Vec<(PathBuf, Option<Option<Vec<Id>>>, Receiver<FileReply>)>;

struct Job {
    path: PathBuf,
    /// Opened by the walker, which asked the kernel to start reading it.
    file: std::io::Result<std::fs::File>,
    node: Node,
    /// For a grown append-only file: its old chunks and where to restart.
    append: Option<append::AppendPlan>,
    /// For a changed file stored with deltas: its previous version, and
    /// whether deltas are forced by a pattern.
    delta: Option<(delta::Previous, bool)>,
    reply: Sender<FileReply>,
}

struct Walker<'a> {
    saver: &'a BlobSaver,
    excluder: &'a Excluder,
    progress: &'a dyn Progress,
    jobs: Sender<Job>,
    names: NameCache,
    summary: Summary,
    force: bool,
    /// Parent nodes are trusted only if their ctime is before this.
    trusted_before: Option<crate::format::tree::Time>,
    /// The entry being visited is one of the paths given to back up.
    at_root: bool,
    append_only: Option<ignore::gitignore::Gitignore>,
    append_verify: AppendVerify,
    delta: DeltaMode,
    delta_patterns: Option<ignore::gitignore::Gitignore>,
}

/// Run a backup. Returns the new snapshot's id and the snapshot.
pub fn run(
    repo: &Arc<Repository>,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<(Id, Snapshot)> {
    let started = Instant::now();
    let backup_start = jiff::Timestamp::now();
    let snapshot_time = opts.time.unwrap_or(backup_start);
    check_sources(opts)?;
    let lock = repo.lock(LockKind::Shared)?;
    crate::interrupt::listen();
    repo.load_index()?;
    let roots = top_level(&opts.paths, !opts.sources.is_empty())?;
    let (streams, source_failures) = expand_sources(&opts.sources);
    // A stop asked while the databases were listed killed their clients.
    crate::interrupt::check()?;
    let required: Vec<_> = streams
        .iter()
        .filter(|s| s.required)
        .map(|s| s.name.clone())
        .collect();
    let top_names: Vec<Vec<u8>> = roots.iter().map(|(_, n)| n.clone()).collect();
    streams::check_names(&streams, &top_names)?;
    let stamp = streams::Stamp::now(snapshot_time);
    let hostname = opts.hostname.clone().unwrap_or_else(crate::hostname);
    let paths: Vec<String> = roots
        .iter()
        .map(|(p, _)| crate::format::path_text(p.as_os_str().as_bytes()))
        .collect();
    let parent = find_parent(repo, opts, &hostname, &paths)?;
    // Parent nodes changed less than a second before the parent backup began
    // might have changed again within the same timestamp tick: not trusted.
    let trusted_before = parent
        .as_ref()
        .and_then(|(_, s)| s.summary.as_ref()?.backup_start)
        .map(|t| crate::format::tree::Time {
            s: t.as_second() - 1,
            ns: t.subsec_nanosecond().max(0) as u32,
        });
    // A damaged parent costs speed, not the backup: go on without it.
    let parent_tree = match &parent {
        Some((id, snap)) => match repo.load_tree(&snap.tree) {
            Ok(tree) => Some(tree),
            Err(e) => {
                progress.warning(
                    Path::new("/"),
                    &format!(
                        "parent snapshot {} is unreadable ({e}); reading every file",
                        id.short()
                    ),
                );
                None
            }
        },
        None => None,
    };
    let saver = BlobSaver::new(repo.clone());
    let previous = previous_streams(repo, &streams, parent.as_ref().map(|(_, s)| s));
    // Numbers the backups of a series, to choose delta bases.
    let sequence = parent.as_ref().map_or(0, |(_, s)| s.sequence + 1);
    // One reader per core: the walker opens files and asks the kernel to
    // read ahead, so workers rarely wait for the disk (docs/benchmarks.md).
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads.min(crate::MAX_THREADS)
    };
    let (jobs_tx, jobs_rx) = bounded::<Job>(QUEUE);
    let chunker = crate::chunker::Chunker::new(&repo.config().chunker);
    let excluder = Excluder::new(opts.excludes.clone())?;
    let walk_done = std::sync::atomic::AtomicBool::new(false);
    let dirs: Vec<PathBuf> = roots
        .iter()
        .map(|(p, _)| p.clone())
        .filter(|p| p.symlink_metadata().is_ok_and(|m| m.is_dir()))
        .collect();
    let prefetch = prefetch::Prefetch::new(dirs, &walk_done, &excluder);
    let walked = std::thread::scope(|scope| -> Result<(Id, Summary, Vec<String>)> {
        // Only when a parent lets most files go unread: then the walk is the
        // backup. Without one, workers keep both cores busy on their own.
        if parent_tree.is_some() {
            for _ in 0..PREFETCHERS {
                scope.spawn(|| prefetch.run());
            }
        }
        for _ in 0..threads {
            let rx: Receiver<Job> = jobs_rx.clone();
            let (saver, chunker) = (&saver, &chunker);
            scope.spawn(move || {
                let mut buf = Vec::new();
                for job in rx {
                    let plan = job.delta.as_ref().map(|(previous, forced)| DeltaPlan {
                        previous,
                        sequence,
                        give_up: !forced,
                    });
                    let outcome = file::save_file(
                        saver,
                        chunker,
                        job.file,
                        &job.path,
                        job.node,
                        job.append.as_ref(),
                        plan,
                        &mut buf,
                        progress,
                    );
                    let _ = job.reply.send(outcome);
                }
            });
        }
        drop(jobs_rx);
        let streamed = scope.spawn(|| {
            streams::save_all(
                &saver,
                &chunker,
                streams,
                opts.stream_jobs,
                &stamp,
                &previous,
                sequence,
            )
        });
        let mut walker = Walker {
            saver: &saver,
            excluder: &excluder,
            progress,
            jobs: jobs_tx,
            names: NameCache::default(),
            summary: Summary::default(),
            force: opts.force,
            trusted_before,
            at_root: false,
            append_only: crate::walk::patterns(&opts.append_only, "--append-only")?,
            append_verify: opts.append_verify,
            delta: opts.delta,
            delta_patterns: crate::walk::patterns(&opts.delta_patterns, "--delta-pattern")?,
        };
        let nodes = walker.save_roots(&roots, parent_tree.as_ref());
        walk_done.store(true, std::sync::atomic::Ordering::Relaxed);
        if nodes.is_err() {
            crate::sources::command::stop_all();
        }
        let streamed = streamed
            .join()
            .map_err(|_| Error::invalid("the stream thread stopped unexpectedly"))?;
        let mut nodes = nodes?;
        for (name, message) in &source_failures {
            walker.fail(Path::new(name), message);
        }
        let (stream_nodes, names) = walker.add_streams(streamed?, &required, &stamp)?;
        if nodes.is_empty() && stream_nodes.is_empty() {
            return Err(Error::command(
                "nothing was backed up: every source failed (see the errors above); no snapshot was saved",
            ));
        }
        nodes.extend(stream_nodes);
        let tree_id = walker.save_tree(nodes);
        drop(walker.jobs); // lets the workers finish
        Ok((tree_id?, walker.summary, names))
    });
    if walked
        .as_ref()
        .is_err_and(|e| e.kind() == crate::ErrorKind::Interrupted)
    {
        // Stopped by the user: index what was stored, so that the next
        // backup reuses it instead of reading it again. No snapshot.
        let _ = saver
            .flush()
            .and_then(|()| lock.check())
            .and_then(|()| saver.finish());
    }
    let (tree_id, mut summary, stream_names) = walked?;
    // Without a lock, a prune may already have condemned blobs this backup
    // deduplicated against: writing the index and snapshot could then
    // publish references to data about to be deleted (docs/design.md).
    saver.flush()?;
    lock.check()?;
    saver.finish()?;
    summary.duration_ms = started.elapsed().as_millis() as u64;
    summary.backup_start = Some(backup_start);
    let snapshot = Snapshot {
        version: crate::format::VERSION,
        time: snapshot_time,
        tree: tree_id,
        paths,
        streams: stream_names,
        sources: sources_of(opts),
        hostname,
        username: crate::username(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        tags: opts.tags.clone(),
        parent: parent.map(|(id, _)| id),
        sequence,
        original: None,
        partial: summary.errors > 0,
        summary: Some(summary),
        program_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    lock.check()?;
    let id = repo.save_snapshot(&snapshot)?;
    crate::interrupt::mark_committed();
    if repo.storage().keeps_blobs() {
        // The series: the same host and sources back up the same content.
        let mut key = snapshot.hostname.clone();
        for part in snapshot.source_key() {
            key.push('\0');
            key.push_str(&part);
        }
        let series = Id::of_object(key.as_bytes()).to_hex();
        repo.storage().keep_only(&series[..16], &saver.kept());
    }
    Ok((id, snapshot))
}

/// Absolute paths and the names they get at the snapshot's top level.
fn top_level(paths: &[PathBuf], has_sources: bool) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    if paths.is_empty() && !has_sources {
        return Err(Error::invalid(
            "nothing to back up: give at least one path, stream or database",
        ));
    }
    let mut seen: HashMap<Vec<u8>, PathBuf> = HashMap::new();
    let mut out = Vec::new();
    for p in paths {
        let abs = std::path::absolute(p).map_err(|e| Error::io(p, "cannot resolve", e))?;
        let abs = normalize(&abs);
        p.symlink_metadata()
            .map_err(|e| Error::io(p, "cannot back up", e))?;
        let name = stored_name(&abs);
        if let Some(other) = seen.insert(name.clone(), abs.clone()) {
            return Err(Error::invalid(format!(
                "{} and {} would both be stored as {:?} at the top of the snapshot; back them up separately or give their common parent",
                other.display(),
                abs.display(),
                String::from_utf8_lossy(&name)
            )));
        }
        out.push((abs, name));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Where the streams were in the parent snapshot, for delta storage
/// (format version 2 repositories only).
fn previous_streams(
    repo: &Repository,
    streams: &[Stream],
    parent: Option<&Snapshot>,
) -> HashMap<crate::sources::StreamName, delta::Previous> {
    let mut out = HashMap::new();
    let Some(parent) = parent.filter(|_| repo.deltas()) else {
        return out;
    };
    for s in streams {
        let node = repo.node_if_present(parent.tree, s.name.as_str().as_bytes());
        if let Some(content) = node.ok().flatten().and_then(|n| n.content) {
            if let Some(p) = delta::Previous::new(repo, &content) {
                out.insert(s.name.clone(), p);
            }
        }
    }
    out
}

fn sources_of(opts: &BackupOptions) -> Vec<String> {
    opts.sources.iter().map(Source::label).collect()
}

/// Refuse source settings that cannot work, before taking a lock.
fn check_sources(opts: &BackupOptions) -> Result<()> {
    for source in &opts.sources {
        match source {
            Source::Mysql(o) => o.check()?,
            Source::Postgres(o) => o.check()?,
            Source::Stream(_) => {}
        }
    }
    Ok(())
}

/// The streams the sources stand for, and the failures met finding them.
fn expand_sources(sources: &[Source]) -> (Vec<Stream>, Vec<(String, String)>) {
    let mut streams = Vec::new();
    let mut failures = Vec::new();
    for source in sources {
        let (s, f) = source.expand();
        streams.extend(s);
        failures.extend(f);
    }
    (streams, failures)
}

/// Remove `.` and `..` components lexically (no symlink resolution).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn find_parent(
    repo: &Repository,
    opts: &BackupOptions,
    host: &str,
    paths: &[String],
) -> Result<Option<(Id, Snapshot)>> {
    if opts.force && opts.parent.is_none() {
        return Ok(None);
    }
    let (snaps, _) = repo.snapshots()?;
    if let Some(want) = opts.parent {
        return snaps
            .into_iter()
            .find(|(id, _)| *id == want)
            .map(Some)
            .ok_or_else(|| Error::missing(format!("parent snapshot {want} does not exist")));
    }
    let mut key: Vec<String> = paths.iter().cloned().chain(sources_of(opts)).collect();
    key.sort();
    Ok(select::latest_matching(snaps, |s| {
        s.hostname == host && s.source_key() == key
    }))
}

impl Walker<'_> {
    /// The top-level nodes of the backed-up paths.
    fn save_roots(
        &mut self,
        roots: &[(PathBuf, Vec<u8>)],
        parent: Option<&Tree>,
    ) -> Result<Vec<Node>> {
        let mut pending = Vec::new();
        let mut nodes = Vec::new();
        for (path, name) in roots {
            let parent_node = parent.and_then(|t| find_node(t, name));
            // A path named on the command line is backed up even if a
            // pattern matches it (`backup / --exclude '/*' --exclude '!/home'`
            // must not match `/` itself); patterns apply to what is inside.
            self.at_root = true;
            self.visit(
                path,
                name,
                path.symlink_metadata(),
                parent_node,
                &mut nodes,
                &mut pending,
            )?;
        }
        self.collect(pending, &mut nodes)?;
        Ok(nodes)
    }

    /// Count the streams that were saved, report those that failed, and
    /// return the top-level nodes holding them with the names saved. A
    /// failed stream that was required fails the backup.
    fn add_streams(
        &mut self,
        results: Vec<streams::StreamResult>,
        required: &[crate::sources::StreamName],
        stamp: &streams::Stamp,
    ) -> Result<(Vec<Node>, Vec<String>)> {
        let mut saved = Vec::new();
        for (name, result) in results {
            let path = Path::new(name.as_str());
            match result {
                Ok((node, outcome)) => {
                    self.summary.streams += 1;
                    if node.size == 0 {
                        self.summary.streams_empty += 1;
                        self.progress
                            .warning(path, "the stream was empty; saved as an empty file");
                    }
                    self.progress.file_done(path, &outcome);
                    self.summary.bytes_read += outcome.bytes_read;
                    self.summary.total_bytes += node.size;
                    self.summary.blobs_added += outcome.blobs_added;
                    self.summary.data_added += outcome.data_added;
                    self.summary.data_added_stored += outcome.stored_added;
                    saved.push((name, node));
                }
                Err(message) if required.contains(&name) => {
                    return Err(Error::command(format!(
                        "{name}: {message}; no snapshot was saved"
                    )));
                }
                Err(message) => self.fail(path, &message),
            }
        }
        let names = saved.iter().map(|(n, _)| n.to_string()).collect();
        let nodes = streams::top_nodes(saved, stamp, &mut |nodes| self.save_tree(nodes))?;
        Ok((nodes, names))
    }

    /// Stat one entry and add its node (now, or via a worker) to `nodes`.
    #[allow(clippy::too_many_arguments)]
    fn visit(
        &mut self,
        path: &Path,
        name: &[u8],
        meta: std::io::Result<std::fs::Metadata>,
        parent: Option<&Node>,
        nodes: &mut Vec<Node>,
        pending: &mut Pending,
    ) -> Result<()> {
        crate::interrupt::check()?;
        let at_root = std::mem::take(&mut self.at_root);
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                self.fail(path, &format!("cannot stat: {e}"));
                return Ok(());
            }
        };
        if !at_root && self.excluder.excludes(path, &meta) {
            return Ok(());
        }
        // Xattrs and link targets of an inode whose ctime has not moved are
        // taken from the parent (with the same trust rule as contents).
        let same =
            parent.filter(|p| !self.force && self.trusted_before.is_none_or(|t| p.ctime < t));
        let mut node = match node_reusing(path, name, &meta, &mut self.names, same) {
            Ok(n) => n,
            Err(e) => {
                self.fail(path, &e.to_string());
                return Ok(());
            }
        };
        match node.kind {
            NodeKind::File => {
                if let Some(content) = self.unchanged(&node, parent) {
                    if self.wants_deltas(path, &node) {
                        delta::note_unchanged(self.saver, &content.0);
                    }
                    node.content = Some(content.0);
                    node.extents = content.1;
                    self.summary.files_unchanged += 1;
                    self.summary.total_bytes += node.size;
                    self.progress
                        .file_done(path, &FileOutcome::unchanged(node.size));
                    nodes.push(node);
                } else {
                    let previous =
                        parent.map(|p| p.content.clone().filter(|_| p.kind == NodeKind::File));
                    let (tx, rx) = bounded(1);
                    let append = self.append_plan(path, &node, parent);
                    let delta = match &append {
                        Some(_) => None,
                        None => self.delta_plan(path, &node, parent),
                    };
                    let job = Job {
                        path: path.to_path_buf(),
                        // Only the tail of a grown append-only file is read soon.
                        file: match &append {
                            Some(_) => file::open_for_reading(path),
                            None => file::open_and_prefetch(path, node.size),
                        },
                        node,
                        append,
                        delta,
                        reply: tx,
                    };
                    self.jobs
                        .send(job)
                        .map_err(|_| Error::invalid("backup workers stopped"))?;
                    pending.push((path.to_path_buf(), previous, rx));
                }
            }
            NodeKind::Dir => {
                let parent_tree = match parent.and_then(|p| p.subtree) {
                    Some(id) => self.saver.repo().load_tree(&id).ok().map(|t| (id, t)),
                    None => None,
                };
                // A directory that cannot be listed is left out (and the
                // snapshot is partial) rather than stored as empty, which a
                // mirror restore with --delete would take at its word.
                if let Some(subtree) = self.save_dir(path, meta.dev(), parent_tree)? {
                    node.subtree = Some(subtree);
                    self.summary.dirs += 1;
                    self.progress.dir_done(path);
                    nodes.push(node);
                }
            }
            NodeKind::Symlink => {
                self.summary.symlinks += 1;
                nodes.push(node);
            }
            _ => {
                self.summary.other_nodes += 1;
                nodes.push(node);
            }
        }
        Ok(())
    }

    /// Save a directory's tree; `None` if it cannot be listed.
    fn save_dir(
        &mut self,
        path: &Path,
        dev: u64,
        parent_tree: Option<(Id, Tree)>,
    ) -> Result<Option<Id>> {
        let parent = parent_tree.as_ref().map(|(_, t)| t);
        let mut nodes = Vec::new();
        let mut pending = Vec::new();
        let pseudo = self.excluder.pseudo_filesystem(path, dev);
        if let Some(fs) = pseudo {
            self.progress.warning(
                path,
                &format!("a {fs} pseudo filesystem: stored as an empty directory (--pseudo-filesystems reads it)"),
            );
        }
        if pseudo.is_none() && !self.excluder.excludes_dir_contents(path) {
            // DirEntry::metadata is an fstatat relative to the open
            // directory: no path walk from the root for every entry.
            let mut entries: Vec<(std::ffi::OsString, std::io::Result<std::fs::Metadata>)> =
                Vec::new();
            match std::fs::read_dir(path) {
                Ok(rd) => {
                    for entry in rd {
                        match entry {
                            Ok(e) => entries.push((e.file_name(), e.metadata())),
                            Err(e) => self.fail(path, &format!("cannot list directory: {e}")),
                        }
                    }
                }
                Err(e) => {
                    self.fail(path, &format!("cannot list directory: {e}"));
                    return Ok(None);
                }
            }
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            for (name, meta) in entries {
                let child = path.join(&name);
                let other_fs = meta.as_ref().is_ok_and(|m| m.is_dir() && m.dev() != dev);
                if self.excluder.one_file_system() && other_fs {
                    continue;
                }
                let parent_node = parent.and_then(|t| find_node(t, name.as_bytes()));
                self.visit(
                    &child,
                    name.as_bytes(),
                    meta,
                    parent_node,
                    &mut nodes,
                    &mut pending,
                )?;
            }
        }
        self.collect(pending, &mut nodes)?;
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        // An unchanged directory is its parent's tree, already stored and
        // verified on load: no need to encode, hash and look it up again.
        if let Some((id, tree)) = &parent_tree {
            if tree.nodes == nodes && self.saver.known(id) {
                return Ok(Some(*id));
            }
        }
        self.save_tree(nodes).map(Some)
    }

    fn collect(&mut self, pending: Pending, nodes: &mut Vec<Node>) -> Result<()> {
        for (path, previous, rx) in pending {
            match rx.recv() {
                Ok((node, Ok(outcome))) => {
                    // Read again only because its times were too recent to
                    // trust (or --force): unchanged if its contents are.
                    match previous {
                        None => self.summary.files_new += 1,
                        Some(Some(c)) if node.content.as_ref() == Some(&c) => {
                            self.summary.files_reread += 1
                        }
                        Some(_) => self.summary.files_changed += 1,
                    }
                    self.summary.bytes_read += outcome.bytes_read;
                    self.summary.total_bytes += node.size;
                    self.summary.blobs_added += outcome.blobs_added;
                    self.summary.data_added += outcome.data_added;
                    self.summary.data_added_stored += outcome.stored_added;
                    nodes.push(node);
                }
                Ok((_, Err(FileError::Unreadable(message)))) => self.fail(&path, &message),
                Ok((_, Err(FileError::Repository(e)))) => return Err(e),
                Err(_) => {
                    return Err(Error::invalid(
                        "a backup worker thread stopped unexpectedly",
                    ))
                }
            }
        }
        Ok(())
    }

    fn save_tree(&mut self, mut nodes: Vec<Node>) -> Result<Id> {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let bytes = to_cbor(&Tree { nodes });
        let saved = self.saver.save(BlobKind::Tree, &bytes)?;
        if saved.added {
            self.summary.blobs_added += 1;
            self.summary.data_added += bytes.len() as u64;
            self.summary.data_added_stored += saved.stored;
        }
        Ok(saved.id)
    }

    /// The parent's content if the file is unchanged and still stored.
    fn unchanged(
        &self,
        node: &Node,
        parent: Option<&Node>,
    ) -> Option<(Vec<crate::Id>, Option<Vec<crate::format::tree::Extent>>)> {
        let p = parent?;
        if self.force
            || p.kind != NodeKind::File
            || p.size != node.size
            || p.mtime != node.mtime
            || p.ctime != node.ctime
            || p.inode != node.inode
            || self.trusted_before.is_some_and(|t| p.ctime >= t)
        {
            return None;
        }
        let content = p.content.clone()?;
        if !content.iter().all(|id| self.saver.known(id)) {
            return None;
        }
        Some((content, p.extents.clone()))
    }

    /// The plan to read only the tail of `node`, an append-only file that
    /// grew since `parent` (same inode, dense, all old chunks stored).
    fn append_plan(
        &self,
        path: &Path,
        node: &Node,
        parent: Option<&Node>,
    ) -> Option<append::AppendPlan> {
        let patterns = self.append_only.as_ref()?;
        if !crate::walk::matches_file(patterns, path) {
            return None;
        }
        let p = parent.filter(|p| {
            p.kind == NodeKind::File
                && p.extents.is_none()
                && p.inode == node.inode
                && p.size < node.size
        })?;
        let content = p.content.as_ref()?;
        if !content.iter().all(|id| self.saver.known(id)) {
            return None;
        }
        let repo = self.saver.repo();
        append::AppendPlan::new(
            repo,
            &repo.config().chunker,
            content,
            p.size,
            self.append_verify,
        )
        // A small file is cheaper read whole than verified and tailed
        // (full verification reads it all anyway, and says what it finds).
        .filter(|plan| self.append_verify == AppendVerify::Full || plan.cost(node.size) < node.size)
    }

    /// The previous version of a changed file to store deltas against,
    /// and whether a pattern forces them (else `--delta auto` may give up).
    fn delta_plan(
        &self,
        path: &Path,
        node: &Node,
        parent: Option<&Node>,
    ) -> Option<(delta::Previous, bool)> {
        let repo = self.saver.repo();
        let content = parent
            .filter(|p| p.kind == NodeKind::File && repo.deltas())?
            .content
            .as_ref()?;
        if !self.wants_deltas(path, node) {
            return None;
        }
        Some((
            delta::Previous::new(repo, content)?,
            self.delta_forced(path),
        ))
    }

    /// Whether a pattern says `path` is stored with deltas whatever its size.
    fn delta_forced(&self, path: &Path) -> bool {
        self.delta_patterns
            .as_ref()
            .is_some_and(|p| crate::walk::matches_file(p, path))
    }

    /// Whether the file `node` at `path` is stored with deltas when it changes.
    fn wants_deltas(&self, path: &Path, node: &Node) -> bool {
        (self.delta == DeltaMode::Auto && node.size >= DELTA_FILE_THRESHOLD)
            || self.delta_forced(path)
    }

    fn fail(&mut self, path: &Path, message: &str) {
        self.summary.errors += 1;
        self.progress.error(path, message);
    }
}

fn find_node<'t>(tree: &'t Tree, name: &[u8]) -> Option<&'t Node> {
    tree.nodes
        .binary_search_by(|n| n.name.as_slice().cmp(name))
        .ok()
        .map(|i| &tree.nodes[i])
}

/// The name a path gets inside its parent directory.
pub fn name_of(path: &Path) -> &[u8] {
    path.file_name().map(OsStr::as_bytes).unwrap_or(b"")
}

/// The name a backed-up path gets at the top of the snapshot: its last
/// component, or `root` for `/`.
pub fn stored_name(abs: &Path) -> Vec<u8> {
    match name_of(abs) {
        b"" => b"root".to_vec(),
        name => name.to_vec(),
    }
}
