//! Output parity across builds: greedy text from a session (the device's own decode path, with
//! the profile's flash attention and KV type) and, for each token of that text re-tokenised,
//! llama.cpp's teacher-forced top logits (`LlamaModel::logits`: an F32 KV cache without flash
//! attention, so the logits compare the weights' kernels, the text the whole path), as JSON. Two reports of the
//! same model, prompt and tokens, from two builds (x86-64 and aarch64 under qemu, CPU and
//! Vulkan), are compared with `--compare A B`: the logits both list must agree within the
//! tolerance up to the first token the two disagree on, and that split must be a near-tie (a
//! top-2 margin within the tolerance on either side, where other kernels may flip the choice).
//! The default tolerance, 1 logit, is for quantized weights: Q4 matrix products through other
//! SIMD kernels (x86 AVX-512 against ARM dot products) moved SmolLM2's logits (20 to 39) by up
//! to 0.68; F32 weights agree to 1e-4.
//!
//! ```sh
//! cargo run --release -p retroformer --no-default-features --features llama --example parity -- \
//!     [--model NAME|PATH|tiny] [--target NAME] [--tokens N] [--out FILE]
//! cargo run ... --example parity -- --compare A.json B.json [--tolerance 1.0]
//! ```
//!
//! `tiny` is a random two-layer llama written on the fly (F32 weights, no chat template); a
//! named model must be installed already (this build cannot download models).

use std::path::{Path, PathBuf};

use retroformer::backend;
use retroformer::llm::target::TargetProfile;
use retroformer::llm::{ChatMessage, GenerateRequest, LanguageModel, SessionOptions};
use serde::{Deserialize, Serialize};

const KIND: &str = "retroformer-parity";
const FORMAT_VERSION: u32 = 1;
const QUESTION: &str = "Name three primes and say why each is prime.";

/// One generated position: llama.cpp's five largest logits there, best first.
#[derive(Debug, Serialize, Deserialize)]
struct Step {
    token: i32,
    margin: f32,
    top: Vec<(i32, f32)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Report {
    kind: String,
    format_version: u32,
    arch: String,
    target: String,
    devices: Vec<String>,
    model: String,
    prompt: String,
    text: String,
    /// Speeds of the session's call (lavapipe and qemu are slow: these are for the record).
    prefill_tps: f64,
    decode_tps: f64,
    steps: Vec<Step>,
}

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    if std::env::var_os("RUST_LOG").is_some() {
        // llama.cpp's log (devices, offloaded layers) through tracing, on stderr.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--compare") {
        return compare(&args[1..]);
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| {
                args.get(i + 1)
                    .cloned()
                    .ok_or(format!("{name} needs a value"))
            })
            .transpose()
    };
    let name = flag("--model")?.unwrap_or_else(|| "smollm2-135m-instruct".into());
    let target = flag("--target")?.unwrap_or_else(|| "cpu".into());
    let tokens: u32 = flag("--tokens")?.map_or(Ok(16), |t| t.parse())?;
    let out = flag("--out")?.map(PathBuf::from);
    let report = run(&name, &target, tokens)?;
    let text = serde_json::to_string_pretty(&report)?;
    match out {
        Some(p) => retroformer::core::fsutil::write_atomic(&p, text.as_bytes())?,
        None => println!("{text}"),
    }
    Ok(())
}

fn run(name: &str, target: &str, tokens: u32) -> Result<Report, Error> {
    let profile = TargetProfile::load(target)?;
    let dir = tempfile::tempdir()?;
    // llama.cpp's own model type: parity compares that backend's logits across devices.
    let load = |name: &str| {
        let resolved = backend::resolve(name, None)?;
        backend::llama::load(&resolved, &profile, backend::BasePolicy::Recorded)
    };
    let (model, chat) = if name == "tiny" {
        let path = dir.path().join("tiny.gguf");
        retroformer_gguf::TinyModel::llama().writer().write(&path)?;
        (load(path.to_str().ok_or("temp path")?)?, false)
    } else {
        (load(name)?, true)
    };
    let prompt = if chat {
        model.chat_prompt(&[ChatMessage::new("user", QUESTION)], true)?
    } else {
        "a b c d e f g".to_string()
    };
    let mut session = model.session(&SessionOptions {
        context_size: Some(512),
        threads: None,
        sequences: None,
    })?;
    let mut req = GenerateRequest::new(prompt.clone(), tokens);
    req.ignore_eos = true;
    let g = session.generate(&req, &mut |_| true)?;
    let prompt_ids = model.tokenize(&prompt, true, true)?;
    let gen_ids = model.tokenize(&g.text, false, false)?;
    let all: Vec<i32> = prompt_ids.iter().chain(&gen_ids).copied().collect();
    let threads = profile.resolve_threads();
    let logits = model.logits(&all, None, threads)?;
    let vocab = model.n_vocab() as usize;
    // Row i holds the logits after token i: the row before each generated token predicts it.
    let steps = (0..gen_ids.len())
        .map(|j| {
            let row = &logits[(prompt_ids.len() + j - 1) * vocab..][..vocab];
            let mut order: Vec<usize> = (0..vocab).collect();
            order.select_nth_unstable_by(4, |&a, &b| row[b].total_cmp(&row[a]));
            order.truncate(5);
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            Step {
                token: gen_ids[j],
                margin: row[order[0]] - row[order[1]],
                top: order.iter().map(|&t| (t as i32, row[t])).collect(),
            }
        })
        .collect();
    let (devices, _) = backend::active().devices()?;
    Ok(Report {
        kind: KIND.into(),
        format_version: FORMAT_VERSION,
        arch: std::env::consts::ARCH.into(),
        target: profile.name.clone(),
        // The device the profile runs on first: a GPU when it offloads layers, else the CPU.
        devices: {
            let gpu = profile.gpu_layers > 0;
            let mut v: Vec<_> = devices.iter().collect();
            v.sort_by_key(|d| (d.backend == "CPU") == gpu);
            v.iter()
                .map(|d| format!("{} {} ({})", d.backend, d.name, d.description))
                .collect()
        },
        model: name.into(),
        prompt,
        prefill_tps: g.stats.prefill_tps(),
        decode_tps: g.stats.decode_tps(),
        text: g.text,
        steps,
    })
}

