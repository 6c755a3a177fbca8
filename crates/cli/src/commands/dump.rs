use std::io::{self, Write};
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
            io::copy(&mut repo.file_reader(&n), &mut out)?;
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
            tar.append_data(&mut h, path, repo.file_reader(n))?;
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
