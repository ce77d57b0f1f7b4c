//! The per-model measurements of `retroformer bench`, each the median of repeated runs, next
//! to a bare llama.cpp loop through the same library with the same settings measured in the
//! same run (interleaved), so that the runtime's overhead is a ratio and not a guess.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{AdapterSwitch, BenchError, DecodePoint, Figure, ModelReport, PrefillPoint, ReactStep};
use retroformer::backend::{BasePolicy, Resolved};
use retroformer_gguf::GgufWriter;
use retroformer_llama::{BareLoop, LlamaModel};
use retroformer_llm::target::TargetProfile;
use retroformer_llm::{prose, GenerateRequest, LanguageModel, SessionOptions};

/// What to measure and how often.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// The hardware profile (backend, GPU layers, batch sizes).
    pub profile: TargetProfile,
    /// Threads for prompt and generation.
    pub threads: u32,
    /// Repetitions of each measurement.
    pub reps: usize,
    /// Prompt lengths for prefill.
    pub prompt_lengths: Vec<u32>,
    /// Context depths for decode.
    pub depths: Vec<u32>,
    /// Tokens generated per decode measurement.
    pub decode_tokens: u32,
    /// ReAct steps per repetition (the first, which fills the cache, is not timed; at least 2).
    pub react_steps: u32,
    /// Tokens the model writes per ReAct step.
    pub react_tokens: u32,
    /// Measure the bare llama.cpp reference (CPU only: it offloads nothing).
    pub reference: bool,
}

impl SuiteOptions {
    /// The full suite, or (`quick`) a short one that still measures every figure.
    pub fn new(profile: TargetProfile, threads: u32, quick: bool) -> Self {
        // The reference can only match CPU profiles whose flash attention is llama.cpp's
        // default (the safe API has no setter for it).
        // Nor can it set the KV cache type: only f16 (llama.cpp's default) is like for like.
        let reference = profile.gpu_layers == 0
            && profile.flash_attention == retroformer_llm::target::FlashAttention::Auto
            && profile.kv_type == retroformer_llm::target::KvType::F16;
        if quick {
            Self {
                profile,
                threads,
                reps: 3,
                prompt_lengths: vec![32, 128],
                depths: vec![0, 128],
                decode_tokens: 16,
                react_steps: 3,
                react_tokens: 8,
                reference,
            }
        } else {
            Self {
                profile,
                threads,
                reps: 5,
                prompt_lengths: vec![64, 256, 1024],
                depths: vec![0, 256, 1024],
                decode_tokens: 64,
                react_steps: 4,
                react_tokens: 24,
                reference,
            }
        }
    }

    fn context_size(&self) -> u32 {
        let longest = self
            .prompt_lengths
            .iter()
            .chain(self.depths.iter())
            .copied()
            .max()
            .unwrap_or(0);
        (longest + self.decode_tokens + 64).max(2048)
    }

    fn session_options(&self, n_ctx: u32) -> SessionOptions {
        SessionOptions {
            context_size: Some(n_ctx),
            threads: Some(self.threads),
            ..Default::default()
        }
    }
}

fn fig(xs: &[f64], what: &str) -> Result<Figure, BenchError> {
    Figure::of(xs).ok_or_else(|| BenchError::Config(format!("{what}: no finite measurement")))
}

fn ratio(a: &Figure, b: &Option<Figure>) -> Option<f64> {
    b.as_ref()
        .filter(|b| b.median > 0.0)
        .map(|b| a.median / b.median)
}

fn request(prompt: String, n: u32) -> GenerateRequest {
    let mut req = GenerateRequest::new(prompt, n);
    req.parse_special = false;
    req.ignore_eos = true;
    req
}

