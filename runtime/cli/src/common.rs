//! What the commands share: model and sampling flags, loading a model, sessions, progress.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result};
use clap::Args;
use retroformer::backend;
use retroformer_llm::target::TargetProfile;
use retroformer_llm::{
    GenerateRequest, Grammar, LanguageModel, LlmError, SamplingParams, Session, SessionOptions,
};
use retroformer_report::progress::{self, LineProgress};

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Model: manifest name or alias, or a path to a GGUF file.
    #[arg(long, short, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// Context size in tokens (default: the target profile's).
    #[arg(long)]
    pub ctx_size: Option<u32>,
    /// Threads (default: the target profile's).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Do not fetch a missing model; fail instead.
    #[arg(long)]
    pub no_fetch: bool,
    /// LoRA adapter (GGUF) to apply.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Scale of the adapter.
    #[arg(long, default_value_t = 1.0, requires = "adapter")]
    pub adapter_scale: f32,
    /// Also take an --adapter that records no base model (made by another tool; its shapes
    /// are still checked), as `adapters install --any-base` does.
    #[arg(long = "any-base", requires = "adapter")]
    pub any_base: bool,
}

#[derive(Args, Clone)]
pub struct SamplingArgs {
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    /// Temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: i32,
    /// Top-p (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Min-p (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Repetition penalty (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Stop before this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// GBNF grammar file constraining the output.
    #[arg(long)]
    pub grammar: Option<PathBuf>,
    /// Apply the grammar to every token before sampling (llama.cpp's grammar_first): slower;
    /// top-k, top-p and min-p then truncate over the allowed tokens. Greedy output is the same.
    #[arg(long, requires = "grammar")]
    pub grammar_first: bool,
}

/// Loads `args.model` with `profile` (fetching it unless `--no-fetch`) and says which backend
/// and devices it runs on.
pub fn load(profile: &TargetProfile, args: &ModelArgs) -> Result<Box<dyn LanguageModel>> {
    let bar = FetchBar::default();
    let fetch = (!args.no_fetch).then_some(&bar as &dyn retroformer::fetch::Progress);
    let resolved = backend::resolve(&args.model, fetch)?;
    let policy = base_policy(args.any_base);
    let t = std::time::Instant::now();
    let model = backend::active().load(&resolved, profile, policy)?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    report_backend(profile, model.as_ref(), load_ms)?;
    Ok(model)
}

/// Prints the target, backend and devices actually in use (stderr).
pub fn report_backend(
    profile: &TargetProfile,
    model: &dyn LanguageModel,
    load_ms: f64,
) -> Result<()> {
    let (devices, _) = backend::active().devices()?;
    let gpus: Vec<_> = devices.iter().filter(|d| d.backend != "CPU").collect();
    let used = if profile.gpu_layers > 0 && !gpus.is_empty() {
        gpus.iter()
            .map(|d| format!("{} {} ({})", d.backend, d.name, d.description))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        let cpu = devices
            .iter()
            .find(|d| d.backend == "CPU")
            .map(|d| d.description.clone())
            .unwrap_or_default();
        format!("CPU ({cpu})")
    };
    eprintln!(
        "[retroformer] model {} | target {} | backend {} | device {} | loaded in {:.0} ms",
        show(model.name()),
        show(&profile.name),
        profile.backend.name(),
        used,
        load_ms
    );
    if profile.gpu_layers > 0 && gpus.is_empty() {
        eprintln!(
            "[retroformer] warning: target {} asks for GPU offload but this build sees no GPU device; running on the CPU",
            profile.name
        );
    }
    Ok(())
}

pub fn open_session(
    model: &dyn LanguageModel,
    profile: &TargetProfile,
    args: &ModelArgs,
) -> Result<Box<dyn Session>> {
    open_batch_session(model, profile, args, 1, 0)
}

/// A session that decodes up to `sequences` requests together, each with `ctx` tokens of
/// context of its own (0: the model arguments' context).
pub fn open_batch_session(
    model: &dyn LanguageModel,
    profile: &TargetProfile,
    args: &ModelArgs,
    sequences: u32,
    ctx: u32,
) -> Result<Box<dyn Session>> {
    // With several sequences the context is per sequence (each has a KV stream of its own).
    let context_size = if sequences > 1 && ctx > 0 {
        Some(ctx)
    } else {
        args.ctx_size
    };
    let mut s = model
        .session(&SessionOptions {
            context_size,
            threads: args.threads,
            sequences: Some(sequences),
        })
        .map_err(|e| match e {
            // Name the flag the value came from.
            LlmError::InvalidParam { field, message } => {
                let flag = match field {
                    "context_size" if context_size == args.ctx_size => "--ctx-size",
                    "context_size" => "the context each sequence needs",
                    "threads" => "--threads",
                    other => other,
                };
                anyhow::anyhow!("{flag}: {message}")
            }
            e => e.into(),
        })?;
    if let Some(a) = &args.adapter {
        let h = model.load_adapter(a)?;
        s.set_adapter(Some((h, args.adapter_scale)))?;
    }
    // What the session really uses (threads are clamped to the cores, the context rounded up).
    let info = s.info()?;
    eprintln!(
        "[retroformer] session: {} threads, context {} tokens, KV cache {}",
        info.threads, info.context_size, profile.kv_type
    );
    Ok(s)
}

