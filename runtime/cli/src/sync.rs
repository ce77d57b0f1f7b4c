//! `sync`: a device in the fleet (flags, the canary's evaluation and the tokio runtime; the
//! protocol is `retroformer-sync`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use retroformer_envs::Registry;
use retroformer_lab::canary::{self, CanaryPlan};
use retroformer_lab::BackendSource;
use retroformer_llm::target::TargetProfile;
use retroformer_sync::device::{Canary, Device, DeviceConfig};

use crate::common::{FetchBar, TaskProgress};

#[derive(Args)]
pub struct SyncArgs {
    /// The NATS server (with JetStream), e.g. nats://trainer.local:4222, tls://...; a user
    /// and password as nats://USER:PASSWORD@HOST:PORT.
    #[arg(long, required_unless_present = "print_permissions")]
    nats: Option<String>,
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
    /// This device's id (letters, digits, '-', '_'): it publishes on its own subjects only.
    #[arg(long)]
    device: String,
    /// A folder of finished record files (`*.jsonl`: rating records, `serve --capture`
    /// episodes, RISE and `improve` samples) to upload; repeat for several.
    #[arg(long)]
    watch: Vec<PathBuf>,
    /// The base model whose adapters this device receives.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    base: String,
    /// The outbox (default: the model cache's `sync/DEVICE`). One process at a time: a second
    /// on the same outbox is refused (it holds `device.lock`).
    #[arg(long)]
    outbox: Option<PathBuf>,
    /// Seconds between rounds of upload and release check (after the first round, each device
    /// waits once more a part of this set by its id, so that a fleet's polls are spread). At
    /// most a week.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=WEEK_S))]
    every: u64,
    /// One round, then exit.
    #[arg(long)]
    once: bool,
    /// The canary's environment (held-out tasks on this device).
    #[arg(long, default_value = "household")]
    env: String,
    /// Held-out tasks the canary evaluates.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Leave out the first N tasks.
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// Trials per task in the canary.
    #[arg(long, default_value_t = 3)]
    trials: u32,
    /// Activate a candidate scoring at least the incumbent's minus this.
    #[arg(long, default_value_t = 0.0)]
    margin: f64,
    /// Threads (default: the target profile's).
    #[arg(long)]
    threads: Option<u32>,
    /// Print the NATS permissions this device's user needs (a nats-server `permissions`
    /// block and the `nsc` command) and exit.
    #[arg(long)]
    print_permissions: bool,
}

/// The permissions of `--device`'s NATS user, for the server's operator.
fn print_permissions(device: &str) {
    let p = retroformer_sync::names::device_permissions(device);
    println!("# nats-server.conf: the user of device {device}");
    println!(
        "{{ user: \"{device}\", password: \"...\", permissions: {} }}",
        p.server_config()
    );
    println!("# or, with credentials files (operator mode):");
    println!("{}", p.nsc_command(device));
}

/// The canary of `adapters canary` on this device's held-out tasks.
fn canary_of(profile: &TargetProfile, a: &SyncArgs) -> Canary {
    let (profile, base, env) = (profile.clone(), a.base.clone(), a.env.clone());
    let (skip, limit, trials, margin, threads) = (a.skip, a.limit, a.trials, a.margin, a.threads);
    Box::new(move |_store, id| {
        let plan = CanaryPlan {
            candidate: id.to_string(),
            base: base.clone(),
            env: env.clone(),
            actor: None,
            skip,
            limit,
            split: None,
            trials,
            max_steps: None,
            data: None,
            margin,
            out: None,
            first_trial_from: None,
            parallel: retroformer_envs::DEFAULT_PARALLEL,
        };
        let models = BackendSource {
            profile: profile.clone(),
            threads,
            fetch: None,
        };
        let mut progress = TaskProgress::new(false);
        let done = canary::canary(&Registry::builtin(), &plan, &models, &mut progress);
        progress.finish();
        done.map(|d| d.report).map_err(|e| e.to_string())
    })
}

