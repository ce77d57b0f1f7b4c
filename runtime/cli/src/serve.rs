//! `serve`: flags, model loading and the tokio runtime; the server is `retroformer-serve`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use retroformer::adapters::AdapterStore;
use retroformer::backend;
use retroformer_llm::target::TargetProfile;
use retroformer_llm::SessionOptions;
use retroformer_serve::{Adapters, Capture, Engine, Limits, ServedModel};

use crate::common::{self, FetchBar};

#[derive(Args)]
pub struct ServeArgs {
    /// A model to serve (manifest name, alias or GGUF path); repeat for several (an actor and a
    /// reflector resident together). Requests pick one with `model`.
    #[arg(long, short, default_value = "smollm2-135m-instruct")]
    model: Vec<String>,
    /// Address to listen on. Anything but loopback needs --api-key.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The key clients must send as `Authorization: Bearer KEY`.
    #[arg(long, env = "RETROFORMER_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Requests each model decodes together (continuous batching; each lane has a KV cache of
    /// --ctx-size tokens).
    #[arg(long, alias = "sessions", default_value_t = 4)]
    parallel: u32,
    /// Requests that may wait beyond --parallel; more are answered 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// The largest `max_tokens` a request may ask for, and what one that asks none gets (its
    /// reply then ends at the model's end of generation or the context's end, as OpenAI's).
    /// Logprobs are bounded per request by completions x max_tokens x (alternatives + 1): with
    /// a larger cap, a request for alternatives sets its own max_tokens.
    #[arg(long, default_value_t = 4096)]
    max_tokens: u32,
    /// A request's wall-clock budget in seconds, queueing included (0: none).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// The largest request body, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    max_body: usize,
    /// Seconds a model may have requests in flight with no progress before `/health` answers
    /// 503 with the model "stalled". With --parallel above 1 every prompt chunk and decode
    /// step counts; with --parallel 1 a prompt is evaluated whole, so this must exceed the
    /// longest prompt's evaluation.
    #[arg(long, default_value_t = 300)]
    stall_seconds: u64,
    /// Connections open at once; more wait to be accepted. Each connection that sends no
    /// request for 30 s is closed.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_connections: u32,
    /// Context size per lane in tokens (default: the target profile's).
    #[arg(long)]
    ctx_size: Option<u32>,
    /// Threads per model (default: the target profile's).
    #[arg(long)]
    threads: Option<u32>,
    /// Scale of the adapters requests select.
    #[arg(long, default_value_t = 1.0)]
    adapter_scale: f32,
    /// Do not fetch a missing model; fail instead.
    #[arg(long)]
    no_fetch: bool,
    /// Capture chat turns that carry a `session_id`; `POST /v1/feedback {session_id, reward}`
    /// writes them here as training samples (`retroformer-train rwr --data`).
    #[arg(long, value_name = "DIR")]
    capture: Option<std::path::PathBuf>,
    /// Keep each `session_id`'s KV cache here, so that a conversation resumes without
    /// re-evaluating its prefix after a restart (even after kill -9: it is saved after every
    /// turn). A file is restored only for the same model file, adapter, KV type and context
    /// size, and only if its tokens start the new prompt.
    #[arg(long, value_name = "DIR")]
    kv_dir: Option<std::path::PathBuf>,
    /// The most MiB of KV files --kv-dir keeps per model; the least recently saved
    /// conversations' files go first.
    #[arg(long, value_name = "MIB", default_value_t = 4096)]
    kv_dir_max_mib: u64,
}

pub fn serve(profile: &TargetProfile, a: &ServeArgs) -> Result<()> {
    if !a.adapter_scale.is_finite() {
        anyhow::bail!("--adapter-scale must be a finite number");
    }
    if !(1..=retroformer_llm::MAX_SEQUENCES).contains(&a.parallel) {
        anyhow::bail!(
            "--parallel must be between 1 and {}",
            retroformer_llm::MAX_SEQUENCES
        );
    }
    // A week: past it a deadline means nothing, and far past it the clock cannot hold it.
    if a.timeout > 7 * 24 * 3600 {
        anyhow::bail!("--timeout must be at most 604800 seconds (a week); 0: none");
    }
    if !(1..=7 * 24 * 3600).contains(&a.stall_seconds) {
        anyhow::bail!("--stall-seconds must be between 1 and 604800 (a week)");
    }
    let limits = Limits {
        max_queue: a.max_queue,
        max_tokens: a.max_tokens.max(1),
        deadline: (a.timeout > 0).then(|| Duration::from_secs(a.timeout)),
        max_body_bytes: a.max_body,
        api_key: a.api_key.clone().filter(|k| !k.is_empty()),
        stall_after: Duration::from_secs(a.stall_seconds),
        max_connections: a.max_connections as usize,
        ..Limits::default()
    };
    let models = a
        .model
        .iter()
        .map(|name| load(profile, a, name))
        .collect::<Result<Vec<_>>>()?;
    let mut engine = Engine::new(models, limits);
    if let Some(dir) = &a.capture {
        let c = Capture::new(dir).with_context(|| format!("--capture {}", dir.display()))?;
        engine = engine.with_capture(c);
    }
    let engine = Arc::new(engine);
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let listener = retroformer_serve::bind(&a.listen, engine.limits.api_key.is_some()).await?;
        eprintln!(
            "[retroformer] serving {} on http://{} (OpenAI API under /v1)",
            a.model.join(", "),
            listener.local_addr()?
        );
        retroformer_serve::serve(listener, engine, retroformer_serve::shutdown_signal()).await?;
        Ok(())
    })
}

/// Loads `name` with its adapter store.
fn load(profile: &TargetProfile, a: &ServeArgs, name: &str) -> Result<ServedModel> {
    let bar = FetchBar::default();
    let fetch = (!a.no_fetch).then_some(&bar as &dyn retroformer::fetch::Progress);
    let resolved = backend::resolve(name, fetch)?;
    let model = backend::active().load(&resolved, profile, common::base_policy(false))?;
    let (store, _) = AdapterStore::for_model(&resolved)
        .with_context(|| format!("the adapter store of {name}"))?;
    let adapters = Adapters::new(Some(store), a.adapter_scale)
        .map_err(|e| anyhow::anyhow!("the adapter store of {name}: {e}"))?;
    let options = SessionOptions {
        context_size: a.ctx_size.or(Some(profile.context_size)),
        threads: a.threads,
        sequences: Some(a.parallel),
    };
    let served = ServedModel::new(name, Arc::from(model), adapters, options)
        .with_context(|| format!("opening a session of {name}"))?;
    // A named model's file was checked against its hash when it was fetched; a file given by
    // path is hashed only when something needs the hash.
    let sha = match resolved.manifest.as_ref() {
        Some(m) => Some(m.sha256.clone()),
        None if a.kv_dir.is_some() || a.capture.is_some() => Some(
            retroformer::fetch::sha256_file(&resolved.path, &bar)
                .with_context(|| format!("hashing {}", resolved.path.display()))?,
        ),
        None => None,
    };
    let served = match sha {
        Some(sha) => served.with_sha256(sha),
        None => served,
    };
    Ok(match &a.kv_dir {
        None => served,
        Some(dir) => {
            let dir = dir.join(slug(name));
            std::fs::create_dir_all(&dir).with_context(|| format!("--kv-dir {}", dir.display()))?;
            served
                .with_kv_dir(dir)
                .with_kv_budget(a.kv_dir_max_mib.saturating_mul(1 << 20))
        }
    })
}

/// A model's name as a folder name.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
