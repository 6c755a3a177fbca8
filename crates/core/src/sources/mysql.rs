//! MySQL and MariaDB: one consistent dump per database, plus the users
//! and their grants, each a stream of its own.
//!
//! Connection settings are the client's own: its option files
//! (`~/.my.cnf`, or the file given as `defaults_file`), and `options`
//! passed to every client call (`--socket=…`, `--host=…`, `--user=…`).
//! Passwords belong in an option file: a `--password` option is refused,
//! since `ps` shows command lines to every user.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::Result;

use super::command::CommandSpec;
use super::database::{check_options, database_streams, find_program, os_args, Databases};
use super::Stream;

/// Schemas that hold the server's own state, never dumped.
const SYSTEM_SCHEMAS: [&str; 3] = ["information_schema", "performance_schema", "sys"];

/// The dump options: one transaction (a consistent view of InnoDB
/// tables without locking them), the database's routines, events and
/// triggers, binary columns in hex (byte-exact whatever the character
/// sets), and no date line (an unchanged database dumps to the same
/// bytes, so it deduplicates whole).
const DUMP_OPTIONS: [&str; 6] = [
    "--single-transaction",
    "--routines",
    "--events",
    "--triggers",
    "--hex-blob",
    "--skip-dump-date",
];

#[derive(Clone, Debug)]
pub struct Options {
    pub databases: Databases,
    /// An option file read instead of the default ones (`--defaults-file`).
    pub defaults_file: Option<PathBuf>,
    /// Options given to every client call.
    pub options: Vec<String>,
    /// Also dump the server's users and grants as `mysql/_grants.sql`.
    pub grants: bool,
}

impl Options {
    pub fn new(databases: Databases) -> Options {
        Options {
            databases,
            defaults_file: None,
            options: Vec::new(),
            grants: true,
        }
    }

    /// Refuse options that would show a password to `ps` or wait at a prompt.
    pub fn check(&self) -> Result<()> {
        check_options(
            &self.options,
            &["password"],
            "a password on a command line is visible to every user through `ps`; \
             put it in an option file (`~/.my.cnf`, or --mysql-defaults-file FILE with `[client] password=…`)",
        )
    }

    /// The streams of the selected databases (`mysql/<db>.sql`) and of the
    /// grants (`mysql/_grants.sql`); a server that cannot be asked for its
    /// databases is a failure named `mysql`.
    pub(super) fn streams(&self) -> (Vec<Stream>, Vec<(String, String)>) {
        // Oracle MySQL's mysqldump cannot dump users (`--system` is
        // MariaDB's): there the grants are left out rather than failing
        // every backup.
        let grants =
            (self.grants && self.dumps_users()).then(|| ("_grants.sql", self.grants_command()));
        database_streams(
            "mysql",
            &self.databases,
            || self.list(),
            |db| self.dump_command(db),
            grants,
        )
    }

    /// The server's databases less its system schemas, asked in hex so that
    /// any name arrives exactly.
    pub fn list(&self) -> std::result::Result<Vec<String>, String> {
        // A server that accepts connections and never answers: given
        // before the options, so that one of theirs wins.
        let mut args = self.connection_with(&["--connect-timeout=30"]);
        args.extend(
            [
                "--batch",
                "--skip-column-names",
                "--execute=SELECT HEX(SCHEMA_NAME) FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME",
            ]
            .map(OsString::from),
        );
        let spec = CommandSpec::new(self.program(&["mariadb", "mysql"]), args);
        let out = spec
            .output()
            .map_err(|e| format!("cannot list the databases: `{spec}` {e}"))?;
        let mut names = Vec::new();
        for line in String::from_utf8_lossy(&out).lines() {
            let bytes = hex::decode(line.trim())
                .map_err(|_| format!("unexpected line from `{spec}`: {line:?}"))?;
            let name = String::from_utf8(bytes)
                .map_err(|_| format!("a database name from `{spec}` is not UTF-8"))?;
            if !SYSTEM_SCHEMAS.contains(&name.as_str()) {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Whether the dump program is MariaDB's, which dumps users and grants.
    fn dumps_users(&self) -> bool {
        let program = self.program(&["mariadb-dump", "mysqldump"]);
        CommandSpec::new(program, vec!["--version".into()])
            .output()
            .is_ok_and(|v| String::from_utf8_lossy(&v).contains("MariaDB"))
    }

    pub fn dump_command(&self, database: &str) -> CommandSpec {
        let mut args = self.connection();
        args.extend(DUMP_OPTIONS.map(OsString::from));
        args.push("--".into());
        args.push(database.into());
        CommandSpec::new(self.program(&["mariadb-dump", "mysqldump"]), args)
    }

    /// Users and grants as SQL, MariaDB 10.5+: `CREATE USER IF NOT
    /// EXISTS` (`--insert-ignore`), so that restoring them into a server
    /// that has some of the users (every server has `root`) works.
    fn grants_command(&self) -> CommandSpec {
        let mut args = self.connection();
        args.extend(["--system=users", "--insert-ignore", "--skip-dump-date"].map(OsString::from));
        CommandSpec::new(self.program(&["mariadb-dump", "mysqldump"]), args)
    }

    /// The client reading a dump into `database` (server-wide files: none).
    pub fn restore_command(&self, database: Option<&String>) -> Result<CommandSpec> {
        self.check()?;
        let mut args = self.connection();
        args.push("--binary-mode".into());
        if let Some(db) = database {
            args.push(format!("--database={db}").into());
        }
        Ok(CommandSpec::new(self.program(&["mariadb", "mysql"]), args))
    }

    pub fn create_command(&self, database: &str) -> Result<CommandSpec> {
        self.check()?;
        let mut args = self.connection();
        let quoted = database.replace('`', "``");
        args.push(format!("--execute=CREATE DATABASE `{quoted}`").into());
        Ok(CommandSpec::new(self.program(&["mariadb", "mysql"]), args))
    }

    /// What names the server, when it is not the default one: the option
    /// file and the options.
    pub(super) fn server(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .defaults_file
            .iter()
            .map(|f| {
                let f = std::path::absolute(f).unwrap_or_else(|_| f.clone());
                format!("--defaults-file={}", f.display())
            })
            .collect();
        out.extend(self.options.iter().cloned());
        out
    }

    /// `--defaults-file` must come first on a MySQL client's command line.
    fn connection(&self) -> Vec<OsString> {
        self.connection_with(&[])
    }

    /// The connection arguments with `defaults` between the option file
    /// and the options, which override them.
    fn connection_with(&self, defaults: &[&str]) -> Vec<OsString> {
        let mut args = Vec::new();
        if let Some(f) = &self.defaults_file {
            let mut arg = OsString::from("--defaults-file=");
            arg.push(f);
            args.push(arg);
        }
        args.extend(defaults.iter().map(OsString::from));
        args.extend(os_args(&self.options));
        args
    }

    /// MariaDB's program name if installed, else MySQL's.
    fn program(&self, names: &[&str]) -> OsString {
        find_program(names)
            .map(OsString::from)
            .unwrap_or_else(|| names[0].into())
    }
}
