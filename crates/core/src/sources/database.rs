//! What the database sources share: which databases to dump, how a
//! database's name becomes a file name, finding the client programs, and
//! restoring one database by piping its dump into the server's client.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::NodeKind;
use crate::repository::Repository;

use super::command::CommandSpec;
use super::{mysql, postgres};

/// Which databases of a server to dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Databases {
    /// Every database the server lists, less its system schemas.
    All,
    Only(Vec<String>),
}

impl Databases {
    /// `all`, or names separated by commas.
    pub fn parse(text: &str) -> Result<Databases> {
        if text.trim().eq_ignore_ascii_case("all") {
            return Ok(Databases::All);
        }
        let names: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect();
        if names.is_empty() {
            return Err(Error::invalid(format!(
                "{text:?} names no database: give `all` or names separated by commas"
            )));
        }
        Ok(Databases::Only(names))
    }
}

/// The kind of server a dump came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Mysql,
    Postgres,
}

impl Server {
    /// The snapshot directory holding this server's dumps.
    pub fn dir(self) -> &'static str {
        match self {
            Server::Mysql => "mysql",
            Server::Postgres => "postgresql",
        }
    }
}

/// The file name of a database's dump: `<name>.sql`, with `%`, `/` and NUL
/// written as `%25`, `%2F`, `%00`, and a leading `_` as `%5F` (names
/// starting with `_` are the server-wide files, such as `_grants.sql`).
pub fn file_name(database: &str) -> String {
    let mut out = String::with_capacity(database.len() + 4);
    for (i, c) in database.chars().enumerate() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '\0' => out.push_str("%00"),
            '_' if i == 0 => out.push_str("%5F"),
            c => out.push(c),
        }
    }
    out.push_str(".sql");
    out
}

/// The streams of a database source: one dump per database (the
/// selected ones, or every one `list` finds) as `<dir>/<name>.sql`, then
/// the server-wide `extra` stream if any. A server that cannot be asked
/// for its databases is a failure named `dir`.
pub(super) fn database_streams(
    dir: &str,
    databases: &Databases,
    list: impl FnOnce() -> std::result::Result<Vec<String>, String>,
    dump: impl Fn(&str) -> CommandSpec,
    extra: Option<(&str, CommandSpec)>,
) -> (Vec<super::Stream>, Vec<(String, String)>) {
    let mut failures = Vec::new();
    let names = match databases {
        Databases::Only(names) => names.clone(),
        Databases::All => match list() {
            Ok(names) => names,
            Err(e) => return (Vec::new(), vec![(dir.to_string(), e)]),
        },
    };
    let mut streams = Vec::new();
    for db in names {
        match super::StreamName::parse(&format!("{dir}/{}", file_name(&db))) {
            Ok(name) => streams.push(super::Stream::command(name, dump(&db))),
            Err(e) => failures.push((format!("{dir}/{db}"), e.to_string())),
        }
    }
    if let Some((file, spec)) = extra {
        if let Ok(name) = super::StreamName::parse(&format!("{dir}/{file}")) {
            streams.push(super::Stream::command(name, spec));
        }
    }
    (streams, failures)
}

/// The first program of `names` found on `PATH`.
pub(super) fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Refuse client options that would put a password on a command line
/// (`ps` shows it to every user) or make the client wait at a prompt: the
/// long options in `refused`, also abbreviated (clients take any unique
/// prefix), in other cases or with MySQL's `loose-`/`maximum-`, any
/// option mentioning a password (a connection string), and short options,
/// whose bundles (`-Bpsecret`) cannot be told apart without each client's
/// option table: the long forms (`--host=…`) are asked for instead.
pub(super) fn check_options(options: &[String], refused: &[&str], instead: &str) -> Result<()> {
    for opt in options {
        let refuse = |why: &str| {
            Err(Error::invalid(format!(
                "the client option {opt:?} is refused: {why}"
            )))
        };
        let Some(long) = opt.strip_prefix("--") else {
            if opt.starts_with('-') {
                return refuse("give client options in their long form (--host=…, --socket=…, --port=…, --user=…)");
            }
            return refuse("client options begin with `--` (--host=…, --socket=…)");
        };
        // MySQL clients take option names in any case, `_` for `-`, the
        // prefixes `loose-` and `maximum-`, and any unique abbreviation.
        let name = long.split('=').next().unwrap_or(long);
        let name = name.to_ascii_lowercase().replace('_', "-");
        let mut name = name.as_str();
        while let Some(rest) = name
            .strip_prefix("loose-")
            .or_else(|| name.strip_prefix("maximum-"))
        {
            name = rest;
        }
        let abbreviates = |r: &&str| name.len() >= 2 && r.starts_with(name);
        // A value names a password only as a connection-string keyword,
        // an SQL `PASSWORD(…)`/`PASSWORD = …`, or a URI's user:password@
        // (a host, user or table merely called so is fine).
        let value: String = long
            .split_once('=')
            .map_or("", |(_, v)| v)
            .to_ascii_lowercase()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let uri_credentials = value.split_once("://").is_some_and(|(_, rest)| {
            rest.split('/')
                .next()
                .is_some_and(|auth| auth.contains('@'))
        });
        if refused.iter().any(abbreviates)
            || name.contains("password")
            || value.contains("password=")
            || value.contains("password(")
            || uri_credentials
        {
            return refuse(instead);
        }
    }
    Ok(())
}

