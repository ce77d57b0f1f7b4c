//! The fleet (`retroformer-sync`) on a real `nats-server -js` on loopback, against the bare
//! NATS client doing the same transfers in the same run.
//!
//! For each device count (default 10 and 100), `--reps` times, on a fresh server each time:
//! - **upload**: every simulated device (its own connection, outbox and record files: real
//!   trajectories, `--files` files of `--records` lines each) uploads at once while one trainer
//!   consumes; timed from the first publish until the trainer has stored every segment.
//!   Figures: records/s, and the bytes on the wire per trajectory (the server's `/varz` bytes
//!   in and out over the phase, divided by the trajectories). Reference: the same segments'
//!   bytes published by as many bare JetStream clients (the same window of acknowledgements
//!   awaited as a device's) and pulled and acknowledged by one bare consumer, on a stream of
//!   its own: what the device's outbox and the trainer's store (each segment written and
//!   fsynced before its ack) cost on top of NATS itself.
//! - **distribution**: the trainer releases an adapter (default: the committed round-1 GSM8K
//!   adapter, 8.8 MB, on its real base's header); every device reads the release, downloads
//!   the adapter, checks its sha256, installs it through its own adapter store, runs a canary
//!   (scripted: no model runs, so this times the fleet, not inference) and reports; timed until
//!   the trainer has every report. Reference: as many bare clients downloading the same
//!   object from the object store at once.
//!
//! The devices are tokio tasks in this one process (the server, the trainer and every device
//! share the machine's cores): the figures are a loopback floor of the protocol's cost, not a
//! network's.
//!
//! cargo bench -p retroformer-benches --bench fleet -- [--devices 10,100] [--reps 3]
//!     [--files 20] [--records 25] [--trajectories FILE] [--adapter FILE]
//!     [--base qwen2.5-coder-0.5b-instruct] [--out FILE]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use retroformer::adapters::AdapterStore;
use retroformer_benches::{finish_report, load_average, median, spread};
use retroformer_gguf::GgufFile;
use retroformer_sync::device::{scored, Canary};
use retroformer_sync::{names, Device, DeviceConfig, FleetTrainer, TrainerConfig};
use serde_json::{json, Value};

