//! Serving: `retroformer serve` against llama.cpp's own `llama-server`, same model file,
//! threads, parallel slots and context per slot, the same requests over HTTP, the two servers
//! taking turns in every repetition (each started fresh, then stopped).
//!
//! Two workloads:
//! - **load**: for each client count, that many clients each send `--requests` streamed text
//!   completions back to back (a closed loop), every prompt distinct (`--pp` tokens of prose
//!   behind a numbered header, so no two share a prefix beyond a few tokens), `--tg` tokens
//!   generated each (`ignore_eos`, greedy). Per level: completion tokens over the level's wall
//!   time, and each request's latency (end to end) and time to its first text.
//! - **agent**: `--conversations` chats run at once, `--turns` turns each; every turn sends the
//!   whole conversation so far plus a new user message, as an agent loop does. The prompt-cache
//!   hit rate is the share of prompt tokens a server took from its cache instead of
//!   evaluating: ours from `/metrics` (reused over prompt tokens), llama-server's from each
//!   response's `timings` (`cache_n` over `cache_n + prompt_n`).
//!
//! The reference is any command that runs llama-server with the flags appended
//! (`scripts/llama-server` prints one). Without `--reference` only ours runs.
//!
//! cargo bench -p retroformer-benches --bench serve -- [--model NAME|PATH] [--threads 2]
//!     [--parallel 16] [--clients 1,4,16] [--requests 4] [--pp 64] [--tg 64] [--reps 3]
//!     [--conversations 4] [--turns 6] [--ours PATH] [--reference CMD] [--out FILE]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use retroformer_benches::{finish_report, load_average, median, resolve_model, spread};
use serde_json::{json, Value};

/// Our OpenAI-compatible server against llama.cpp's, same model, requests and clients.
#[derive(clap::Parser)]
struct Args {
    /// Model name or GGUF path.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    /// Threads of each server.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Lanes of each server.
    #[arg(long, default_value_t = 16)]
    parallel: u32,
    /// Concurrent clients, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1u32, 4, 16])]
    clients: Vec<u32>,
    /// Requests a client.
    #[arg(long, default_value_t = 4)]
    requests: u32,
    /// Prompt tokens a request.
    #[arg(long, default_value_t = 64)]
    pp: u32,
    /// Generated tokens a request.
    #[arg(long, default_value_t = 64)]
    tg: u32,
    /// Repetitions.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Multi-turn conversations (the prefix cache's case).
    #[arg(long, default_value_t = 4)]
    conversations: u32,
    /// Turns a conversation.
    #[arg(long, default_value_t = 6)]
    turns: u32,
    /// Our executable.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/retroformer"))]
    ours: PathBuf,
    /// llama.cpp's `llama-server`, measured in the same run.
    #[arg(long)]
    reference: Option<String>,
    /// The result file (relative to the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

fn parse_args() -> Result<Args> {
    let mut a: Args = clap::Parser::parse();
    // cargo runs a bench in its package's folder: a relative path is the workspace's.
    a.out = a
        .out
        .map(|o| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(o));
    if a.clients.iter().any(|&c| c == 0 || c > a.parallel) {
        bail!("--clients must be 1 to --parallel ({})", a.parallel);
    }
    Ok(a)
}

/// Which server a run is of.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Ours,
    Reference,
}

/// A server process on a local port, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
    side: Side,
    /// The model's name in requests (from `/v1/models`).
    model: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: a plain kill(2) of our own child; SIGTERM lets both servers exit cleanly.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `side` on `model` and waits until `/health` answers 200.
