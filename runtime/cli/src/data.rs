//! `data`: the benchmark data bundled with the environments.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use retroformer_envs::data;

/// `data`.
#[derive(Subcommand)]
pub enum DataCommand {
    /// List the bundled data sets.
    List,
    /// Write the bundled data sets (uncompressed) into DIR/<folder>/<file>; point
    /// $RETROFORMER_DATA at DIR to read (or edit) them from there.
    Export {
        /// The folder.
        dir: PathBuf,
    },
}

/// Runs `data`.
pub fn data_cmd(c: DataCommand) -> Result<()> {
    match c {
        DataCommand::List => {
            for b in data::ALL {
                println!("{:<48} {}", b.name(), b.about);
            }
            println!("\nlicences and origins: runtime/envs/data/README.md; --data PATH or $RETROFORMER_DATA/<folder>/<file> reads another copy");
        }
        DataCommand::Export { dir } => {
            for b in data::ALL {
                let folder = dir.join(b.folder);
                std::fs::create_dir_all(&folder)
                    .with_context(|| format!("creating {}", folder.display()))?;
                let path = folder.join(b.file);
                retroformer_core::fsutil::write_atomic(&path, &b.bytes()?)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("{}", path.display());
            }
        }
    }
    Ok(())
}
