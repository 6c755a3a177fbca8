use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use strata_core::format::tree::{Node, NodeKind};
use strata_core::repository::Repository;
use strata_core::Id;

use crate::repo::{self, FilterArgs, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot: `latest` or an id prefix.
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// Path inside the snapshot; a directory (or `/`) is written as a tar stream.
    #[arg(value_name = "PATH")]
    path: std::ffi::OsString,
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let repo = repo::open(global)?;
    repo.load_index()?;
    let (_, snap) = strata_core::select::find(&repo, &args.snapshot, &args.filter.filter()?)?;
    let node = super::find_path(&repo, &snap, &args.path)?;
    let is_file = node.as_ref().is_some_and(|n| n.kind == NodeKind::File);
    if !is_file && io::IsTerminal::is_terminal(&io::stdout()) {
        return Err(strata_core::Error::invalid(format!(
            "{} is a directory: it would be written to the terminal as a tar archive; \
             redirect it (`strata dump … > files.tar`, `| tar -t`) or use `strata restore`",
            crate::output::path(Path::new(&args.path))
        ))
        .into());
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 20, stdout.lock());
    match node {
        Some(n) if n.kind == NodeKind::File => {
            io::copy(&mut NodeReader::new(repo.clone(), &n), &mut out)?;
        }
        Some(n) if n.is_dir() => {
            let name = Path::new(std::ffi::OsStr::from_bytes(&n.name)).to_path_buf();
            let mut tar = tar::Builder::new(&mut out);
            append(&mut tar, &repo, &name, &n)?;
            write_dir(
                &mut tar,
                &repo,
                n.subtree.context("directory without tree")?,
                &name,
            )?;
            tar.finish()?;
        }
        Some(n) => bail!(
            "{} is a {:?}, not a file or directory",
            crate::output::path(Path::new(&args.path)),
            n.kind
        ),
        None => {
            let mut tar = tar::Builder::new(&mut out);
            write_dir(&mut tar, &repo, snap.tree, Path::new(""))?;
            tar.finish()?;
        }
    }
    out.flush()?;
    Ok(crate::exit::OK)
}

use std::os::unix::ffi::OsStrExt;

fn write_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    repo: &Arc<Repository>,
    tree: Id,
    prefix: &Path,
) -> Result<()> {
    super::walk_tree(repo, tree, prefix, &mut |path, node| {
        append(tar, repo, path, node)?;
        Ok(true)
    })
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    repo: &Arc<Repository>,
    path: &Path,
    n: &Node,
) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_mode(n.mode);
    h.set_uid(u64::from(n.uid));
    h.set_gid(u64::from(n.gid));
    h.set_mtime(n.mtime.s.max(0) as u64);
    if let Some(u) = &n.user {
        let _ = h.set_username(u);
    }
    if let Some(g) = &n.group {
        let _ = h.set_groupname(g);
    }
    h.set_size(0);
    let kind = match n.kind {
        NodeKind::File => tar::EntryType::Regular,
        NodeKind::Dir => tar::EntryType::Directory,
        NodeKind::Symlink => tar::EntryType::Symlink,
        NodeKind::Fifo => tar::EntryType::Fifo,
        NodeKind::Chardev => tar::EntryType::Char,
        NodeKind::Blockdev => tar::EntryType::Block,
        NodeKind::Socket => return Ok(()),
    };
    h.set_entry_type(kind);
    if let Some(rdev) = n.rdev {
        let _ = h.set_device_major(nix::sys::stat::major(rdev) as u32);
        let _ = h.set_device_minor(nix::sys::stat::minor(rdev) as u32);
    }
    let path = path.strip_prefix("/").unwrap_or(path);
    match n.kind {
        NodeKind::File => {
            h.set_size(n.size);
            tar.append_data(&mut h, path, NodeReader::new(repo.clone(), n))?;
        }
        NodeKind::Symlink => {
            let target = Path::new(std::ffi::OsStr::from_bytes(
                n.target.as_deref().unwrap_or_default(),
            ));
            tar.append_link(&mut h, path, target)?;
        }
        _ => tar.append_data(&mut h, path, io::empty())?,
    }
    Ok(())
}

/// Reads a file node's bytes, fetching one blob at a time and producing
/// zeros for the holes of sparse files.
pub struct NodeReader {
    repo: Arc<Repository>,
    blobs: std::vec::IntoIter<Id>,
    /// (file offset, length) of each data extent; dense files have one.
    extents: std::vec::IntoIter<(u64, u64)>,
    current: Vec<u8>,
    pos_in_current: usize,
    file_pos: u64,
    size: u64,
    extent: Option<(u64, u64)>,
}

impl NodeReader {
    pub fn new(repo: Arc<Repository>, n: &Node) -> NodeReader {
        let extents: Vec<(u64, u64)> = match &n.extents {
            Some(e) => e.iter().map(|x| (x.offset, x.length)).collect(),
            None => vec![(0, u64::MAX)],
        };
        NodeReader {
            repo,
            blobs: n.content.clone().unwrap_or_default().into_iter(),
            extents: extents.into_iter(),
            current: Vec::new(),
            pos_in_current: 0,
            file_pos: 0,
            size: n.size,
            extent: None,
        }
    }

    fn next_data(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos_in_current == self.current.len() {
            match self.blobs.next() {
                Some(id) => {
                    self.current = self.repo.read_blob(&id).map_err(io::Error::other)?;
                    self.pos_in_current = 0;
                }
                None => return Ok(0),
            }
        }
        let n = (self.current.len() - self.pos_in_current).min(out.len());
        out[..n].copy_from_slice(&self.current[self.pos_in_current..self.pos_in_current + n]);
        self.pos_in_current += n;
        Ok(n)
    }
}

impl Read for NodeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.file_pos >= self.size {
            return Ok(0);
        }
        let max = ((self.size - self.file_pos).min(out.len() as u64)) as usize;
        loop {
            if self
                .extent
                .is_none_or(|(off, len)| self.file_pos >= off.saturating_add(len))
            {
                self.extent = self.extents.next();
            }
            let Some((off, len)) = self.extent else {
                // after the last extent: a trailing hole
                out[..max].fill(0);
                self.file_pos += max as u64;
                return Ok(max);
            };
            if self.file_pos < off {
                let n = ((off - self.file_pos) as usize).min(max);
                out[..n].fill(0);
                self.file_pos += n as u64;
                return Ok(n);
            }
            let n = ((off.saturating_add(len) - self.file_pos) as usize).min(max);
            if n == 0 {
                continue;
            }
            let got = self.next_data(&mut out[..n])?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file data ends before its size",
                ));
            }
            self.file_pos += got as u64;
            return Ok(got);
        }
    }
}