fn start(side: Side, a: &Args, model: &Path, ctx: u32, log: &Path) -> Result<Server> {
    let port = free_port()?;
    let (t, np) = (a.threads.to_string(), a.parallel.to_string());
    let mut cmd = match side {
        Side::Ours => {
            let mut c = Command::new(&a.ours);
            c.args(["serve", "--no-fetch", "-m", &model.display().to_string()]);
            c.args(["--listen", &format!("127.0.0.1:{port}"), "--threads", &t]);
            c.args(["--parallel", &np, "--ctx-size", &ctx.to_string()]);
            c.args(["--max-queue", "256"]);
            c
        }
        Side::Reference => {
            let line = a.reference.as_deref().context("no --reference")?;
            let mut words = line.split_whitespace();
            let mut c = Command::new(words.next().context("--reference is empty")?);
            c.args(words);
            c.args(["-m", &model.display().to_string(), "--host", "127.0.0.1"]);
            c.args(["--port", &port.to_string(), "-t", &t, "-tb", &t, "-np", &np]);
            // -c is the whole cache, shared out among the slots.
            c.args(["-c", &(ctx * a.parallel).to_string(), "-ngl", "0"]);
            c
        }
    };
    let log_file = std::fs::File::create(log)?;
    let child = cmd
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", side_name(side)))?;
    let mut s = Server {
        child,
        port,
        side,
        model: String::new(),
    };
    let t = Instant::now();
    loop {
        if let Some(status) = s.child.try_wait()? {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            bail!(
                "{} exited ({status}):\n{}",
                side_name(side),
                tail(&text, 15)
            );
        }
        if let Ok((200, _)) = http(port, "GET", "/health", None) {
            let (_, models) = http(port, "GET", "/v1/models", None)?;
            let v: Value = serde_json::from_str(&models).context("/v1/models")?;
            s.model = v["data"][0]["id"]
                .as_str()
                .context("/v1/models names no model")?
                .into();
            return Ok(s);
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!("{} did not become healthy in 120 s", side_name(side));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Ours => "retroformer serve",
        Side::Reference => "llama-server",
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A whole HTTP/1.1 exchange (`Connection: close`): status and body.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut r = BufReader::new(s);
    let (status, chunked) = head(&mut r)?;
    let mut text = String::new();
    if chunked {
        while let Some(piece) = chunk(&mut r)? {
            text.push_str(&piece);
        }
    } else {
        std::io::Read::read_to_string(&mut r, &mut text)?;
    }
    Ok((status, text))
}

/// Reads a response's status line and headers: the status, and whether the body is chunked.
fn head(r: &mut impl BufRead) -> Result<(u16, bool)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 || line == "\r\n" {
            return Ok((status, chunked));
        }
        let l = line.to_ascii_lowercase();
        chunked |= l.starts_with("transfer-encoding:") && l.contains("chunked");
    }
}

/// One chunk of a chunked body; `None` at the end.
fn chunk(r: &mut impl BufRead) -> Result<Option<String>> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
        .with_context(|| format!("bad chunk size {line:?}"))?;
    let mut buf = vec![0u8; size + 2];
    std::io::Read::read_exact(r, &mut buf)?;
    buf.truncate(size);
    Ok((size > 0).then(|| String::from_utf8_lossy(&buf).into_owned()))
}

/// One streamed completion: latency, time to the first text, completion tokens.
struct Timed {
    latency: f64,
    first: f64,
    tokens: u64,
}

/// Streams one text completion of `prompt`, reading server-sent events as they arrive.
fn streamed(server: &Server, prompt: &str, tg: u32) -> Result<Timed> {
    let port = server.port;
    let body = json!({"model": server.model, "prompt": prompt, "max_tokens": tg, "temperature": 0,
        "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true}});
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    let b = body.to_string();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
        b.len()
    )?;
    let mut r = BufReader::new(s);
    let (status, chunked) = head(&mut r)?;
    let (mut first, mut tokens, mut pending) = (None, None, String::new());
    loop {
        let piece = if chunked {
            chunk(&mut r)?
        } else {
            let mut l = String::new();
            (r.read_line(&mut l)? > 0).then_some(l)
        };
        let Some(piece) = piece else { break };
        pending.push_str(&piece);
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(data.trim()) else {
                continue;
            };
            if v["choices"][0]["text"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
            {
                first.get_or_insert(t.elapsed().as_secs_f64());
            }
            if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                tokens = Some(n);
            }
        }
    }
    if status != 200 {
        bail!("status {status}: {pending}");
    }
    let latency = t.elapsed().as_secs_f64();
    Ok(Timed {
        latency,
        first: first.unwrap_or(latency),
        tokens: tokens.context("no usage in the stream")?,
    })
}