fn read(path: &Path) -> Result<Report, Error> {
    let bytes = retroformer::core::fsutil::read_regular(path, 16 << 20)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let r: Report =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if r.kind != KIND || r.format_version != FORMAT_VERSION {
        return Err(format!(
            "{}: not a parity report of version {FORMAT_VERSION}",
            path.display()
        )
        .into());
    }
    Ok(r)
}

/// Compares two reports; an error (non-zero exit) when they disagree beyond the tolerance, when
/// either has no tokens or a logit that is not finite.
fn compare(args: &[String]) -> Result<(), Error> {
    let [a, b, rest @ ..] = args else {
        return Err("--compare A.json B.json [--tolerance T]".into());
    };
    let tol: f32 = match rest {
        [] => 1.0,
        [f, t] if f == "--tolerance" => t.parse()?,
        _ => return Err("--compare A.json B.json [--tolerance T]".into()),
    };
    let (a, b) = (read(Path::new(a))?, read(Path::new(b))?);
    if a.model != b.model || a.prompt != b.prompt {
        return Err("the reports are of different models or prompts".into());
    }
    if a.steps.is_empty() || b.steps.is_empty() {
        return Err("a report has no generated tokens: nothing to compare".into());
    }
    if let Some(bad) = [&a, &b].iter().find(|r| {
        r.steps
            .iter()
            .any(|s| !s.margin.is_finite() || s.top.iter().any(|(_, l)| !l.is_finite()))
    }) {
        return Err(format!("{} ({}): a logit is not finite", bad.arch, bad.target).into());
    }
    // Walk to the first token the two disagree on, that one included: every logit both list
    // counts, and each side's best token must be among the other's five.
    let mut worst = 0f32;
    let mut split = None;
    for (i, (x, y)) in a.steps.iter().zip(&b.steps).enumerate() {
        let logit = |s: &Step, t: i32| s.top.iter().find(|(u, _)| *u == t).map(|(_, l)| *l);
        for (t, lx) in &x.top {
            if let Some(ly) = logit(y, *t) {
                worst = worst.max((lx - ly).abs());
            }
        }
        if logit(y, x.top[0].0).is_none() || logit(x, y.top[0].0).is_none() {
            return Err(format!("token {i}: the best tokens differ beyond the top five").into());
        }
        if x.token != y.token {
            // A near-tie on both sides: each side's logit for the other's token is within the
            // tolerance of its best.
            let near = |s: &Step, t: i32| logit(s, t).is_some_and(|l| s.top[0].1 - l <= tol);
            split = Some((i, near(x, y.token) && near(y, x.token)));
            break;
        }
    }
    let n = a.steps.len().min(b.steps.len());
    println!(
        "{} ({}) vs {} ({}): {} of {n} generated tokens agree{}; largest logit difference {worst:.4} (tolerance {tol})",
        a.arch,
        a.devices.first().map_or("", String::as_str),
        b.arch,
        b.devices.first().map_or("", String::as_str),
        split.map_or(n, |(i, _)| i),
        match split {
            Some((i, _)) => format!(
                ", then they split at token {i} (top-2 margins {:.3} and {:.3})",
                a.steps[i].margin, b.steps[i].margin
            ),
            None => String::new(),
        }
    );
    println!("  {:?}\n  {:?}", a.text, b.text);
    println!(
        "  tokens/s: prefill {:.1} vs {:.1}, decode {:.1} vs {:.1}",
        a.prefill_tps, b.prefill_tps, a.decode_tps, b.decode_tps
    );
    let explained = match split {
        None => a.steps.len() == b.steps.len(),
        Some((_, near)) => near,
    };
    if worst > tol || !explained {
        return Err(format!(
            "outputs differ beyond the tolerance {tol} (largest logit difference {worst:.4}{})",
            if explained {
                ""
            } else {
                ", a split that is no near-tie"
            }
        )
        .into());
    }
    println!("parity: ok");
    Ok(())
}