/// A random LoRA adapter for `model` (rank 8 on the attention and MLP projections), or `None`
/// when the model has no such tensors.
pub fn random_adapter(
    model: &LlamaModel,
    dir: &Path,
    seed: u64,
) -> Result<Option<PathBuf>, BenchError> {
    let arch = model.header().architecture().unwrap_or("llama").to_string();
    let mut w = GgufWriter::lora_adapter(&arch, 8.0);
    // Recorded as the adapter's base, as the trainer does; hashing it here also keeps the
    // base's hash out of a timed adapter load.
    w.kv(
        retroformer_core::records::keys::BASE_SHA256,
        model.sha256()?,
    );
    let mut rng = retroformer_core::rng::SplitMix64::new(seed);
    let rank = 8u64;
    let targets = [
        "attn_q.weight",
        "attn_k.weight",
        "attn_v.weight",
        "attn_output.weight",
        "ffn_gate.weight",
        "ffn_up.weight",
        "ffn_down.weight",
    ];
    let mut any = false;
    for t in model
        .header()
        .tensors
        .iter()
        .filter(|t| targets.iter().any(|s| t.name.ends_with(s)) && t.dims.len() == 2)
    {
        let mut rnd = |n: u64| -> Vec<f32> {
            (0..n)
                .map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.02)
                .collect()
        };
        let (a, b) = (rnd(t.dims[0] * rank), rnd(rank * t.dims[1]));
        w.tensor_f32(&format!("{}.lora_a", t.name), &[t.dims[0], rank], &a)
            .tensor_f32(&format!("{}.lora_b", t.name), &[rank, t.dims[1]], &b);
        any = true;
    }
    if !any {
        return Ok(None);
    }
    let p = dir.join(format!("bench-adapter-{seed}.gguf"));
    w.write(&p).map_err(|source| BenchError::Io {
        path: p.clone(),
        source,
    })?;
    Ok(Some(p))
}

/// A fixed ReAct scratchpad step (HotPotQA's first example question), so that every model and
/// machine grows the same prompt.
fn react_step_text(k: u32) -> String {
    format!(
        "\nAction {k}: Search[Arthur's Magazine]\nObservation {k}: Arthur's Magazine (1844-1846) was an American literary periodical published in Philadelphia in the 19th century. Edited by Timothy Shay Arthur, it featured work by Edgar A. Poe, J.H. Ingraham, Sarah Josepha Hale, Thomas G. Spear, and others.\nThought {}:",
        k + 1
    )
}

