use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;
use strata_core::crypto::KdfParams;

use crate::output;
use crate::repo::{self, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

impl Args {
    /// Whether this only reads (`key list`).
    pub fn read_only(&self) -> bool {
        matches!(self.action, Action::List)
    }
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// List the repository's keys; `*` marks the one in use.
    List,
    /// Add a key for another password.
    Add(NewPassword),
    /// Remove a key (not the one in use, not the last one).
    Remove {
        /// Key name or a unique prefix of it.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Change the password of the key in use.
    Passwd(NewPassword),
}

#[derive(clap::Args, Debug)]
struct NewPassword {
    /// Read the new password from the first line of this file (else prompt).
    #[arg(long, value_name = "FILE")]
    new_password_file: Option<PathBuf>,
}

impl NewPassword {
    fn read(&self) -> Result<String> {
        let pw = match &self.new_password_file {
            Some(f) => std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            None => {
                let a = rpassword::prompt_password("new password: ")
                    .context("no terminal: use --new-password-file")?;
                let b = rpassword::prompt_password("new password again: ")?;
                if a != b {
                    bail!("the passwords do not match; nothing was changed");
                }
                a
            }
        };
        if pw.is_empty() {
            bail!("empty password; nothing was changed");
        }
        Ok(pw)
    }
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let repo = repo::open(global)?;
    match &args.action {
        Action::List => {
            let keys = repo.keys()?;
            if global.json {
                let list: Vec<_> = keys
                    .iter()
                    .map(|(name, k)| match k {
                        Ok(k) => json!({"id": name, "current": name == repo.key_name(), "username": k.username,
                                        "hostname": k.hostname, "created": k.created.to_string()}),
                        Err(e) => json!({"id": name, "error": e.to_string()}),
                    })
                    .collect();
                outln!("{}", serde_json::Value::Array(list));
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|(name, k)| {
                        let mark = if name == repo.key_name() { "*" } else { "" };
                        match k {
                            Ok(k) => vec![
                                mark.into(),
                                name[..8.min(name.len())].into(),
                                k.username.clone(),
                                k.hostname.clone(),
                                output::local_time(k.created),
                            ],
                            Err(e) => vec![
                                mark.into(),
                                name[..8.min(name.len())].into(),
                                format!("damaged: {e}"),
                                String::new(),
                                String::new(),
                            ],
                        }
                    })
                    .collect();
                output::table(&["", "ID", "User", "Host", "Created"], &rows);
            }
        }
        Action::Add(p) => {
            let id = repo.add_key(p.read()?.as_bytes(), KdfParams::default())?;
            if !global.quiet {
                outln!("added key {}", id.short());
            }
        }
        Action::Remove { id } => {
            let name = repo.remove_key(id)?;
            if !global.quiet {
                outln!("removed key {}", &name[..8.min(name.len())]);
            }
        }
        Action::Passwd(p) => {
            let id = repo.change_password(p.read()?.as_bytes(), KdfParams::default())?;
            if !global.quiet {
                outln!("password changed (new key {})", id.short());
            }
        }
    }
    Ok(crate::exit::OK)
}