/// What restoring one database needs.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The database as it was dumped (`shop`), or a server-wide file
    /// (`_grants`, `_globals`).
    pub database: String,
    /// Restore into this database instead of `database`.
    pub target: Option<String>,
    /// Create the target database first.
    pub create: bool,
    /// The server kind, needed only when the snapshot has a dump of the
    /// same name from both kinds.
    pub server: Option<Server>,
    pub mysql: mysql::Options,
    pub postgres: postgres::Options,
}

/// What a database restore did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RestoredDatabase {
    pub server: &'static str,
    /// The dump's path in the snapshot.
    pub path: String,
    pub database: String,
    pub created: bool,
    /// The server's users and grants or roles, not a database.
    pub server_wide: bool,
    pub bytes: u64,
    /// What the client said on its standard error although it succeeded
    /// (restoring roles that exist already, say).
    pub messages: String,
}

/// The server-wide files: users and grants of MySQL, roles and tablespaces
/// of PostgreSQL. Any other name is a database's.
fn server_wide(name: &str) -> Option<Server> {
    match name {
        "_grants" => Some(Server::Mysql),
        "_globals" => Some(Server::Postgres),
        _ => None,
    }
}

/// Pipe one database's dump from `snap` into the server's client.
pub fn restore(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    opts: &RestoreOptions,
) -> Result<RestoredDatabase> {
    let server_wide = server_wide(&opts.database).is_some();
    if server_wide && (opts.target.is_some() || opts.create) {
        return Err(Error::invalid(format!(
            "{} is the server's own ({}): --as and --create do not apply to it",
            opts.database,
            if opts.database == "_grants" {
                "users and grants"
            } else {
                "roles and tablespaces"
            }
        )));
    }
    if opts.target.as_deref().is_some_and(str::is_empty) || opts.database.is_empty() {
        return Err(Error::invalid("a database name cannot be empty"));
    }
    let (server, path, node) = find_dump(repo, snap, opts)?;
    let target = opts.target.clone().unwrap_or_else(|| opts.database.clone());
    let client = match server {
        Server::Mysql => opts
            .mysql
            .restore_command((!server_wide).then_some(&target))?,
        Server::Postgres => opts
            .postgres
            .restore_command((!server_wide).then_some(&target))?,
    };
    if opts.create && !server_wide {
        let create = match server {
            Server::Mysql => opts.mysql.create_command(&target)?,
            Server::Postgres => opts.postgres.create_command(&target)?,
        };
        create.output().map_err(|e| {
            Error::command(format!("cannot create database {target:?}: `{create}` {e}"))
        })?;
    }
    crate::interrupt::listen();
    let (bytes, messages) = feed(repo.file_reader(&node), &client).map_err(|e| {
        if server == Server::Mysql && e.kind() == ErrorKind::CommandFailed {
            Error::command(format!(
                "{e}; the database may be partly restored (a MySQL dump is not one transaction): \
                 restore into a new database with --as NAME --create to keep the old one whole"
            ))
        } else {
            e
        }
    })?;
    Ok(RestoredDatabase {
        server: server.dir(),
        path,
        database: target,
        created: opts.create && !server_wide,
        server_wide,
        bytes,
        messages,
    })
}