/// Text from a file or a program, with its control characters escaped (one line).
pub fn show(s: &str) -> std::borrow::Cow<'_, str> {
    retroformer_core::text::printable(s, false)
}

/// The text of the regular file `path` (at most `max` bytes, UTF-8).
pub fn read_text(path: &std::path::Path, max: u64) -> Result<String> {
    let bytes = retroformer_core::fsutil::read_regular(path, max)?;
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("not UTF-8 text"))
}

/// The longest line [`read_line`] takes from stdin.
pub const MAX_STDIN_LINE: u64 = 1 << 20;

/// One line of stdin (`None` at its end); a line past [`MAX_STDIN_LINE`] bytes is an error
/// rather than a buffer that grows until memory runs out.
pub fn read_line() -> Result<Option<String>> {
    use std::io::{BufRead, Read};
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .take(MAX_STDIN_LINE + 1)
        .read_line(&mut line)
        .context("reading stdin")?;
    if n as u64 > MAX_STDIN_LINE {
        anyhow::bail!("a line of stdin passes {MAX_STDIN_LINE} bytes");
    }
    Ok((n > 0).then_some(line))
}

pub fn request(prompt: String, s: &SamplingArgs) -> Result<GenerateRequest> {
    let grammar = match &s.grammar {
        Some(p) => Some(Grammar {
            text: read_text(p, 1 << 20).with_context(|| format!("--grammar {}", p.display()))?,
            root: "root".into(),
            origin: p.display().to_string(),
        }),
        None => None,
    };
    let sampling = SamplingParams {
        temperature: s.temperature,
        top_k: s.top_k,
        top_p: s.top_p,
        min_p: s.min_p,
        repeat_penalty: s.repeat_penalty,
        repeat_last_n: 64,
        seed: s.seed,
        grammar_first: s.grammar_first,
    };
    sampling.validate().map_err(|e| {
        anyhow::anyhow!(
            "--{}",
            e.to_string()
                .trim_start_matches("invalid ")
                .replace('_', "-")
        )
    })?;
    Ok(GenerateRequest {
        prompt,
        max_tokens: s.max_tokens,
        stop: s.stop.clone(),
        sampling,
        grammar,
        add_bos: true,
        parse_special: true,
        ignore_eos: false,
        cancel: None,
        deadline: None,
        on_text: None,
        kv_file: None,
        logprobs: None,
    })
}

/// A progress bar over `n` tasks with elapsed time and an estimate of the rest.
pub fn task_bar(n: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(n as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}, eta {eta}] {msg}",
        )
        .expect("valid template"),
    );
    bar
}

/// Print a line above a progress bar, or to stderr when the bar is hidden (not a terminal).
pub fn say(bar: &indicatif::ProgressBar, line: &str) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// A progress bar for downloads and hashes; when stderr is not a terminal (the bar hidden), a
/// line when each starts and ends, so that a log does not show a silent pause.
#[derive(Default)]
pub struct FetchBar {
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl retroformer::fetch::Progress for FetchBar {
    fn start(&self, label: &str, total: u64) {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b.set_message(label.to_string());
        say(
            &b,
            &format!("[retroformer] {label}: {:.1} MB", total as f64 / 1e6),
        );
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(b);
    }

    fn at(&self, done: u64) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            b.set_position(done);
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            b.finish_and_clear();
            if b.is_hidden() {
                eprintln!("[retroformer] {}: done", b.message());
            }
        }
    }
}

/// An evaluation's progress: a bar over its tasks, notes and a live view on stderr; without a
/// terminal (a run in the background), a progress line a minute instead of the bar.
pub struct TaskProgress {
    bar: indicatif::ProgressBar,
    lines: Option<LineProgress>,
    live: bool,
}

impl TaskProgress {
    /// A bar (its length set by the evaluation); `live` shows each step as it happens.
    pub fn new(live: bool) -> Self {
        let bar = task_bar(0);
        let lines = bar
            .is_hidden()
            .then(|| LineProgress::new(progress::EVERY, std::time::Instant::now()));
        Self { bar, lines, live }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl retroformer_envs::Progress for TaskProgress {
    fn total(&mut self, n: u64) {
        // A new phase (one command runs several): its count and clock start again.
        self.bar.reset();
        self.bar.set_length(n);
        if let Some(l) = self.lines.as_mut() {
            *l = LineProgress::new(progress::EVERY, std::time::Instant::now());
        }
    }

    fn done(&mut self, message: &str) {
        self.bar.inc(1);
        self.bar.set_message(message.to_string());
        tracing::info!("{message}");
        let (pos, len) = (self.bar.position(), self.bar.length().unwrap_or(0));
        if let Some(line) = self
            .lines
            .as_mut()
            .and_then(|l| l.update(pos, len, std::time::Instant::now(), message))
        {
            eprintln!("[retroformer] {line}");
        }
    }

    fn note(&mut self, message: &str) {
        say(&self.bar, &format!("[retroformer] {message}"));
    }

    fn wants_details(&self) -> bool {
        self.live
    }

    fn detail(&mut self, line: &str) {
        say(&self.bar, line);
    }
}

/// The adapters a base takes: those that record it, and with `--any-base` also those that
/// record no base.
pub fn base_policy(any_base: bool) -> retroformer_gguf::BasePolicy {
    if any_base {
        retroformer_gguf::BasePolicy::AllowUnrecorded
    } else {
        retroformer_gguf::BasePolicy::Recorded
    }
}