/// The fleet on a real nats-server against the bare NATS client.
#[derive(clap::Parser)]
struct Args {
    /// Simulated device counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [10usize, 100])]
    devices: Vec<usize>,
    /// Repetitions, each on a fresh server.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Record files a device uploads.
    #[arg(long, default_value_t = 20)]
    files: usize,
    /// Lines a record file.
    #[arg(long, default_value_t = 25)]
    records: usize,
    /// Trajectories to upload (default: the committed round-1 GSM8K training set).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results/improve-gsm8k/full/round-1/train.jsonl"))]
    trajectories: PathBuf,
    /// The adapter released (default: the committed round-1 GSM8K adapter).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results/improve-gsm8k/full/round-1/s1.gguf"))]
    adapter: PathBuf,
    /// The adapter's base model.
    #[arg(long, default_value = "qwen2.5-coder-0.5b-instruct")]
    base: String,
    /// The result file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

fn parse_args() -> Result<Args> {
    let a: Args = clap::Parser::parse();
    if a.devices.is_empty() || a.devices.contains(&0) || a.reps == 0 || a.files * a.records == 0 {
        bail!("--devices, --reps, --files and --records must be positive");
    }
    Ok(a)
}

/// A `nats-server -js` on loopback with its monitoring port, storing under `dir`.
struct Nats {
    child: Child,
    port: u16,
    monitor: u16,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Nats {
    fn start(dir: &Path) -> Result<Self> {
        let (port, monitor) = (free_port()?, free_port()?);
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &monitor.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("nats-server (bash .ci/setup installs Debian's)")?;
        let nats = Self {
            child,
            port,
            monitor,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err()
            || TcpStream::connect(("127.0.0.1", monitor)).is_err()
        {
            if start.elapsed() > Duration::from_secs(20) {
                bail!("nats-server did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nats)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's bytes received and sent so far, from its monitoring endpoint.
    fn wire_bytes(&self) -> Result<(u64, u64)> {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", self.monitor))?;
        s.write_all(b"GET /varz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let body = text.split("\r\n\r\n").nth(1).context("a /varz body")?;
        let v: Value = serde_json::from_str(body).context("/varz")?;
        let n = |k: &str| v[k].as_u64().with_context(|| format!("/varz {k}"));
        Ok((n("in_bytes")?, n("out_bytes")?))
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the devices send and install: real trajectory lines, the adapter, its base.
struct Material {
    lines: Vec<String>,
    adapter: Vec<u8>,
    adapter_sha256: String,
    data_sha256: String,
    base: GgufFile,
    base_sha256: String,
}

fn material(a: &Args) -> Result<Material> {
    let text = std::fs::read_to_string(&a.trajectories)
        .with_context(|| format!("--trajectories {}", a.trajectories.display()))?;
    let lines: Vec<String> = text.lines().map(String::from).collect();
    if lines.is_empty() {
        bail!("--trajectories {}: no lines", a.trajectories.display());
    }
    let adapter =
        std::fs::read(&a.adapter).with_context(|| format!("--adapter {}", a.adapter.display()))?;
    let header = retroformer_gguf::validate_bytes(&adapter)
        .with_context(|| format!("--adapter {}", a.adapter.display()))?;
    let data_sha256 = header
        .get_str(retroformer_core::records::keys::DATA_SHA256)
        .context("the adapter records no training data hash")?
        .to_string();
    let resolved = retroformer::backend::resolve(&a.base, Some(&retroformer::fetch::Silent))?;
    let (store, base) = AdapterStore::for_model(&resolved)?;
    Ok(Material {
        lines,
        adapter_sha256: retroformer_sync::sha256_hex(&adapter),
        adapter,
        data_sha256,
        base,
        base_sha256: store.base_sha256().to_string(),
    })
}

/// Device `i`'s record files: `files` files of `records` trajectories, each line made unique
/// (a device and sequence field in front of the real trajectory's fields).
fn write_records(dir: &Path, i: usize, a: &Args, m: &Material) -> Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut bytes = 0;
    for f in 0..a.files {
        let mut text = String::new();
        for r in 0..a.records {
            let line = &m.lines[(i * 7919 + f * a.records + r) % m.lines.len()];
            let body = line.trim_start().strip_prefix('{').unwrap_or(line);
            text.push_str(&format!(
                "{{\"bench_device\":{i},\"bench_seq\":{},{body}\n",
                f * a.records + r
            ));
        }
        if text.len() > names::MAX_SEGMENT_BYTES {
            bail!(
                "a record file of {} bytes: more than one segment",
                text.len()
            );
        }
        bytes += text.len();
        std::fs::write(dir.join(format!("run-{f}.jsonl")), text)?;
    }
    Ok(bytes)
}

/// One phase's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Phase {
    secs: f64,
    /// The server's bytes in and out over the phase.
    wire_in: u64,
    wire_out: u64,
}

/// Times `f`, from a disk with nothing left to write back: a phase writes up to 2 GB (100
/// devices each storing the adapter), and the kernel writing it back during the next phase
/// stalled that phase's fsyncs (seen: a bare upload 16x slower in two of three repetitions).
async fn timed<F: std::future::Future<Output = Result<()>>>(nats: &Nats, f: F) -> Result<Phase> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let (i0, o0) = nats.wire_bytes()?;
    let start = Instant::now();
    f.await?;
    let secs = start.elapsed().as_secs_f64();
    let (i1, o1) = nats.wire_bytes()?;
    Ok(Phase {
        secs,
        wire_in: i1 - i0,
        wire_out: o1 - o0,
    })
}

async fn client(nats: &Nats) -> Result<async_nats::Client> {
    Ok(retroformer_sync::connect(&nats.url(), &Default::default()).await?)
}

fn device(root: &Path, i: usize, client: async_nats::Client, m: &Material) -> Result<Device> {
    let dir = root.join(format!("d{i}"));
    Ok(Device::new(
        client,
        DeviceConfig {
            id: format!("d{i}"),
            outbox: dir.join("outbox"),
            max_segment: None,
            watch: vec![dir.join("runs")],
            store: AdapterStore::open(&dir.join("store"), &m.base_sha256)?,
            base: m.base.clone(),
            base_name: "base".into(),
            // The load probe runs llama.cpp on the base: not what this benchmark times.
            proof: Box::new(|_| Ok(())),
        },
    )?)
}

/// A canary that runs no model: the base scores 0.5, any adapter 1.0.
fn scripted_canary() -> Canary {
    scored(
        0.0,
        Box::new(|a: Option<&Path>| Ok(if a.is_some() { 1.0 } else { 0.5 })),
    )
}

/// Every device uploads at once (the trainer not consuming); then the trainer stores the
/// `segments` waiting for it.
async fn upload_ours(
    nats: &Nats,
    trainer: &FleetTrainer,
    devices: Vec<Device>,
    segments: usize,
) -> Result<([Phase; 2], Vec<Device>)> {
    let mut back = Vec::new();
    let upload = timed(nats, async {
        let tasks: Vec<_> = devices
            .into_iter()
            .map(|d| {
                tokio::spawn(async move {
                    let sent = d.upload().await;
                    (d, sent)
                })
            })
            .collect();
        for t in tasks {
            let (d, sent) = t.await?;
            sent?;
            back.push(d);
        }
        Ok(())
    })
    .await?;
    let ingest = timed(nats, async {
        consume_all(segments, || async {
            Ok(trainer
                .consume(1000, Duration::from_millis(100), true)
                .await?
                .stored)
        })
        .await
    })
    .await?;
    Ok(([upload, ingest], back))
}

/// Calls `step` (which returns how many it took) until `want` were taken, within 10 minutes.
async fn consume_all<F, Fut>(want: usize, mut step: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize>>,
{
    let start = Instant::now();
    let mut got = 0;
    while got < want {
        if start.elapsed() > Duration::from_secs(600) {
            bail!("only {got} of {want} segments arrived in 10 minutes");
        }
        got += step().await?;
    }
    Ok(())
}

/// The reference: `segments[i]` published by bare client i as a device does (its sha256 as
/// `Nats-Msg-Id`, the same window of acknowledgements awaited), pulled and acknowledged by
/// one bare consumer.
async fn upload_raw(nats: &Nats, segments: &[Vec<Vec<u8>>]) -> Result<[Phase; 2]> {
    use async_nats::jetstream::{self, consumer, stream};
    let js = jetstream::new(client(nats).await?);
    let s = js
        .create_stream(stream::Config {
            name: "BENCH_RAW".into(),
            subjects: vec!["bench.raw.*".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            duplicate_window: names::DUPLICATE_WINDOW,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let c = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let mut clients = Vec::new();
    for _ in segments {
        clients.push(jetstream::new(client(nats).await?));
    }
    let total = segments.iter().map(Vec::len).sum();
    let upload = timed(nats, async {
        let tasks: Vec<_> = clients
            .into_iter()
            .zip(segments.to_vec())
            .enumerate()
            .map(|(i, (js, segs))| tokio::spawn(publish_raw(js, i, segs)))
            .collect();
        for t in tasks {
            t.await??;
        }
        Ok(())
    })
    .await?;
    let ingest = timed(nats, async {
        consume_all(total, || async {
            let mut batch = c
                .batch()
                .max_messages(1000)
                .expires(Duration::from_millis(100))
                .messages()
                .await?;
            let mut n = 0;
            while let Some(m) = futures_util::StreamExt::next(&mut batch).await {
                m.map_err(|e| anyhow::anyhow!(e))?
                    .ack()
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
                n += 1;
            }
            Ok(n)
        })
        .await
    })
    .await?;
    Ok([upload, ingest])
}

async fn publish_raw(
    js: async_nats::jetstream::Context,
    i: usize,
    segments: Vec<Vec<u8>>,
) -> Result<()> {
    for window in segments.chunks(retroformer_sync::device::IN_FLIGHT) {
        let mut acks = Vec::new();
        for seg in window {
            let mut headers = async_nats::HeaderMap::new();
            let sha = retroformer_sync::sha256_hex(seg);
            headers.insert(async_nats::header::NATS_MESSAGE_ID, sha.as_str());
            acks.push(
                js.publish_with_headers(format!("bench.raw.d{i}"), headers, seg.clone().into())
                    .await?,
            );
        }
        for ack in acks {
            ack.await?;
        }
    }
    Ok(())
}

/// The trainer releases the adapter; every device downloads, checks, installs, canaries and
/// reports; timed until the trainer promoted it on every device's report. Also the seconds the
/// trainer's publish (the object store's put and the release) took, and the seconds until
/// every device had installed it and reported.
async fn distribute_ours(
    nats: &Nats,
    trainer: &FleetTrainer,
    devices: Vec<Device>,
    adapter: &Path,
    m: &Material,
) -> Result<(Phase, [f64; 2], String)> {
    let (mut publish_secs, mut installed_secs, mut object) = (0.0, 0.0, String::new());
    let phase = timed(nats, async {
        let start = Instant::now();
        let release = trainer.publish(adapter, &m.data_sha256).await?;
        publish_secs = start.elapsed().as_secs_f64();
        object = release.object.clone();
        let tasks: Vec<_> = devices
            .into_iter()
            .map(|d| tokio::spawn(async move { d.follow_release(&mut scripted_canary()).await }))
            .collect();
        for t in tasks {
            match t.await?? {
                Some(o) if o.installed && o.promoted && o.sha256 == m.adapter_sha256 => {}
                other => bail!("a device did not install the release: {other:?}"),
            }
        }
        installed_secs = start.elapsed().as_secs_f64();
        for _ in 0..600 {
            if let Some(r) = trainer.judge(Duration::from_millis(100)).await? {
                if r.status == retroformer_sync::ReleaseStatus::Promoted {
                    return Ok(());
                }
                bail!("the release was {:?}", r.status);
            }
        }
        bail!("the trainer did not promote the release within a minute")
    })
    .await?;
    Ok((phase, [publish_secs, installed_secs], object))
}

/// The reference: as many bare clients reading the same object at once.
async fn distribute_raw(nats: &Nats, n: usize, object: &str, bytes: usize) -> Result<Phase> {
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(async_nats::jetstream::new(client(nats).await?));
    }
    timed(nats, async {
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|js| {
                let object = object.to_string();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let os = js.get_object_store(names::ADAPTERS_BUCKET).await?;
                    let mut got = Vec::new();
                    os.get(&object).await?.read_to_end(&mut got).await?;
                    anyhow::Ok(got.len())
                })
            })
            .collect();
        for t in tasks {
            let got = t.await??;
            if got != bytes {
                bail!("a bare client read {got} bytes of {bytes}");
            }
        }
        Ok(())
    })
    .await
}

/// One repetition with `n` devices on a fresh server and folders.
async fn repetition(n: usize, a: &Args, m: &Material) -> Result<Value> {
    let root = tempfile::tempdir()?;
    let root = root.path();
    let nats = Nats::start(&root.join("nats"))?;
    let trainer = FleetTrainer::new(
        client(&nats).await?,
        TrainerConfig {
            dir: root.join("trainer"),
            base_sha256: m.base_sha256.clone(),
            min_new_records: usize::MAX,
            promote_after: n,
            rollback_after: 1,
            ack_wait: Duration::from_secs(60),
            max_stored_bytes: None,
            when_full: retroformer_sync::WhenFull::Wait,
        },
    )
    .await?;
    let (mut devices, mut segments, mut payload) = (Vec::new(), Vec::new(), 0);
    for i in 0..n {
        let runs = root.join(format!("d{i}/runs"));
        payload += write_records(&runs, i, a, m)?;
        segments.push(
            (0..a.files)
                .map(|f| std::fs::read(runs.join(format!("run-{f}.jsonl"))))
                .collect::<std::io::Result<Vec<_>>>()?,
        );
        devices.push(device(root, i, client(&nats).await?, m)?);
    }
    let ([up, ingest], devices) = upload_ours(&nats, &trainer, devices, n * a.files).await?;
    let [up_raw, ingest_raw] = upload_raw(&nats, &segments).await?;
    let adapter = root.join("adapter.gguf");
    std::fs::write(&adapter, &m.adapter)?;
    let (dist, [publish_secs, installed_secs], object) =
        distribute_ours(&nats, &trainer, devices, &adapter, m).await?;
    let dist_raw = distribute_raw(&nats, n, &object, m.adapter.len()).await?;
    let records = (n * a.files * a.records) as f64;
    Ok(json!({
        "upload_records_per_s": records / up.secs,
        "raw_upload_records_per_s": records / up_raw.secs,
        "ingest_records_per_s": records / ingest.secs,
        "raw_ingest_records_per_s": records / ingest_raw.secs,
        "upload_wire_in_bytes_per_trajectory": up.wire_in as f64 / records,
        "raw_upload_wire_in_bytes_per_trajectory": up_raw.wire_in as f64 / records,
        "ingest_wire_out_bytes_per_trajectory": ingest.wire_out as f64 / records,
        "raw_ingest_wire_out_bytes_per_trajectory": ingest_raw.wire_out as f64 / records,
        "payload_bytes_per_trajectory": payload as f64 / records,
        "distribution_s": installed_secs,
        "promoted_s": dist.secs,
        "raw_distribution_s": dist_raw.secs,
        "publish_s": publish_secs,
        "distribution_wire_out_bytes": dist.wire_out,
        "raw_distribution_wire_out_bytes": dist_raw.wire_out,
    }))
}

const FIGURES: [&str; 15] = [
    "upload_records_per_s",
    "raw_upload_records_per_s",
    "ingest_records_per_s",
    "raw_ingest_records_per_s",
    "upload_wire_in_bytes_per_trajectory",
    "raw_upload_wire_in_bytes_per_trajectory",
    "ingest_wire_out_bytes_per_trajectory",
    "raw_ingest_wire_out_bytes_per_trajectory",
    "payload_bytes_per_trajectory",
    "distribution_s",
    "promoted_s",
    "raw_distribution_s",
    "publish_s",
    "distribution_wire_out_bytes",
    "raw_distribution_wire_out_bytes",
];

/// Each figure's median and spread over the repetitions, and ours over the reference.
fn summary(n: usize, reps: &[Value]) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("devices".into(), json!(n));
    for f in FIGURES {
        let xs: Vec<f64> = reps.iter().filter_map(|r| r[f].as_f64()).collect();
        let (lo, hi) = spread(&xs);
        out.insert(
            f.into(),
            json!({"median": median(&xs), "min": lo, "max": hi}),
        );
    }
    let m = |k: &str| out[k]["median"].as_f64().unwrap_or(f64::NAN);
    let ratios = [
        (
            "upload_vs_raw",
            m("upload_records_per_s") / m("raw_upload_records_per_s"),
        ),
        (
            "ingest_vs_raw",
            m("ingest_records_per_s") / m("raw_ingest_records_per_s"),
        ),
        (
            "distribution_vs_raw",
            m("distribution_s") / m("raw_distribution_s"),
        ),
    ];
    for (k, v) in ratios {
        out.insert(k.into(), json!(v));
    }
    out.insert("repetitions".into(), json!(reps));
    Value::Object(out)
}

fn print_row(s: &Value) {
    let m = |k: &str| s[k]["median"].as_f64().unwrap_or(f64::NAN);
    let r = |k: &str| s[k]["min"].as_f64().unwrap_or(f64::NAN);
    let x = |k: &str| s[k]["max"].as_f64().unwrap_or(f64::NAN);
    let ratio = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
    println!("{} devices:", s["devices"]);
    for (what, ours, raw, ratio_key) in [
        (
            "upload records/s",
            "upload_records_per_s",
            "raw_upload_records_per_s",
            "upload_vs_raw",
        ),
        (
            "ingest records/s",
            "ingest_records_per_s",
            "raw_ingest_records_per_s",
            "ingest_vs_raw",
        ),
        (
            "adapter to all, s",
            "distribution_s",
            "raw_distribution_s",
            "distribution_vs_raw",
        ),
    ] {
        println!(
            "  {what:<18} {:>9.2} [{:.2}-{:.2}]  bare async-nats {:>9.2}  ratio {:.3}",
            m(ours),
            r(ours),
            x(ours),
            m(raw),
            ratio(ratio_key)
        );
    }
    println!(
        "  bytes a trajectory: device to server {:.0} (bare {:.0}), server to trainer {:.0} \
         (bare {:.0}), the record itself {:.0}; publish {:.3} s, promoted fleet-wide {:.2} s",
        m("upload_wire_in_bytes_per_trajectory"),
        m("raw_upload_wire_in_bytes_per_trajectory"),
        m("ingest_wire_out_bytes_per_trajectory"),
        m("raw_ingest_wire_out_bytes_per_trajectory"),
        m("payload_bytes_per_trajectory"),
        m("publish_s"),
        m("promoted_s"),
    );
}

/// Two charts beside the report: records/s and the adapter's distribution time by devices.
fn charts(out: &Path, rows: &[Value]) -> Result<()> {
    use retroformer_report::{line_chart_svg, write_chart, Series};
    let series = |label: &str, k: &str| Series {
        label: label.into(),
        points: rows
            .iter()
            .map(|r| {
                (
                    r["devices"].as_f64().unwrap_or(0.0),
                    r[k]["median"].as_f64().unwrap_or(0.0),
                )
            })
            .collect(),
    };
    for (stem, title, y, keys) in [
        (
            "records",
            "Records the trainer stores and acknowledges (backlog)",
            "records/s",
            ["ingest_records_per_s", "raw_ingest_records_per_s"],
        ),
        (
            "distribution",
            "One adapter to every device",
            "seconds",
            ["distribution_s", "raw_distribution_s"],
        ),
    ] {
        let lines = [
            series("retroformer-sync", keys[0]),
            series("bare async-nats", keys[1]),
        ];
        let top = lines
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max);
        let svg = line_chart_svg(title, "devices", y, (0.0, top * 1.1), &lines);
        let stem = out.with_file_name(format!(
            "{}-{stem}",
            out.file_stem().and_then(|s| s.to_str()).unwrap_or("fleet")
        ));
        write_chart(&stem, &svg)?;
    }
    Ok(())
}

fn nats_server_version() -> Option<String> {
    let out = Command::new("nats-server").arg("--version").output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let load = load_average();
    let m = material(&a)?;
    // The machine's cores, as a device fleet's trainer would have them.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for &n in &a.devices {
        let mut reps = Vec::new();
        for r in 0..a.reps {
            let v = rt
                .block_on(repetition(n, &a, &m))
                .with_context(|| format!("{n} devices, repetition {}", r + 1))?;
            reps.push(v);
        }
        let s = summary(n, &reps);
        print_row(&s);
        rows.push(s);
    }
    let report = json!({
        "format_version": 1,
        "kind": "fleet",
        "settings": {
            "files_per_device": a.files,
            "records_per_file": a.records,
            "trajectories": a.trajectories.display().to_string(),
            "adapter": a.adapter.display().to_string(),
            "adapter_bytes": m.adapter.len(),
            "adapter_sha256": m.adapter_sha256,
            "base": a.base,
            "repetitions": a.reps,
            "tokio_workers": 2,
        },
        "nats_server": nats_server_version(),
        "async_nats": "0.51",
        "rows": rows,
    });
    if let Some(out) = &a.out {
        if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d)?;
        }
        charts(out, &rows)?;
    }
    finish_report(&report, a.out.as_deref(), load, 2)?;
    Ok(())
}