/// Measures one model (resolved by `retroformer::backend::resolve`; loaded with the
/// suite's profile). `progress` hears what is being measured.
// long: one model's measurements in the order they run, each next to its reference in the same loop, so that a reader sees what is interleaved with what.
pub fn run_model(
    model: &Resolved,
    name: &str,
    o: &SuiteOptions,
    progress: &dyn Fn(&str),
) -> Result<ModelReport, BenchError> {
    let path = model.path.as_path();
    let sha256 = model.manifest.as_ref().map(|m| m.sha256.clone());
    let resolved = model;
    let isolated = retroformer_core::rss::reset_peak_rss();
    let file_bytes = std::fs::metadata(path)
        .map_err(|source| BenchError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    progress("load");
    let mut load_ms = Vec::new();
    let mut model = None;
    for _ in 0..o.reps {
        drop(model.take()); // one model resident at a time
        let t = Instant::now();
        let m = retroformer::backend::llama::load(resolved, &o.profile, BasePolicy::Recorded)?;
        load_ms.push(t.elapsed().as_secs_f64() * 1e3);
        model = Some(m);
    }
    let model = model.ok_or_else(|| BenchError::Config("reps must be at least 1".into()))?;
    let n_ctx = o.context_size().min(model.n_ctx_train().max(512));
    let bare = if o.reference {
        Some(BareLoop::load(path)?)
    } else {
        None
    };
    // The runtime's own batch sizes and thread cap (see `LlamaModel::session`).
    let n_batch = o.profile.batch_size.min(n_ctx);
    let n_ubatch = o.profile.ubatch_size.min(n_batch);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let threads = o.threads.min(cores.max(1));
    let sess = o.session_options(n_ctx);

    // Prefill at each length, runtime and reference interleaved.
    let mut prefill = Vec::new();
    for &len in &o.prompt_lengths {
        progress(&format!("prefill {len}"));
        let text = prose(&model, len)?;
        let (mut ours, mut theirs, mut tokens) = (Vec::new(), Vec::new(), 0);
        // One untimed warm-up of each.
        model
            .session(&sess)?
            .generate(&request(text.clone(), 1), &mut |_| true)?;
        if let Some(b) = &bare {
            b.run(&text, 1, threads, n_ctx, n_batch, n_ubatch)?;
        }
        for _ in 0..o.reps {
            let g = model
                .session(&sess)?
                .generate(&request(text.clone(), 1), &mut |_| true)?;
            tokens = g.stats.prompt_tokens;
            ours.push(f64::from(g.stats.evaluated_tokens) * 1e3 / g.stats.prefill_ms);
            if let Some(b) = &bare {
                let (ms, _, n) = b.run(&text, 1, threads, n_ctx, n_batch, n_ubatch)?;
                theirs.push(n as f64 * 1e3 / ms);
            }
        }
        let runtime_tps = fig(&ours, "prefill")?;
        let reference_tps = Figure::of(&theirs);
        prefill.push(PrefillPoint {
            prompt_tokens: tokens,
            ratio: ratio(&runtime_tps, &reference_tps),
            runtime_tps,
            reference_tps,
        });
    }

    // Decode after each depth.
    let mut decode = Vec::new();
    for &depth in &o.depths {
        progress(&format!("decode @{depth}"));
        let text = if depth == 0 {
            "Once upon a time".to_string()
        } else {
            prose(&model, depth)?
        };
        let (mut ours, mut theirs, mut depth_tokens) = (Vec::new(), Vec::new(), 0);
        for _ in 0..o.reps {
            let g = model
                .session(&sess)?
                .generate(&request(text.clone(), o.decode_tokens), &mut |_| true)?;
            depth_tokens = g.stats.prompt_tokens;
            ours.push(g.stats.decode_tps());
            if let Some(b) = &bare {
                let (_, ms, _) =
                    b.run(&text, o.decode_tokens, threads, n_ctx, n_batch, n_ubatch)?;
                theirs.push(f64::from(o.decode_tokens) * 1e3 / ms);
            }
        }
        let runtime_tps = fig(&ours, "decode")?;
        let reference_tps = Figure::of(&theirs);
        decode.push(DecodePoint {
            depth: if depth == 0 { 0 } else { depth_tokens },
            tokens: o.decode_tokens,
            ratio: ratio(&runtime_tps, &reference_tps),
            runtime_tps,
            reference_tps,
        });
    }

    // From here on only the runtime's model is resident: peak RSS is measured over time to
    // first token and the ReAct steps (a model with its sessions, as an agent holds it).
    drop(bare);
    let isolated = isolated && retroformer_core::rss::reset_peak_rss();
    // Time to first token from a fresh session (context creation not included).
    progress("time to first token");
    let ttft_len = o
        .prompt_lengths
        .iter()
        .copied()
        .max()
        .unwrap_or(64)
        .min(256);
    let text = prose(&model, ttft_len)?;
    let (mut ttft, mut ttft_tokens) = (Vec::new(), 0);
    for _ in 0..o.reps {
        let mut s = model.session(&sess)?;
        let start = Instant::now();
        let mut first: Option<f64> = None;
        let mut req = request(text.clone(), 4);
        req.ignore_eos = false;
        let g = s.generate(&req, &mut |_| {
            first.get_or_insert_with(|| start.elapsed().as_secs_f64() * 1e3);
            true
        })?;
        ttft_tokens = g.stats.prompt_tokens;
        // A model that stops at once streams nothing: its first token is the whole call.
        ttft.push(first.unwrap_or_else(|| start.elapsed().as_secs_f64() * 1e3));
    }
    let ttft_ms = fig(&ttft, "time to first token")?;

    // A ReAct step with and without KV reuse, on the same prompts.
    progress("ReAct steps");
    let mut prompts = Vec::new();
    let mut with = Vec::new();
    let mut react_tokens = 0;
    for rep in 0..o.reps {
        let mut s = model.session(&sess)?;
        let mut text = retroformer_envs::hotpotqa::react::prompt(
            "",
            "Which magazine was started first, Arthur's Magazine or First for Women?",
            "\nThought 1:",
        );
        for k in 1..=o.react_steps {
            let t = Instant::now();
            let g = s.generate(&request(text.clone(), o.react_tokens), &mut |_| true)?;
            // The first step fills the cache with the instruction and examples; the steps
            // after it are what reuse is about.
            if k > 1 {
                with.push(t.elapsed().as_secs_f64() * 1e3);
                if rep == 0 {
                    prompts.push(text.clone());
                }
            }
            react_tokens = g.stats.prompt_tokens;
            text.push_str(&g.text);
            text.push_str(&react_step_text(k));
        }
    }
    let mut without = Vec::new();
    {
        let mut s = model.session(&sess)?;
        for _ in 0..o.reps {
            for p in &prompts {
                s.clear()?;
                let t = Instant::now();
                s.generate(&request(p.clone(), o.react_tokens), &mut |_| true)?;
                without.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let with_reuse_ms = fig(&with, "ReAct step")?;
    let without_reuse_ms = fig(&without, "ReAct step")?;
    let react_step = ReactStep {
        prompt_tokens: react_tokens,
        generated_tokens: o.react_tokens,
        ratio: with_reuse_ms.median / without_reuse_ms.median,
        with_reuse_ms,
        without_reuse_ms,
    };

    let peak_rss_bytes = retroformer_core::rss::peak_rss_bytes();

    // Adapter switch in a live session against a model reload.
    progress("adapter switch");
    let dir = tempfile::tempdir().map_err(|source| BenchError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let adapter_switch = match (
        random_adapter(&model, dir.path(), 1)?,
        random_adapter(&model, dir.path(), 2)?,
    ) {
        (Some(pa), Some(pb)) => {
            let (a, b) = (model.load_adapter(&pa)?, model.load_adapter(&pb)?);
            let mut s = model.session(&sess)?;
            let (mut switch, mut reload) = (Vec::new(), Vec::new());
            for i in 0..o.reps.max(2) {
                let t = Instant::now();
                s.set_adapter(Some((if i % 2 == 0 { a.clone() } else { b.clone() }, 1.0)))?;
                s.generate(&request("Hi".into(), 1), &mut |_| true)?;
                switch.push(t.elapsed().as_secs_f64() * 1e3);
                let t = Instant::now();
                let m2 =
                    retroformer::backend::llama::load(resolved, &o.profile, BasePolicy::Recorded)?;
                m2.session(&sess)?
                    .generate(&request("Hi".into(), 1), &mut |_| true)?;
                reload.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let switch_ms = fig(&switch, "adapter switch")?;
            let reload_ms = fig(&reload, "model reload")?;
            Some(AdapterSwitch {
                ratio: switch_ms.median / reload_ms.median,
                switch_ms,
                reload_ms,
            })
        }
        _ => None,
    };

    Ok(ModelReport {
        name: name.to_string(),
        file_bytes,
        sha256,
        threads: o.threads,
        load_ms: fig(&load_ms, "load")?,
        prefill,
        decode,
        ttft_ms,
        ttft_prompt_tokens: ttft_tokens,
        react_step,
        adapter_switch,
        peak_rss_bytes,
        peak_rss_isolated: isolated,
    })
}

/// The GPUs llama.cpp sees and its build summary, into `fp`.
pub fn complete_fingerprint(fp: &mut super::Fingerprint) -> Result<(), BenchError> {
    let (devices, info) = retroformer_llama::devices()?;
    fp.gpus = devices
        .iter()
        .filter(|d| d.backend != "CPU")
        .map(|d| {
            format!(
                "{} {} ({}, {} MB)",
                d.backend,
                d.name,
                d.description,
                d.memory_total >> 20
            )
        })
        .collect();
    fp.llama_cpp_system_info = info;
    Ok(())
}
