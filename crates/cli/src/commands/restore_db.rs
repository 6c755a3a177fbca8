use anyhow::Result;
use strata_core::sources::database::{self, RestoreOptions, Server};
use strata_core::sources::{mysql, postgres, Databases};

use crate::repo::{self, FilterArgs, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot: `latest` (with --before, --host…) or an id prefix.
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// The database as it was dumped (`shop`), or `_grants` (MySQL users
    /// and grants) or `_globals` (PostgreSQL roles).
    #[arg(value_name = "DATABASE")]
    database: String,
    /// Restore into this database instead.
    #[arg(long = "as", value_name = "NAME")]
    target: Option<String>,
    /// Create the target database first (it must not exist).
    #[arg(long)]
    create: bool,
    /// Which server's dump, when the snapshot has both a MySQL and a PostgreSQL one of that name.
    #[arg(long, value_enum, value_name = "KIND")]
    server: Option<ServerArg>,
    /// MySQL option file to use instead of the default ones (~/.my.cnf…).
    #[arg(long, value_name = "FILE")]
    mysql_defaults_file: Option<std::path::PathBuf>,
    /// Option for every MySQL client call (repeatable).
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true)]
    mysql_option: Vec<String>,
    /// Option for every PostgreSQL client call (repeatable).
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true)]
    postgres_option: Vec<String>,
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ServerArg {
    Mysql,
    Postgres,
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let mut my = mysql::Options::new(Databases::All);
    my.defaults_file = args.mysql_defaults_file.clone();
    my.options = args.mysql_option.clone();
    let mut pg = postgres::Options::new(Databases::All);
    pg.options = args.postgres_option.clone();
    let opts = RestoreOptions {
        database: args.database.clone(),
        target: args.target.clone(),
        create: args.create,
        server: args.server.map(|s| match s {
            ServerArg::Mysql => Server::Mysql,
            ServerArg::Postgres => Server::Postgres,
        }),
        mysql: my,
        postgres: pg,
    };
    let repo = repo::open(global)?;
    repo.load_index()?;
    let (id, snap) = strata_core::select::find(&repo, &args.snapshot, &args.filter.filter()?)?;
    let done = database::restore(&repo, &snap, &opts)?;
    if !global.quiet {
        for line in done.messages.lines().filter(|l| !l.trim().is_empty()) {
            errln!("{}: {line}", done.server);
        }
    }
    if global.json {
        let mut v = serde_json::to_value(&done)?;
        v["message_type"] = "summary".into();
        v["snapshot_id"] = id.to_hex().into();
        outln!("{v}");
    } else if !global.quiet {
        let into = if done.server_wide {
            format!("the {} server", done.server)
        } else {
            format!(
                "{} database {:?}{}",
                done.server,
                done.database,
                if done.created { " (created)" } else { "" }
            )
        };
        outln!(
            "restored {} ({}) from snapshot {} into {into}",
            done.path,
            crate::output::bytes(done.bytes),
            id.short(),
        );
    }
    Ok(crate::exit::OK)
}