/// One level of the load: `clients` closed loops of `requests` each. Returns the completion
/// tokens per second over the level's wall time, and every request's timing.
fn load_level(server: &Server, a: &Args, clients: u32, offset: u32) -> Result<(f64, Vec<Timed>)> {
    let t = Instant::now();
    let timed: Vec<Timed> = in_parallel(clients, |c| {
        (0..a.requests)
            .map(|k| streamed(server, &prompt(offset + c * a.requests + k, a.pp), a.tg))
            .collect()
    })?;
    let wall = t.elapsed().as_secs_f64();
    let tokens: u64 = timed.iter().map(|x| x.tokens).sum();
    let want = u64::from(clients * a.requests * a.tg);
    anyhow::ensure!(tokens == want, "{tokens} completion tokens, not {want}");
    Ok((tokens as f64 / wall, timed))
}

/// Runs `f(0..n)` on `n` threads at once; every thread's items, in thread order.
fn in_parallel<T: Send>(n: u32, f: impl Fn(u32) -> Result<Vec<T>> + Sync) -> Result<Vec<T>> {
    let f = &f;
    let per_thread = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n).map(|i| s.spawn(move || f(i))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client thread panicked"))
            .collect::<Result<Vec<Vec<T>>>>()
    })?;
    Ok(per_thread.into_iter().flatten().collect())
}

/// A distinct prompt of about `words` words of prose, numbered first.
fn prompt(i: u32, words: u32) -> String {
    const UNIT: [&str; 8] = [
        "the", "river", "runs", "past", "an", "old", "mill", "slowly",
    ];
    let body: Vec<&str> = (0..words as usize)
        .map(|k| UNIT[(k + i as usize) % UNIT.len()])
        .collect();
    format!("Request {i}. {}", body.join(" "))
}

/// The agent workload: the prompt-cache hit rate over every turn (each conversation's first
/// included, the same for both sides), and the wall time.
fn agent(server: &Server, a: &Args) -> Result<(f64, f64)> {
    let before = cache_counters(server)?;
    let t = Instant::now();
    let per_turn: Vec<(u64, u64)> = in_parallel(a.conversations, |c| conversation(server, a, c))?;
    let wall = t.elapsed().as_secs_f64();
    let (cached, prompt) = match server.side {
        Side::Ours => {
            let after = cache_counters(server)?;
            (after.0 - before.0, after.1 - before.1)
        }
        Side::Reference => per_turn
            .iter()
            .fold((0, 0), |(c, p), &(tc, tp)| (c + tc, p + tp)),
    };
    Ok((cached as f64 / prompt.max(1) as f64, wall))
}

/// One conversation; for the reference, each turn's (cached, prompt) tokens from `timings`.
fn conversation(server: &Server, a: &Args, c: u32) -> Result<Vec<(u64, u64)>> {
    let mut messages = vec![json!({"role": "system", "content": format!(
        "You are agent {c}. You explore a house room by room and report what you see.")})];
    let mut out = Vec::new();
    for turn in 0..a.turns {
        messages.push(json!({"role": "user", "content": format!(
            "Observation {turn}: you are in room {turn} of house {c}. What do you do next?")}));
        // Replies end where the model ends them, as an agent's do: with `ignore_eos` they
        // would run past end-of-turn tokens that the text, sent back next turn, leaves out.
        let body = json!({"model": server.model, "messages": messages, "max_tokens": 48,
            "temperature": 0});
        let (status, text) = http(server.port, "POST", "/v1/chat/completions", Some(&body))?;
        anyhow::ensure!(status == 200, "turn {turn}: status {status}: {text}");
        let v: Value = serde_json::from_str(&text)?;
        let reply = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
        messages.push(json!({"role": "assistant", "content": reply}));
        let t = &v["timings"];
        let cached = t["cache_n"].as_u64().unwrap_or(0);
        out.push((cached, cached + t["prompt_n"].as_u64().unwrap_or(0)));
    }
    Ok(out)
}