/// The longest `--every`, in seconds.
const WEEK_S: u64 = 7 * 24 * 3600;

/// How far into each `every`-second period this device polls, from its id: devices started
/// together (a site after a power cut) do not all ask for a new release in the same second.
fn phase(device: &str, every: u64) -> Duration {
    if every == 0 {
        return Duration::ZERO;
    }
    let sha = retroformer_sync::sha256_hex(device.as_bytes());
    let n = u64::from_str_radix(&sha[..12], 16).unwrap_or(0);
    Duration::from_millis(n % (every * 1000))
}

pub fn sync(profile: &TargetProfile, a: &SyncArgs) -> Result<()> {
    retroformer_sync::names::check_device_id(&a.device)
        .map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    if a.print_permissions {
        print_permissions(&a.device);
        return Ok(());
    }
    let nats = a.nats.as_deref().context("--nats is required")?;
    let security = retroformer_sync::Security::from_flags(
        a.creds.clone(),
        a.tls_ca.clone(),
        a.tls_cert.clone(),
        a.tls_key.clone(),
    )?;
    if !a.margin.is_finite() || a.margin < 0.0 {
        anyhow::bail!("--margin {}: must be a finite number >= 0", a.margin);
    }
    let bar = FetchBar::default();
    let resolved = retroformer::backend::resolve(&a.base, Some(&bar))?;
    let (store, header) = retroformer::adapters::AdapterStore::for_model(&resolved)
        .with_context(|| format!("the adapter store of {}", a.base))?;
    let outbox = match &a.outbox {
        Some(d) => d.clone(),
        None => retroformer::manifest::home_dir()
            .join("sync")
            .join(&a.device),
    };
    let base_path = resolved.path.clone();
    let cfg = DeviceConfig {
        id: a.device.clone(),
        outbox,
        max_segment: None,
        watch: a.watch.clone(),
        store,
        base: header,
        base_name: base_path.display().to_string(),
        proof: Box::new(move |p| retroformer::backend::active().probe_adapter(&base_path, p)),
    };
    let mut canary = canary_of(profile, a);
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let client = retroformer_sync::connect_device(nats, &security, &a.device).await?;
        let device = Device::new(client, cfg)?;
        let mut offset = phase(&a.device, a.every);
        loop {
            match device.upload().await {
                Ok(n) if n > 0 => eprintln!("[retroformer] sync: uploaded {n} segments"),
                Ok(_) => {}
                // Offline: the outbox keeps them for the next round.
                Err(e) => eprintln!("[retroformer] sync: upload paused ({e})"),
            }
            match device.follow_release(&mut canary).await {
                Ok(Some(o)) => eprintln!(
                    "[retroformer] sync: release {} {}",
                    o.version,
                    serde_json::to_string(&o).unwrap_or_default()
                ),
                Ok(None) => {}
                Err(e) => eprintln!("[retroformer] sync: release check failed ({e})"),
            }
            if a.once {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(a.every) + offset).await;
            offset = Duration::ZERO;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::phase;
    use std::time::Duration;

    #[test]
    fn devices_poll_at_different_points_of_the_period_and_each_always_at_the_same() {
        let every = 30;
        let phases: Vec<Duration> = (0..100)
            .map(|i| phase(&format!("dev-{i}"), every))
            .collect();
        assert!(phases.iter().all(|p| *p < Duration::from_secs(every)));
        assert_eq!(phase("dev-7", every), phases[7]);
        // Spread: every third of the period holds some of the hundred devices.
        for third in 0..3 {
            let (lo, hi) = (third * 10, third * 10 + 10);
            assert!(
                phases.iter().any(|p| (lo..hi).contains(&p.as_secs())),
                "none in {lo}-{hi} s"
            );
        }
        assert_eq!(phase("dev-1", 0), Duration::ZERO);
    }
}
