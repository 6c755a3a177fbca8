//! Saving streams (standard input, command output, database dumps) as
//! files of the snapshot, several at once, each straight from its pipe
//! through the chunker into packs.
//!
//! A stream is complete only when its reader reached the end and its
//! command exited with status 0. Anything else leaves its node out: the
//! blobs already stored stay unreferenced until a prune, never shown as a
//! whole file.

use std::collections::BTreeMap;
use std::io::Read;

use crossbeam_channel::unbounded;

use crate::chunker::{ChunkError, Chunker};
use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind, Time};
use crate::id::Id;
use crate::packer::BlobSaver;
use crate::sources::{command, Stream, StreamName, StreamSource};

use super::delta::{ChunkSaver, DeltaPlan, Previous};
use super::FileOutcome;

/// How a stream ended: saved (its node and what reading it did), or
/// failed with a message naming why.
pub(super) type StreamResult = (StreamName, std::result::Result<(Node, FileOutcome), String>);

/// Who and when a stream's file and its directories are recorded as.
#[derive(Clone)]
pub(super) struct Stamp {
    pub time: Time,
    pub uid: u32,
    pub gid: u32,
    pub user: Option<String>,
    pub group: Option<String>,
}

impl Stamp {
    pub(super) fn now(time: jiff::Timestamp) -> Stamp {
        let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
        let mut names = crate::walk::NameCache::default();
        Stamp {
            time: Time {
                s: time.as_second(),
                ns: time.subsec_nanosecond().max(0) as u32,
            },
            uid: uid.as_raw(),
            gid: gid.as_raw(),
            user: names.user(uid.as_raw()),
            group: names.group(gid.as_raw()),
        }
    }

    /// A node for `name`: a file of mode 0600 or a directory of mode 0700.
    pub(super) fn node(&self, name: &str, kind: NodeKind) -> Node {
        Node {
            name: name.as_bytes().to_vec(),
            kind,
            mode: if kind == NodeKind::Dir { 0o700 } else { 0o600 },
            uid: self.uid,
            gid: self.gid,
            user: self.user.clone(),
            group: self.group.clone(),
            size: 0,
            mtime: self.time,
            atime: self.time,
            ctime: self.time,
            inode: 0,
            device: 0,
            links: 1,
            rdev: None,
            target: None,
            content: None,
            extents: None,
            subtree: None,
            xattrs: Vec::new(),
        }
    }
}

/// Refuse stream names that collide with each other or with the names the
/// backed-up paths get at the snapshot's top, before anything runs.
pub(super) fn check_names(streams: &[Stream], top_names: &[Vec<u8>]) -> Result<()> {
    // Every file a stream is, and every directory made for one: a name
    // may be one or the other, once.
    let mut files: std::collections::HashMap<&str, &str> = Default::default();
    let mut dirs: std::collections::HashMap<&str, &str> = Default::default();
    for stream in streams {
        let name = stream.name.as_str();
        let clash = |other: &str| {
            Err(Error::invalid(format!(
                "two streams would be stored as {other:?} and {name:?}: give each its own name"
            )))
        };
        if let Some(other) = files.insert(name, name).or_else(|| dirs.get(name).copied()) {
            return clash(other);
        }
        for (i, _) in name.match_indices('/') {
            let dir = &name[..i];
            if let Some(other) = files.get(dir) {
                return clash(other);
            }
            dirs.entry(dir).or_insert(name);
        }
    }
    if let Some(stream) = streams
        .iter()
        .find(|s| top_names.iter().any(|t| t == s.name.top().as_bytes()))
    {
        return Err(Error::invalid(format!(
            "the stream {:?} would be stored in {:?}, where a backed-up path is stored: give the stream another name",
            stream.name.as_str(),
            stream.name.top()
        )));
    }
    Ok(())
}