/// The dump of `opts.database` in `snap`: its server, path and node.
fn find_dump(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    opts: &RestoreOptions,
) -> Result<(Server, String, crate::format::tree::Node)> {
    let (file, servers) = match server_wide(&opts.database) {
        Some(only) => (format!("{}.sql", opts.database), vec![only]),
        None => (
            file_name(&opts.database),
            vec![Server::Mysql, Server::Postgres],
        ),
    };
    let servers: Vec<Server> = servers
        .into_iter()
        .filter(|s| opts.server.is_none_or(|want| want == *s))
        .collect();
    let mut found = Vec::new();
    for server in servers {
        let path = format!("{}/{file}", server.dir());
        if let Some(node) = repo.node_if_present(snap.tree, path.as_bytes())? {
            if node.kind == NodeKind::File {
                found.push((server, path, node));
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::new(
            ErrorKind::Missing,
            format!(
                "this snapshot has no dump of database {:?} (looked for {}); `strata ls SNAPSHOT /mysql` and `strata ls SNAPSHOT /postgresql` list the dumps it has",
                opts.database,
                match opts.server {
                    Some(s) => format!("{}/{file}", s.dir()),
                    None if server_wide(&opts.database).is_some() => file.clone(),
                    None => format!("mysql/{file} and postgresql/{file}"),
                }
            ),
        )),
        _ => Err(Error::invalid(format!(
            "this snapshot has dumps of {:?} from both MySQL and PostgreSQL: say which with --server mysql or --server postgres",
            opts.database
        ))),
    }
}

/// Copy `reader` into the standard input of `client`; the client's
/// failure (with its standard error) is the restore's. Returns the bytes
/// fed and what the client said on its standard error.
fn feed(mut reader: impl Read, client: &CommandSpec) -> Result<(u64, String)> {
    let mut running = client.spawn_feeding().map_err(|e| {
        Error::command(format!(
            "cannot run {}: {e}",
            client.program.to_string_lossy()
        ))
    })?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let copied: Result<()> = (|| {
        let stdin = running
            .stdin()
            .ok_or_else(|| Error::invalid("the client has no standard input"))?;
        loop {
            crate::interrupt::check()?;
            let n = reader
                .read(&mut buf)
                .map_err(|e| match e.downcast::<Error>() {
                    Ok(inner) => inner,
                    Err(e) => Error::invalid(format!("cannot read the dump: {e}")),
                })?;
            if n == 0 {
                return Ok(());
            }
            // A client that stopped reading (it failed) is reported below
            // with its own message.
            if stdin.write_all(&buf[..n]).is_err() {
                return Ok(());
            }
            total += n as u64;
        }
    })();
    if copied.is_err() {
        // Never let the client see a cut dump as a complete one.
        running.kill();
    }
    let (finished, messages) = running.finish_with_stderr();
    copied?;
    // Stopped by us because the process was asked to stop.
    crate::interrupt::check()?;
    finished.map_err(|e| Error::command(format!("`{client}` {e}")))?;
    Ok((total, messages))
}

/// Connection arguments shared by every call of a client.
pub(super) fn os_args(options: &[String]) -> Vec<OsString> {
    options.iter().map(OsString::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_become_distinct_file_names() {
        assert_eq!(file_name("shop"), "shop.sql");
        assert_eq!(file_name("a/b"), "a%2Fb.sql");
        assert_eq!(file_name("a%2Fb"), "a%252Fb.sql");
        assert_eq!(file_name("_grants"), "%5Fgrants.sql");
        assert_eq!(file_name("x_y"), "x_y.sql");
    }

    #[test]
    fn database_lists() {
        assert_eq!(Databases::parse("all").unwrap(), Databases::All);
        assert_eq!(
            Databases::parse("shop, crm").unwrap(),
            Databases::Only(vec!["shop".into(), "crm".into()])
        );
        assert!(Databases::parse(" , ").is_err());
    }

    #[test]
    fn passwords_on_command_lines_are_refused() {
        let refused = ["password"];
        for bad in [
            "--password=x",
            "--pass=x",
            "--passwo",
            "--loose-password=x",
            "--pa",
            "--PAS=x",
            "--loose_pa=x",
            "--maximum-pas=x",
            "-psecret",
            "-Bpsecret",
            "--init-command=SET PASSWORD = 'x'",
            "--dbname=postgresql://u:x@/db",
        ] {
            assert!(check_options(&[bad.into()], &refused, "").is_err(), "{bad}");
        }
        for good in [
            "--port=3307",
            "--socket=/s",
            "--host=db.example",
            "--user=backup",
        ] {
            assert!(
                check_options(&[good.into()], &refused, "").is_ok(),
                "{good}"
            );
        }
    }
}
