//! `retroformer-train fleet`: the fleet's trainer (the protocol is `retroformer-sync`). Each
//! round stores the segments the devices sent, trains when enough new records arrived, by
//! running this binary's own training command in a child process on every stored record, and
//! releases the adapter; then it reads the devices' canary reports and promotes or rolls back.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use retroformer_sync::trainer::Trained;
use retroformer_sync::{FleetTrainer, TrainerConfig};

#[derive(Args)]
pub struct FleetArgs {
    /// The NATS server (with JetStream).
    #[arg(long)]
    nats: String,
    /// A NATS credentials file (user JWT and seed).
    #[arg(long)]
    creds: Option<PathBuf>,
    /// The certificate authority (PEM) that signed the server's certificate; TLS required.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// This client's TLS certificate (PEM), with --tls-key.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// This client's TLS key (PEM), with --tls-cert.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Base model the fleet runs (manifest name or GGUF path).
    #[arg(long)]
    base: String,
    /// Where the stored records, the training data and the adapters go.
    #[arg(long)]
    dir: PathBuf,
    /// Train when at least this many new records arrived.
    #[arg(long, default_value_t = 200)]
    min_new: usize,
    /// Promote a candidate fleet-wide once this many devices activated it.
    #[arg(long, default_value_t = 2)]
    promote_after: usize,
    /// Roll it back once this many devices did not.
    #[arg(long, default_value_t = 1)]
    rollback_after: usize,
    /// Seconds between rounds.
    #[arg(long, default_value_t = 30)]
    every: u64,
    /// One round, then exit.
    #[arg(long)]
    once: bool,
    /// The training command and its flags, after `--` (default: `rwr`); `--base`, `--data`
    /// and `--out` are added.
    #[arg(last = true)]
    train: Vec<String>,
}

pub fn fleet(a: &FleetArgs) -> Result<()> {
    if a.promote_after == 0 || a.rollback_after == 0 {
        bail!("--promote-after and --rollback-after must be at least 1");
    }
    let security = retroformer_sync::Security::from_flags(
        a.creds.clone(),
        a.tls_ca.clone(),
        a.tls_cert.clone(),
        a.tls_key.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    let base_path = super::base_file(&a.base)?;
    let base_sha256 = retroformer::fetch::sha256_file(&base_path, &retroformer::fetch::Silent)?;
    let cfg = TrainerConfig {
        dir: a.dir.clone(),
        base_sha256,
        min_new_records: a.min_new,
        promote_after: a.promote_after,
        rollback_after: a.rollback_after,
        ack_wait: Duration::from_secs(60),
    };
    let mut train = |files: &[PathBuf]| train_child(a, files);
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let client = retroformer_sync::connect(&a.nats, &security).await?;
        let trainer = FleetTrainer::new(client, cfg)
            .await?
            .with_line_check(Box::new(retroformer_trainer::data::check_line));
        // The untrained records when a training last failed: it is tried again only once
        // more have arrived (the same data would fail the same way every round).
        let mut failed_at: Option<usize> = None;
        loop {
            let got = trainer.consume(1000, Duration::from_secs(2), true).await?;
            if got.stored > 0 {
                eprintln!(
                    "[retroformer-train] fleet: stored {} new segments",
                    got.stored
                );
            }
            if got.quarantined > 0 {
                eprintln!(
                    "[retroformer-train] fleet: set aside {} segments with a line the training \
                     cannot read, in {}",
                    got.quarantined,
                    a.dir.join("quarantine").display()
                );
            }
            let untrained = trainer.untrained()?.0;
            if failed_at.is_none_or(|n| untrained > n) {
                match trainer.maybe_train(&mut train).await {
                    Ok(Some(r)) => {
                        failed_at = None;
                        eprintln!(
                            "[retroformer-train] fleet: released v{} ({})",
                            r.version, r.sha256
                        );
                    }
                    Ok(None) => {}
                    // The fleet goes on (the canaries, the next records); this data is not
                    // tried again until more arrives.
                    Err(e @ retroformer_sync::SyncError::Train(_)) => {
                        failed_at = Some(untrained);
                        eprintln!(
                            "[retroformer-train] fleet: {e}; retrying when new records arrive"
                        );
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(r) = trainer.judge(Duration::from_secs(1)).await? {
                eprintln!(
                    "[retroformer-train] fleet: v{} is now {:?}",
                    r.version, r.status
                );
            }
            if a.once {
                return Ok::<(), anyhow::Error>(());
            }
            tokio::time::sleep(Duration::from_secs(a.every)).await;
        }
    })
}

/// Joins the stored segments into one data file and trains on it in a child process of this
/// binary (a failed or crashed training leaves the fleet loop running).
fn train_child(a: &FleetArgs, files: &[PathBuf]) -> Result<Trained, String> {
    let mut data = Vec::new();
    for f in files {
        data.extend(std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?);
    }
    let sha = retroformer_sync::sha256_hex(&data);
    let data_file = a.dir.join(format!("train-{}.jsonl", &sha[..16]));
    retroformer_core::fsutil::write_atomic(&data_file, &data).map_err(|e| e.to_string())?;
    let out = a.dir.join("adapters").join(format!("{}.gguf", &sha[..16]));
    std::fs::create_dir_all(a.dir.join("adapters")).map_err(|e| e.to_string())?;
    let mut cmd = a.train.clone();
    if cmd.is_empty() {
        cmd.push("rwr".into());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let status = std::process::Command::new(exe)
        .args(&cmd)
        .args(["--base", &a.base, "--data"])
        .arg(&data_file)
        .arg("--out")
        .arg(&out)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!(
            "retroformer-train {} failed: {status}",
            cmd.join(" ")
        ));
    }
    // The adapter records the sha256 of its data file, which is this one's.
    Ok(Trained {
        path: out,
        data_sha256: sha,
    })
}
