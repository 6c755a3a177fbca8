//! Sources other than a directory tree: streams stored as files of the
//! snapshot. A stream is a reader (standard input), a command whose
//! standard output is stored, or one of the dumps a database source
//! expands into (one per database, plus the server's users).
//!
//! Nothing a source produces touches the local disk: its bytes go through
//! the chunker straight into the repository's packs. A stream that fails
//! (its command exits non-zero or is killed, the reader fails) is never
//! stored as if it were complete: its node is left out, the blobs already
//! written become unreferenced (prune removes them), and the snapshot is
//! marked partial, or, for a [`Stream::required`] stream, not written.
//!
//! ```no_run
//! use std::sync::Arc;
//! use strata_core::backup::{self, BackupOptions, NoProgress};
//! use strata_core::sources::{mysql, Databases, Source, Stream, StreamName};
//! # let repo: Arc<strata_core::repository::Repository> = unimplemented!();
//! let mut opts = BackupOptions::new(vec!["/etc".into()]);
//! // Every database of the server in ~/.my.cnf, as mysql/<name>.sql.
//! opts.sources.push(Source::Mysql(mysql::Options::new(Databases::All)));
//! // A command's output as the file `ldap/export.ldif`.
//! opts.sources.push(Source::Stream(Stream::shell(
//!     StreamName::parse("ldap/export.ldif")?,
//!     "slapcat -n 1",
//! )));
//! let (id, snapshot) = backup::run(&repo, &opts, &NoProgress)?;
//! # Ok::<(), strata_core::Error>(())
//! ```

pub mod command;
pub mod database;
pub mod mysql;
pub mod postgres;

use std::fmt;
use std::io::Read;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::format::tree::Node;

pub use command::CommandSpec;
pub use database::Databases;

/// Something backed up besides the paths of [`crate::backup::BackupOptions`].
#[derive(Clone, Debug)]
pub enum Source {
    Stream(Stream),
    /// The databases of a MySQL or MariaDB server, as `mysql/<db>.sql`.
    Mysql(mysql::Options),
    /// The databases of a PostgreSQL server, as `postgresql/<db>.sql`.
    Postgres(postgres::Options),
}

impl Source {
    /// How the source is recorded in the snapshot (`mysql:all`,
    /// `postgresql:shop,crm on --host=db2`, `stream:ldap/export.ldif`):
    /// snapshots of the same sources form a group for `forget` and are
    /// each other's parents, so the server a database source connects to
    /// is part of it when it is not the default one.
    pub fn label(&self) -> String {
        let dbs = |d: &Databases| match d {
            Databases::All => "all".to_string(),
            Databases::Only(names) => names.join(","),
        };
        let on = |server: Vec<String>| {
            if server.is_empty() {
                String::new()
            } else {
                format!(" on {}", server.join(" "))
            }
        };
        match self {
            Source::Stream(s) => format!("stream:{}", s.name),
            Source::Mysql(o) => format!("mysql:{}{}", dbs(&o.databases), on(o.server())),
            Source::Postgres(o) => {
                format!("postgresql:{}{}", dbs(&o.databases), on(o.server()))
            }
        }
    }

    /// The streams this source stands for, and the failures that kept some
    /// from being known (a database server that cannot be asked which
    /// databases it has): `(name, message)`.
    pub fn expand(&self) -> (Vec<Stream>, Vec<(String, String)>) {
        match self {
            Source::Stream(s) => (vec![s.clone()], Vec::new()),
            Source::Mysql(o) => o.streams(),
            Source::Postgres(o) => o.streams(),
        }
    }
}

/// The longest file name Linux filesystems take: a longer one could be
/// backed up but never restored.
const NAME_MAX: usize = 255;

/// A path inside the snapshot where a stream is stored: relative,
/// components separated by `/`, each a valid file name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamName(String);

impl StreamName {
    /// Accept `mysql/shop.sql` (a leading `/` is dropped); refuse empty
    /// components, `.`, `..` and NUL.
    pub fn parse(text: &str) -> Result<StreamName> {
        let trimmed = text.trim_start_matches('/');
        let ok = !trimmed.is_empty()
            && trimmed
                .split('/')
                .all(|c| Node::valid_name(c.as_bytes()) && c.len() <= NAME_MAX);
        if !ok {
            return Err(Error::invalid(format!(
                "{text:?} is not a usable stream name: give a path like `db.sql` or `mysql/shop.sql` \
                 (a leading `/` is dropped; no empty components, `.`, `..` or trailing `/`; \
                 each component at most 255 bytes)"
            )));
        }
        Ok(StreamName(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components of the path, first to last.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The top-level name in the snapshot.
    pub fn top(&self) -> &str {
        self.components().next().unwrap_or("")
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reader handed over once: the backup takes it out.
pub type SharedReader = Arc<Mutex<Option<Box<dyn Read + Send>>>>;

/// Where a stream's bytes come from.
#[derive(Clone)]
pub enum StreamSource {
    /// A reader such as standard input, read to its end.
    Reader(SharedReader),
    /// A command's standard output; its exit status decides whether the
    /// stream is complete.
    Command(CommandSpec),
}

impl fmt::Debug for StreamSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamSource::Reader(_) => f.write_str("Reader"),
            StreamSource::Command(c) => write!(f, "Command({c})"),
        }
    }
}

/// A stream stored as the file [`Stream::name`] of the snapshot (mode
/// 0600, owned by the user running the backup, dated at the backup).
#[derive(Clone, Debug)]
pub struct Stream {
    pub name: StreamName,
    pub source: StreamSource,
    /// When this stream fails the backup fails (no snapshot) instead of
    /// saving a partial snapshot without it.
    pub required: bool,
}

impl Stream {
    /// The output of `command`, run by `/bin/sh -c`.
    pub fn shell(name: StreamName, command: &str) -> Stream {
        Stream::command(name, CommandSpec::shell(command))
    }

    pub fn command(name: StreamName, command: CommandSpec) -> Stream {
        Stream {
            name,
            source: StreamSource::Command(command),
            required: false,
        }
    }

    /// Everything `reader` yields (standard input, say).
    pub fn reader(name: StreamName, reader: Box<dyn Read + Send>) -> Stream {
        Stream {
            name,
            source: StreamSource::Reader(Arc::new(Mutex::new(Some(reader)))),
            required: false,
        }
    }
}
