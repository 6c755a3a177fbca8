//! PostgreSQL: `pg_dump` of each database (plain SQL, one consistent
//! snapshot of the database per dump) and `pg_dumpall --globals-only`
//! for roles and tablespaces, each a stream of its own.
//!
//! Connection settings come from libpq's usual environment (`PGHOST`,
//! `PGPORT`, `PGUSER`, `PGPASSFILE`, `PGSERVICE`, `~/.pgpass`) and from
//! `options` given to every client call (`--host=…`, `--port=…`,
//! `--username=…`). Every call has `--no-password`: a backup never waits
//! at a password prompt; a password belongs in `~/.pgpass` or `PGPASSFILE`.

use std::ffi::OsString;

use crate::error::Result;

use super::command::CommandSpec;
use super::database::{check_options, database_streams, find_program, os_args, Databases};
use super::Stream;

#[derive(Clone, Debug)]
pub struct Options {
    pub databases: Databases,
    /// Options given to every client call.
    pub options: Vec<String>,
    /// Also dump roles and tablespaces as `postgresql/_globals.sql`.
    pub globals: bool,
}

impl Options {
    pub fn new(databases: Databases) -> Options {
        Options {
            databases,
            options: Vec::new(),
            globals: true,
        }
    }

    /// Refuse options that would make a client wait at a password prompt.
    pub fn check(&self) -> Result<()> {
        check_options(
            &self.options,
            &["password", "dbname"],
            "the databases come from --postgres, and a password belongs in ~/.pgpass or the file PGPASSFILE names \
             (command lines are visible to every user through `ps`, and a backup cannot wait at a prompt)",
        )
    }

    /// The streams of the selected databases (`postgresql/<db>.sql`) and of
    /// the globals (`postgresql/_globals.sql`); a server that cannot be
    /// asked for its databases is a failure named `postgresql`.
    pub(super) fn streams(&self) -> (Vec<Stream>, Vec<(String, String)>) {
        let globals = self.globals.then(|| {
            let mut args = self.connection();
            args.push("--globals-only".into());
            ("_globals.sql", client(&["pg_dumpall"], args))
        });
        database_streams(
            "postgresql",
            &self.databases,
            || self.list(),
            |db| self.dump_command(db),
            globals,
        )
    }

    /// The databases that accept connections, templates left out, asked in
    /// hex so that any name arrives exactly.
    pub fn list(&self) -> std::result::Result<Vec<String>, String> {
        let mut args = vec![OsString::from("--dbname=postgres")];
        args.extend(self.connection());
        args.extend(
            [
                "--no-psqlrc",
                "--tuples-only",
                "--no-align",
                "--command=SELECT encode(convert_to(datname::text, 'UTF8'), 'hex') FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
            ]
            .map(OsString::from),
        );
        let spec = client(&["psql"], args);
        let out = spec
            .output()
            .map_err(|e| format!("cannot list the databases: `{spec}` {e}"))?;
        String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let bytes = hex::decode(line.trim())
                    .map_err(|_| format!("unexpected line from `{spec}`: {line:?}"))?;
                String::from_utf8(bytes)
                    .map_err(|_| format!("a database name from `{spec}` is not UTF-8"))
            })
            .collect()
    }

    pub fn dump_command(&self, database: &str) -> CommandSpec {
        let mut args = self.connection();
        args.push("--format=plain".into());
        args.push(format!("--dbname={}", conninfo(database)).into());
        client(&["pg_dump"], args)
    }

    /// `psql` reading a database's dump in one transaction that stops at
    /// the first error: a dump that fails restores nothing. The globals
    /// (`database` `None`) are read statement by statement: they always
    /// create the role restoring them, which exists, and PostgreSQL's own
    /// advice is to let that one fail.
    pub fn restore_command(&self, database: Option<&String>) -> Result<CommandSpec> {
        self.check()?;
        let mut args = self.connection();
        args.extend(["--no-psqlrc", "--quiet"].map(OsString::from));
        if database.is_some() {
            args.extend(["--single-transaction", "--set=ON_ERROR_STOP=1"].map(OsString::from));
        }
        let db = database.map_or("postgres", String::as_str);
        args.push(format!("--dbname={}", conninfo(db)).into());
        Ok(client(&["psql"], args))
    }

    pub fn create_command(&self, database: &str) -> Result<CommandSpec> {
        self.check()?;
        let mut args = self.connection();
        args.push("--".into());
        args.push(database.into());
        Ok(client(&["createdb"], args))
    }

    /// What names the server, when it is not the default one: libpq's
    /// connection variables that are set, and the options.
    pub(super) fn server(&self) -> Vec<String> {
        let mut out: Vec<String> = ["PGSERVICE", "PGHOST", "PGHOSTADDR", "PGPORT"]
            .iter()
            .filter_map(|v| Some(format!("{v}={}", std::env::var(v).ok()?)))
            .collect();
        out.extend(self.options.iter().cloned());
        out
    }

    fn connection(&self) -> Vec<OsString> {
        let mut args = vec![OsString::from("--no-password")];
        args.extend(os_args(&self.options));
        args
    }
}

/// A client call: the program found as [`program`] does, and a connect
/// timeout (a server that accepts connections and never answers must not
/// hold a backup for ever) unless the environment sets one.
fn client(names: &[&str], args: Vec<OsString>) -> CommandSpec {
    let mut spec = CommandSpec::new(program(names), args);
    if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
        spec.env.push(("PGCONNECT_TIMEOUT".into(), "30".into()));
    }
    spec
}

/// A database name as a libpq connection string, so that a name holding
/// `=` or spaces is not read as one; everything else comes from the
/// environment and the options.
fn conninfo(database: &str) -> String {
    let escaped = database.replace('\\', "\\\\").replace('\'', "\\'");
    format!("dbname='{escaped}'")
}

/// The program from PATH, or from the newest PostgreSQL installed in
/// Debian's versioned directories.
fn program(names: &[&str]) -> OsString {
    if let Some(p) = find_program(names) {
        return p.into();
    }
    let mut dirs: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
        .map(OsString::from)
        .unwrap_or_else(|| names[0].into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_quoted_for_libpq() {
        assert_eq!(conninfo("shop"), "dbname='shop'");
        assert_eq!(conninfo("a b=c'd\\"), "dbname='a b=c\\'d\\\\'");
    }
}
