//! What the fleet's tests share: a real `nats-server -js` on loopback (`bash .ci/setup`
//! installs Debian's), tiny adapters of a tiny base, simulated devices and their records.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use retroformer::adapters::AdapterStore;
use retroformer_core::records::keys;
use retroformer_gguf::{GgufWriter, TinyModel, WriteValue};
use retroformer_sync::device::{scored, Canary};
use retroformer_sync::trainer::{TrainFailure, Trained};
use retroformer_sync::{Consumed, Device, DeviceConfig, FleetTrainer, TrainerConfig};

/// A `nats-server -js` on a free loopback port, storing under `dir`; killed when dropped.
pub struct Nats {
    child: Child,
    pub port: u16,
    dir: PathBuf,
    config: Option<PathBuf>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nats {
    pub fn start(dir: &Path) -> Self {
        Self::on(dir, free_port(), None)
    }

    /// A server whose users are `users` (each `{ user: ..., password: ..., permissions:
    /// ... }`), in one account with JetStream; its log goes to `dir/server.log`.
    pub fn with_users(dir: &Path, users: &[String]) -> Self {
        let accounts = format!(
            "accounts {{ FLEET {{ jetstream: enabled, users = [\n{}\n] }} }}",
            users.join("\n")
        );
        Self::with_config(dir, &accounts)
    }

    /// A server with JetStream, its log in `dir/server.log`, and `extra` configuration.
    pub fn with_config(dir: &Path, extra: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("server.conf");
        let text = format!(
            "jetstream {{ store_dir: {:?} }}\nlog_file: {:?}\n{extra}\n",
            dir.join("js"),
            dir.join("server.log"),
        );
        std::fs::write(&config, text).unwrap();
        Self::on(dir, free_port(), Some(config))
    }

    fn on(dir: &Path, port: u16, config: Option<PathBuf>) -> Self {
        let mut cmd = Command::new("nats-server");
        match &config {
            Some(c) => cmd.arg("-c").arg(c),
            None => cmd.arg("-js").arg("-sd").arg(dir),
        };
        let child = cmd
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server is needed (bash .ci/setup installs Debian's)");
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            dir: dir.to_path_buf(),
            config,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The URL with a user's name and password.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// What the server logged (a server started `with_users`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Kills it (SIGKILL) and starts it again on the same port and store.
    pub fn restart(mut self) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Self::on(&self.dir.clone(), self.port, self.config.take())
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn base_sha() -> String {
    "ab".repeat(32)
}

/// Consumes (acknowledging) until something is stored, three rounds at most; the rounds'
/// counts added up.
pub async fn consume_until_stored(trainer: &FleetTrainer) -> Consumed {
    let mut got = Consumed::default();
    for _ in 0..3 {
        let c = trainer
            .consume(1000, Duration::from_millis(300), true)
            .await
            .unwrap();
        got.received += c.received;
        got.stored += c.stored;
        got.quarantined += c.quarantined;
        got.dropped += c.dropped;
        got.dropped_set_aside += c.dropped_set_aside;
        if got.stored > 0 {
            break;
        }
    }
    got
}

/// A training that writes a tiny adapter under `root/adapters` saying which data it saw; each
/// call's adapter differs (`fill` `first + 1`, then `first + 2`, ...).
pub fn fake_train(
    root: &Path,
    first: f32,
) -> impl FnMut(&[PathBuf]) -> Result<Trained, TrainFailure> + Send {
    let dir = root.join("adapters");
    std::fs::create_dir_all(&dir).unwrap();
    let mut fill = first;
    move |files| {
        let data = retroformer_sync::sha256_hex(lines_in(files).join("\n").as_bytes());
        fill += 1.0;
        Ok(Trained {
            path: adapter(&dir, fill, &data),
            data_sha256: data,
        })
    }
}

/// A tiny adapter of the tiny base, trained (so it says) on `data_sha256`; `fill` makes each
/// one different.
pub fn adapter(dir: &Path, fill: f32, data_sha256: &str) -> PathBuf {
    let mut w = GgufWriter::lora_adapter("llama", 4.0);
    w.kv(keys::BASE_SHA256, base_sha().as_str())
        .kv(keys::DATA_SHA256, data_sha256)
        .kv(keys::OBJECTIVE, "sft")
        .kv(keys::STEP, WriteValue::U64(1))
        .tensor_f32("blk.0.attn_q.weight.lora_a", &[64, 2], &[fill; 128])
        .tensor_f32("blk.0.attn_q.weight.lora_b", &[2, 64], &[fill; 128]);
    let p = dir.join(format!("adapter-{fill}.gguf"));
    w.write(&p).unwrap();
    p
}

/// A trainer under `root` that trains on `min_new` new records and promotes or rolls back on
/// one vote, its store unbounded.
pub fn one_vote_config(root: &Path, min_new: usize) -> TrainerConfig {
    TrainerConfig {
        dir: root.join("trainer"),
        base_sha256: base_sha(),
        min_new_records: min_new,
        promote_after: 1,
        rollback_after: 1,
        ack_wait: Duration::from_secs(1),
        max_stored_bytes: None,
        when_full: retroformer_sync::WhenFull::Wait,
    }
}

pub fn device(root: &Path, id: &str, client: async_nats::Client) -> Device {
    let dir = root.join(id);
    let records = dir.join("runs");
    std::fs::create_dir_all(&records).unwrap();
    let base = retroformer_gguf::validate_bytes(&TinyModel::llama().writer().to_bytes()).unwrap();
    Device::new(
        client,
        DeviceConfig {
            id: id.into(),
            outbox: dir.join("outbox"),
            max_segment: Some(300),
            watch: vec![records],
            store: AdapterStore::open(&dir.join("store"), &base_sha()).unwrap(),
            base,
            base_name: "tiny".into(),
            proof: Box::new(|_| Ok(())),
        },
    )
    .unwrap()
}

/// Writes `n` records of device `id` into its watched folder as `name`.
pub fn records(root: &Path, id: &str, name: &str, n: usize) {
    let text: String = (0..n)
        .map(|i| {
            format!(
                "{{\"device\":\"{id}\",\"file\":\"{name}\",\"i\":{i},\"pad\":\"{}\"}}\n",
                "x".repeat(40)
            )
        })
        .collect();
    std::fs::write(root.join(id).join("runs").join(name), text).unwrap();
}

/// The canary's scores: the base 0.5, an adapter 1.0 when its sha256 is in `good`, else 0.
pub fn eval(good: &[&str]) -> Canary {
    let good: Vec<String> = good.iter().map(|s| s.to_string()).collect();
    scored(
        0.0,
        Box::new(move |a: Option<&Path>| {
            Ok(match a {
                None => 0.5,
                Some(p) => {
                    let sha = retroformer_sync::sha256_hex(&std::fs::read(p).unwrap());
                    if good.contains(&sha) {
                        1.0
                    } else {
                        0.0
                    }
                }
            })
        }),
    )
}

pub async fn connect(url: &str) -> async_nats::Client {
    retroformer_sync::connect(url, &Default::default())
        .await
        .unwrap()
}

pub fn lines_in(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}