/// Our `/metrics`: prompt tokens reused from the cache, and prompt tokens, so far.
fn cache_counters(server: &Server) -> Result<(u64, u64)> {
    if server.side == Side::Reference {
        return Ok((0, 0));
    }
    let (_, text) = http(server.port, "GET", "/metrics", None)?;
    let get = |name: &str| -> Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .with_context(|| format!("{name} missing from /metrics"))
    };
    Ok((
        get("retroformer_prompt_cache_reused_tokens_total")?,
        get("retroformer_prompt_tokens_total")?,
    ))
}

/// The peak resident memory of a running server (its `VmHWM`).
fn peak_rss(server: &Server) -> Option<u64> {
    let t = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).ok()?;
    let line = t.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// What one side measured over the repetitions.
#[derive(Default)]
struct Tally {
    tps: Vec<Vec<f64>>,
    timed: Vec<Vec<Timed>>,
    hit_rate: Vec<f64>,
    agent_s: Vec<f64>,
    peak_rss: Vec<u64>,
}

/// One repetition of one side: a fresh server, a warm-up request, every load level, the agent.
fn run_side(side: Side, a: &Args, model: &Path, ctx: u32, rep: usize, t: &mut Tally) -> Result<()> {
    let log = std::env::temp_dir().join(format!("serve-bench-{}.log", std::process::id()));
    let server = start(side, a, model, ctx, &log)?;
    streamed(&server, &prompt(1_000_000, a.pp), 4)?;
    t.tps.resize_with(a.clients.len(), Vec::new);
    t.timed.resize_with(a.clients.len(), Vec::new);
    for (k, &c) in a.clients.iter().enumerate() {
        // The same prompts for both sides, different ones in every repetition and level.
        let offset = (rep * a.clients.len() + k) as u32 * 10_000;
        let (tps, timed) = load_level(&server, a, c, offset)?;
        let lat: Vec<f64> = timed.iter().map(|x| x.latency).collect();
        println!(
            "rep {rep} {:>17} {c:>2} clients: {tps:7.1} completion t/s, p50 {:.2} s",
            side_name(side),
            median(&lat)
        );
        t.tps[k].push(tps);
        t.timed[k].extend(timed);
    }
    let (hit, wall) = agent(&server, a)?;
    println!(
        "rep {rep} {:>17} agent: prompt-cache hit rate {:.1} %, {wall:.1} s",
        side_name(side),
        hit * 100.0
    );
    t.hit_rate.push(hit);
    t.agent_s.push(wall);
    t.peak_rss.extend(peak_rss(&server));
    Ok(())
}

