use anyhow::{bail, Result};
use strata_core::crypto::KdfParams;
use strata_core::repository::Repository;

use crate::repo::{self, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Memory for the Argon2id key derivation, in MiB (1 to 4096).
    #[arg(long, default_value_t = 19, value_name = "MIB",
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    kdf_memory: u32,
    /// Passes of the Argon2id key derivation (1 to 64).
    #[arg(long, default_value_t = 2, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    kdf_iterations: u32,
    /// zstd compression level for this repository (0 stores uncompressed).
    #[arg(
        long,
        default_value_t = 3,
        value_name = "LEVEL",
        allow_negative_numbers = true
    )]
    compression: i32,
    /// Repository format version: 2 (the default) stores changed chunks of
    /// dumps and big files as deltas against their previous version; 1 has
    /// no deltas and is readable by strata before version 2 existed.
    #[arg(long, default_value_t = strata_core::format::VERSION_DELTAS, value_name = "1|2",
          value_parser = clap::value_parser!(u32).range(1..=2))]
    format_version: u32,
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let loc = repo::location(global)?;
    let pw = repo::password(global, &loc, "enter password for new repository: ")?;
    if global.password_file.is_none()
        && global.password_command.is_none()
        && std::env::var_os("STRATA_PASSWORD").is_none()
    {
        let again = rpassword::prompt_password("enter password again: ")?;
        if again != pw {
            bail!("the passwords do not match; nothing was created");
        }
    }
    if pw.is_empty() {
        bail!("empty password: choose a password; nothing was created");
    }
    if u64::from(args.kdf_memory) * u64::from(args.kdf_iterations) > 4096 * 8 {
        return Err(strata_core::Error::invalid(
            "--kdf-memory times --kdf-iterations may be at most 32768 (4096 MiB × 8 passes): more would take minutes to open",
        )
        .into());
    }
    let kdf = KdfParams {
        memory_kib: args.kdf_memory.max(1) * 1024,
        iterations: args.kdf_iterations.max(1),
        parallelism: 1,
    };
    let config = strata_core::format::config::Config {
        compression: args.compression,
        version: args.format_version,
        ..Default::default()
    };
    let repo = Repository::init_with(repo::storage(&loc)?, pw.as_bytes(), kdf, config)?;
    if global.json {
        crate::output::json_line(&serde_json::json!({
            "message_type": "initialized",
            "id": repo.config().id,
            "repository": loc.path.display().to_string(),
        }));
    } else if !global.quiet {
        outln!(
            "created strata repository {} at {}",
            &repo.config().id[..10],
            loc.path.display()
        );
        outln!("Keep the password safe: without it the data cannot be read.");
    }
    Ok(crate::exit::OK)
}