/// Save every stream, `jobs` at a time. A repository failure or an
/// interruption stops them all (`Err`); a stream that fails is a result.
pub(super) fn save_all(
    saver: &BlobSaver,
    chunker: &Chunker,
    streams: Vec<Stream>,
    jobs: usize,
    stamp: &Stamp,
    previous: &std::collections::HashMap<StreamName, Previous>,
    sequence: u64,
) -> Result<Vec<StreamResult>> {
    if streams.is_empty() {
        return Ok(Vec::new());
    }
    let (tx, rx) = unbounded();
    for s in streams {
        let _ = tx.send(s);
    }
    drop(tx);
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let jobs = match jobs {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n.min(crate::MAX_THREADS),
        };
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                let (rx, failed) = (rx.clone(), &failed);
                scope.spawn(move || -> Result<Vec<StreamResult>> {
                    let mut buf = Vec::new();
                    let mut results = Vec::new();
                    for stream in rx {
                        if failed.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let name = stream.name.clone();
                        let before = previous.get(&name).map(|p| (p, sequence));
                        let saved = save_one(saver, chunker, stream, before, &mut buf)
                            .inspect_err(|_| {
                                // The backup fails: stop the other streams.
                                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                                command::stop_all();
                            })?;
                        results.push((name, saved.map(|(ids, o)| stream_node(stamp, ids, o))));
                    }
                    Ok(results)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut error = None;
        for w in workers {
            match w.join() {
                Ok(Ok(results)) => all.extend(results),
                Ok(Err(e)) => {
                    error.get_or_insert(e);
                }
                Err(_) => {
                    error.get_or_insert(Error::invalid("a stream thread stopped unexpectedly"));
                }
            }
        }
        if let Some(e) = error {
            return Err(e);
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    })
}

fn stream_node(stamp: &Stamp, ids: Vec<Id>, outcome: FileOutcome) -> (Node, FileOutcome) {
    let mut node = stamp.node("", NodeKind::File);
    node.size = outcome.bytes_read;
    node.content = Some(ids);
    (node, outcome)
}

/// Read one stream to its end. `Ok(Err(message))`: the stream failed;
/// `Err`: the repository failed or the backup was interrupted.
fn save_one(
    saver: &BlobSaver,
    chunker: &Chunker,
    stream: Stream,
    previous: Option<(&Previous, u64)>,
    buf: &mut Vec<u8>,
) -> Result<std::result::Result<(Vec<Id>, FileOutcome), String>> {
    crate::interrupt::check()?;
    match stream.source {
        StreamSource::Reader(shared) => {
            let reader = shared.lock().unwrap_or_else(|p| p.into_inner()).take();
            let Some(mut reader) = reader else {
                return Ok(Err("the stream was already read".into()));
            };
            chunk_into(saver, chunker, &mut reader, previous, buf)
                .map(|r| r.map_err(|e| format!("cannot read: {e}")))
        }
        StreamSource::Command(spec) => {
            let mut running = match spec.spawn() {
                Ok(r) => r,
                Err(e) => {
                    return Ok(Err(format!(
                        "cannot run {}: {e}",
                        spec.program.to_string_lossy()
                    )))
                }
            };
            let read = match running.stdout() {
                Some(mut stdout) => chunk_into(saver, chunker, &mut stdout, previous, buf),
                None => Ok(Err(std::io::Error::other("no standard output"))),
            };
            if !matches!(read, Ok(Ok(_))) {
                running.kill();
            }
            let finished = running.finish();
            let saved = read?;
            crate::interrupt::check()?;
            Ok(match (saved, finished) {
                (Ok(s), Ok(())) => Ok(s),
                (_, Err(how)) => Err(format!("`{spec}` {how}; its output was not saved")),
                (Err(e), Ok(())) => Err(format!("cannot read the output of `{spec}`: {e}")),
            })
        }
    }
}

/// Chunk and save everything `reader` yields, new chunks as deltas against
/// the `previous` version's when that is much smaller. `Ok(Err)`: reading
/// failed.
fn chunk_into(
    saver: &BlobSaver,
    chunker: &Chunker,
    reader: &mut dyn Read,
    previous: Option<(&Previous, u64)>,
    buf: &mut Vec<u8>,
) -> Result<std::io::Result<(Vec<Id>, FileOutcome)>> {
    let mut ids = Vec::new();
    let mut outcome = FileOutcome::default();
    let plan = previous.map(|(previous, sequence)| DeltaPlan {
        previous,
        sequence,
        give_up: false,
    });
    let mut chunks = ChunkSaver::new(saver, plan, true, 0);
    let sink = |chunk: &[u8]| -> Result<()> {
        ids.push(chunks.save(chunk, &mut outcome)?);
        Ok(())
    };
    match chunker.chunk(reader, buf, sink) {
        Ok(n) => {
            outcome.bytes_read = n;
            outcome.size = n;
            Ok(Ok((ids, outcome)))
        }
        Err(ChunkError::Read(e)) => Ok(Err(e)),
        Err(ChunkError::Sink(e)) => Err(e),
    }
}

/// The top-level nodes for the saved streams: directories made for the
/// inner components of their names, saved bottom-up with `save_tree`.
pub(super) fn top_nodes(
    saved: Vec<(StreamName, Node)>,
    stamp: &Stamp,
    save_tree: &mut dyn FnMut(Vec<Node>) -> Result<Id>,
) -> Result<Vec<Node>> {
    #[derive(Default)]
    struct Dir {
        files: Vec<Node>,
        dirs: BTreeMap<String, Dir>,
    }
    let mut root = Dir::default();
    for (name, mut node) in saved {
        let parts: Vec<&str> = name.components().collect();
        let (file, dirs) = parts.split_last().unwrap_or((&"", &[]));
        let mut dir = &mut root;
        for d in dirs {
            dir = dir.dirs.entry(d.to_string()).or_default();
        }
        node.name = file.as_bytes().to_vec();
        dir.files.push(node);
    }
    fn save(
        dir: Dir,
        stamp: &Stamp,
        save_tree: &mut dyn FnMut(Vec<Node>) -> Result<Id>,
    ) -> Result<Vec<Node>> {
        let mut nodes = dir.files;
        for (name, sub) in dir.dirs {
            let children = save(sub, stamp, save_tree)?;
            let mut node = stamp.node(&name, NodeKind::Dir);
            node.subtree = Some(save_tree(children)?);
            nodes.push(node);
        }
        Ok(nodes)
    }
    save(root, stamp, save_tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(names: &[&str]) -> Vec<Stream> {
        names
            .iter()
            .map(|n| Stream::shell(StreamName::parse(n).unwrap(), "true"))
            .collect()
    }

    #[test]
    fn colliding_stream_names_are_refused() {
        assert!(check_names(&named(&["a.sql", "b.sql"]), &[]).is_ok());
        assert!(check_names(&named(&["mysql/a.sql", "mysql/b.sql"]), &[]).is_ok());
        assert!(check_names(&named(&["a.sql", "a.sql"]), &[]).is_err());
        assert!(check_names(&named(&["mysql", "mysql/a.sql"]), &[]).is_err());
        assert!(check_names(&named(&["mysql/a.sql"]), &[b"mysql".to_vec()]).is_err());
        assert!(check_names(&named(&["mysql-x/a.sql", "mysql"]), &[]).is_ok());
        assert!(check_names(&named(&["a", "a.x", "a/b"]), &[]).is_err());
        assert!(check_names(&named(&["a/b", "a.x", "a"]), &[]).is_err());
        assert!(check_names(&named(&["a/b/c", "a/b"]), &[]).is_err());
    }
}
