//! `retroformer-train fleet`: the fleet's trainer (the protocol is `retroformer-sync`). Each
//! round stores the segments the devices sent, trains when enough new records arrived, by
//! running this binary's own training command in a child process on every stored record, and
//! releases the adapter; then it reads the devices' canary reports and promotes or rolls back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use retroformer_sync::trainer::{BadLine, TrainFailure, Trained};
use retroformer_sync::{FleetTrainer, TrainerConfig, WhenFull};

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
    /// The most MiB the stored and set-aside segments may take (0: no bound); see
    /// --when-full. Each training reads every stored record into memory and writes one copy
    /// of them.
    #[arg(long, default_value_t = 2048)]
    max_stored_mib: u64,
    /// At --max-stored-mib: `wait` takes no more segments (they wait in the NATS stream until
    /// there is room); `drop-trained` removes the segments already trained on and the
    /// set-aside ones, the longest stored first (never one not yet trained on), so that each
    /// training learns from the newest records.
    #[arg(long, value_enum, default_value_t = WhenFullArg::Wait)]
    when_full: WhenFullArg,
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum WhenFullArg {
    Wait,
    DropTrained,
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
    )?;
    let base_path = super::base_file(&a.base)?;
    let base_sha256 = retroformer::fetch::sha256_file(&base_path, &retroformer::fetch::Silent)?;
    let cfg = TrainerConfig {
        dir: a.dir.clone(),
        base_sha256,
        min_new_records: a.min_new,
        promote_after: a.promote_after,
        rollback_after: a.rollback_after,
        ack_wait: Duration::from_secs(60),
        max_stored_bytes: (a.max_stored_mib > 0).then(|| a.max_stored_mib.saturating_mul(1 << 20)),
        when_full: match a.when_full {
            WhenFullArg::Wait => WhenFull::Wait,
            WhenFullArg::DropTrained => WhenFull::DropTrained,
        },
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
            if got.dropped + got.dropped_set_aside > 0 {
                eprintln!(
                    "[retroformer-train] fleet: the store in {} was full (--max-stored-mib {}): \
                     removed {} segments already trained on and {} set aside, the longest \
                     stored first",
                    a.dir.display(),
                    a.max_stored_mib,
                    got.dropped,
                    got.dropped_set_aside
                );
            }
            if got.full {
                eprintln!(
                    "[retroformer-train] fleet: the store in {} is full (--max-stored-mib {}){}: \
                     new segments wait in the stream",
                    a.dir.display(),
                    a.max_stored_mib,
                    match a.when_full {
                        WhenFullArg::Wait => "",
                        WhenFullArg::DropTrained => " with segments not yet trained on",
                    }
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
                        // Counted after any segment was set aside.
                        failed_at = Some(trainer.untrained().map_or(untrained, |u| u.0));
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
/// binary (a failed or crashed training leaves the fleet loop running). The lines of the data
/// file the child names in its error are traced back to their segments.
fn train_child(a: &FleetArgs, files: &[PathBuf]) -> Result<Trained, TrainFailure> {
    let (data, lines) = join(files)?;
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
    let mut child = std::process::Command::new(exe)
        .args(&cmd)
        .args(["--base", &a.base, "--data"])
        .arg(&data_file)
        .arg("--out")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let tail = child.stderr.take().map(relay_tail).unwrap_or_default();
    let status = child.wait().map_err(|e| e.to_string());
    // The segments stay; the adapter records this file's sha256.
    let _ = std::fs::remove_file(&data_file);
    let status = status?;
    if !status.success() {
        let tail = String::from_utf8_lossy(&tail);
        let bad: Option<Vec<BadLine>> = bad_lines(&tail, &data_file)
            .into_iter()
            .map(|(line, reason)| {
                let (file, line) = segment_of(&lines, line)?;
                Some(BadLine { file, line, reason })
            })
            .collect();
        if let Some(bad) = bad.filter(|b| !b.is_empty()) {
            return Err(TrainFailure::BadLines(bad));
        }
        let last = tail
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(TrainFailure::Failed(format!(
            "retroformer-train {} failed ({status}): {last}",
            cmd.join(" ")
        )));
    }
    // The adapter records the sha256 of its data file, which is this one's.
    Ok(Trained {
        path: out,
        data_sha256: sha,
    })
}

/// The files joined, each ended by a newline (else its last line and the next file's first
/// would become one), and each file's number of lines.
fn join(files: &[PathBuf]) -> Result<(Vec<u8>, Vec<usize>), String> {
    let mut data = Vec::new();
    let mut lines = Vec::new();
    for f in files {
        let mut bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        if bytes.last().is_some_and(|&b| b != b'\n') {
            bytes.push(b'\n');
        }
        lines.push(bytes.iter().filter(|&&b| b == b'\n').count());
        data.extend(bytes);
    }
    Ok((data, lines))
}

/// The child's standard error, passed on to ours as it comes; returns its last 64 KiB.
fn relay_tail(mut from: impl std::io::Read) -> Vec<u8> {
    use std::io::{ErrorKind, Write};
    const KEEP: usize = 64 << 10;
    let (mut tail, mut buf) = (Vec::new(), [0u8; 8192]);
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            // A signal, not the end: stopping would close the pipe and fail the child.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let _ = std::io::stderr().write_all(&buf[..n]);
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 2 * KEEP {
            tail.drain(..tail.len() - KEEP);
        }
    }
    tail
}

/// The lines of `data_file` the child's error names, with their reasons: its last message
/// (`error: ` and what follows) when that is `DATA_FILE:LINE: REASON`, a line each (the
/// trainer's data errors name every bad line so). Empty for any other error; a line of text
/// from the data inside a reason cannot pass for one, as each must start a line.
fn bad_lines(stderr: &str, data_file: &Path) -> Vec<(usize, String)> {
    let prefix = format!("{}:", data_file.display());
    let Some(at) = stderr
        .rfind("\nerror: ")
        .map(|i| i + 1)
        .or_else(|| stderr.starts_with("error: ").then_some(0))
    else {
        return Vec::new();
    };
    let message = &stderr[at + "error: ".len()..];
    let named = |l: &str| {
        let (line, reason) = l.strip_prefix(&prefix)?.split_once(": ")?;
        let line: usize = line.parse().ok()?;
        (line > 0).then(|| (line, reason.to_string()))
    };
    let lines: Option<Vec<_>> = message
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(named)
        .collect();
    lines.unwrap_or_default()
}

/// The joined file's 1-based line `n` as (file index, 1-based line in that file).
fn segment_of(lines: &[usize], mut n: usize) -> Option<(usize, usize)> {
    for (i, &count) in lines.iter().enumerate() {
        if n <= count {
            return Some((i, n));
        }
        n -= count;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_of_the_joined_data_named_by_the_child_is_traced_to_its_segment_and_line() {
        let d = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = ["a", "b", "c"].iter().map(|n| d.path().join(n)).collect();
        std::fs::write(&files[0], "{}\n{}\n").unwrap();
        // No newline at its end: joined, it must not run into the next file's first line.
        std::fs::write(&files[1], "{}\n{}\n{}").unwrap();
        std::fs::write(&files[2], "{\"x\":1}\n").unwrap();
        let (data, lines) = join(&files).unwrap();
        assert_eq!(lines, [2, 3, 1]);
        let text = String::from_utf8(data).unwrap();
        assert_eq!(text.lines().nth(5), Some("{\"x\":1}"));
        let data_file = d.path().join("train-0123.jsonl");
        let stderr = format!(
            "sft steps 0/1\nerror: {0}:3: bad role\n{0}:6: token id 4000000 is past the vocabulary (49152)\n",
            data_file.display()
        );
        let named = bad_lines(&stderr, &data_file);
        assert_eq!(
            named,
            [
                (3, "bad role".to_string()),
                (
                    6,
                    "token id 4000000 is past the vocabulary (49152)".to_string()
                )
            ]
        );
        assert_eq!(segment_of(&lines, 6), Some((2, 1)));
        assert_eq!(segment_of(&lines, 3), Some((1, 1)));
        assert_eq!(segment_of(&lines, 7), None);
    }

    #[test]
    fn an_error_about_the_whole_file_or_another_file_names_no_line() {
        let data_file = Path::new("/t/train-0123.jsonl");
        for stderr in [
            "error: /t/train-0123.jsonl:0: no examples",
            "error: /t/other.jsonl:3: bad",
            "error: step 4: loss is NaN",
            // Data quoted in another error's reason, or a line before the last error.
            "error: step 4: loss is NaN near /t/train-0123.jsonl:2: x",
            "warn: /t/train-0123.jsonl:2: x\nerror: step 4: loss is NaN",
            "/t/train-0123.jsonl:2: x",
            // Not every line of the message names one.
            "error: /t/train-0123.jsonl:2: x\nand more",
        ] {
            assert_eq!(bad_lines(stderr, data_file), [], "{stderr}");
        }
        let last = "error: /t/train-0123.jsonl:9: y";
        assert_eq!(bad_lines(last, data_file), [(9, "y".to_string())]);
    }
}