fn percentile(xs: &[f64], p: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

fn summary(a: &Args, t: &Tally, k: usize) -> Value {
    let lat: Vec<f64> = t.timed[k].iter().map(|x| x.latency).collect();
    let first: Vec<f64> = t.timed[k].iter().map(|x| x.first).collect();
    let (lo, hi) = spread(&t.tps[k]);
    json!({"clients": a.clients[k], "completion_tps_median": median(&t.tps[k]),
        "completion_tps_min": lo, "completion_tps_max": hi, "completion_tps": t.tps[k],
        "latency_p50_s": percentile(&lat, 0.5), "latency_p99_s": percentile(&lat, 0.99),
        "first_text_p50_s": percentile(&first, 0.5), "first_text_p99_s": percentile(&first, 0.99),
        "requests": lat.len()})
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let (path, label) = resolve_model(&a.model)?;
    // Each slot holds a prompt and its generation, or a whole agent conversation.
    let ctx = 1024.max(a.pp * 2 + a.tg + 64);
    let load_start = load_average();
    println!(
        "{label}, {} threads, {} slots of {ctx} tokens, clients {:?} x {} requests, prompts of ~{} words, {} tokens generated each, {} reps",
        a.threads, a.parallel, a.clients, a.requests, a.pp, a.tg, a.reps
    );
    let (mut ours, mut refs) = (Tally::default(), Tally::default());
    for rep in 0..a.reps {
        // Alternate which side goes first.
        let mut order = vec![Side::Ours];
        if a.reference.is_some() {
            order.insert(rep % 2, Side::Reference);
        }
        for side in order {
            let t = if side == Side::Ours {
                &mut ours
            } else {
                &mut refs
            };
            run_side(side, &a, &path, ctx, rep, t)?;
        }
    }
    println!("\n| clients | ours t/s (min-max) | llama-server t/s (min-max) | ratio | ours p50 / p99 s | llama-server p50 / p99 s | ours first text p50 s | llama-server first text p50 s |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for k in 0..a.clients.len() {
        let o = summary(&a, &ours, k);
        let r = (a.reference.is_some()).then(|| summary(&a, &refs, k));
        let f = |v: &Value, key: &str| v[key].as_f64().unwrap_or(f64::NAN);
        let ratio = r
            .as_ref()
            .map(|r| f(&o, "completion_tps_median") / f(r, "completion_tps_median"));
        let side =
            |v: &Option<Value>, g: &dyn Fn(&Value) -> String| v.as_ref().map_or("-".into(), g);
        println!(
            "| {} | {:.1} ({:.1}-{:.1}) | {} | {} | {:.2} / {:.2} | {} | {:.3} | {} |",
            a.clients[k],
            f(&o, "completion_tps_median"),
            f(&o, "completion_tps_min"),
            f(&o, "completion_tps_max"),
            side(&r, &|r| format!(
                "{:.1} ({:.1}-{:.1})",
                f(r, "completion_tps_median"),
                f(r, "completion_tps_min"),
                f(r, "completion_tps_max")
            )),
            ratio.map_or("-".into(), |x| format!("{x:.2}x")),
            f(&o, "latency_p50_s"),
            f(&o, "latency_p99_s"),
            side(&r, &|r| format!(
                "{:.2} / {:.2}",
                f(r, "latency_p50_s"),
                f(r, "latency_p99_s")
            )),
            f(&o, "first_text_p50_s"),
            side(&r, &|r| format!("{:.3}", f(r, "first_text_p50_s"))),
        );
        rows.push(json!({"ours": o, "reference": r, "ratio_tps": ratio}));
    }
    let agent = |t: &Tally| {
        json!({"hit_rate_median": median(&t.hit_rate), "hit_rates": t.hit_rate,
        "wall_s_median": median(&t.agent_s)})
    };
    println!(
        "\nagent ({} conversations x {} turns): prompt-cache hit rate, ours {:.1} %{}",
        a.conversations,
        a.turns,
        median(&ours.hit_rate) * 100.0,
        if a.reference.is_some() {
            format!(", llama-server {:.1} %", median(&refs.hit_rate) * 100.0)
        } else {
            String::new()
        }
    );
    let mib = |t: &Tally| {
        t.peak_rss
            .iter()
            .max()
            .map(|b| *b as f64 / (1 << 20) as f64)
    };
    let report = json!({
        "kind": "retroformer-bench-serve",
        "format_version": 1,
        "model": label,
        "model_path": path.display().to_string(),
        "threads": a.threads,
        "parallel": a.parallel,
        "context_per_slot": ctx,
        "requests_per_client": a.requests,
        "prompt_words": a.pp,
        "generated_tokens": a.tg,
        "reps": a.reps,
        "ours": a.ours.display().to_string(),
        "reference": a.reference,
        "reference_version": a.reference.as_ref().and_then(|r| reference_version(r)),
        "load_average_start": load_start,
        "rows": rows,
        "agent": {"conversations": a.conversations, "turns": a.turns, "ours": agent(&ours),
            "reference": a.reference.is_some().then(|| agent(&refs))},
        "peak_rss_mib": {"ours": mib(&ours), "reference": mib(&refs)},
    });
    Ok(finish_report(
        &report,
        a.out.as_deref(),
        load_start,
        a.threads,
    )?)
}

/// What the reference says its version is (`--version`).
fn reference_version(line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    let out = Command::new(words.next()?)
        .args(words)
        .arg("--version")
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("; "),
    )
}
