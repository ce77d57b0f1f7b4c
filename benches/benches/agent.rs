//! Agent-level benchmark: ReAct episodes on HotPotQA with the session's KV reuse, against the
//! same episodes re-evaluating the whole prompt at every call (the API-style loop of the
//! published code). Greedy decoding, so both produce the same trajectories (checked).
//!
//! cargo bench -p retroformer-benches --bench agent -- [--model NAME|PATH] [--questions N]
//!     [--threads N] [--data FILE] [--out FILE]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use retroformer_envs::hotpotqa::react::{run_episode, ReactConfig};
use retroformer_envs::hotpotqa::{self, Docstore, Episode};
use retroformer_llama::{LlamaModel, LoadOptions};
use retroformer_llm::target::TargetProfile;
use retroformer_llm::{
    AdapterHandle, GenerateRequest, Generation, LanguageModel, LlmError, Session, SessionInfo,
    SessionOptions,
};
use serde_json::json;

/// A session that forgets its KV cache before every call.
struct NoReuse(Box<dyn Session>);

impl Session for NoReuse {
    fn generate(
        &mut self,
        req: &GenerateRequest,
        on_token: &mut (dyn FnMut(&str) -> bool + Send),
    ) -> Result<Generation, LlmError> {
        self.0.clear()?;
        self.0.generate(req, on_token)
    }
    fn set_adapter(&mut self, adapter: Option<(AdapterHandle, f32)>) -> Result<(), LlmError> {
        self.0.set_adapter(adapter)
    }
    fn clear(&mut self) -> Result<(), LlmError> {
        self.0.clear()
    }
    fn info(&self) -> Result<SessionInfo, LlmError> {
        self.0.info()
    }
}

/// ReAct episodes on HotPotQA with the session's KV reuse against re-evaluating the prompt.
#[derive(clap::Parser)]
struct Args {
    /// Model name or GGUF path.
    #[arg(long = "model", default_value = "smollm2-135m-instruct")]
    model_name: String,
    /// Questions (the first N).
    #[arg(long = "questions", default_value_t = 3)]
    n_questions: usize,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// HotPotQA file (default: the bundled questions).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The result file.
    #[arg(long, default_value = "target/bench/agent.json")]
    out: PathBuf,
    /// Passed by `cargo bench`.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

fn main() -> Result<()> {
    let Args {
        model_name,
        n_questions,
        threads,
        data,
        out,
        ..
    } = clap::Parser::parse();
    let (path, _) = retroformer_benches::resolve_model(&model_name)?;
    let model = LlamaModel::load(&path, LoadOptions::new(TargetProfile::load("cpu")?))?;
    let questions = hotpotqa::load(hotpotqa::source(data.as_deref()))?;
    let questions = &questions[..n_questions.min(questions.len())];
    let so = SessionOptions {
        context_size: Some(4096),
        threads: Some(threads),
        ..Default::default()
    };
    let cfg = ReactConfig::default();
    let mut rows = Vec::new();
    let (mut tot_reuse, mut tot_full) = ((0u64, 0f64), (0u64, 0f64));
    // One persistent session for all questions (the shared prefix stays cached across tasks);
    // the baseline clears before every call.
    let mut reuse = model.session(&so)?;
    let mut full = NoReuse(model.session(&so)?);
    for q in questions {
        let store = Docstore::for_question(q);
        let measure = |s: &mut dyn Session| -> Result<(u64, f64, String, usize)> {
            let mut ep = Episode::new(q, &store);
            let t = Instant::now();
            let o = run_episode(
                &model,
                s,
                &mut ep,
                "",
                0,
                &cfg,
                &retroformer_llm::SamplingParams::greedy(),
            )?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            Ok((
                o.trajectory.evaluated_tokens(),
                ms,
                o.scratchpad,
                o.trajectory.steps.len(),
            ))
        };
        let (ev_r, ms_r, pad_r, steps) = measure(reuse.as_mut())?;
        let (ev_f, ms_f, pad_f, _) = measure(&mut full)?;
        let same = pad_r == pad_f;
        println!(
            "{}: {steps} steps | evaluated {ev_r} vs {ev_f} tokens ({:.3}) | {ms_r:.0} vs {ms_f:.0} ms ({:.3}) | same trajectory: {same}",
            q.id,
            ev_r as f64 / ev_f as f64,
            ms_r / ms_f
        );
        tot_reuse.0 += ev_r;
        tot_reuse.1 += ms_r;
        tot_full.0 += ev_f;
        tot_full.1 += ms_f;
        rows.push(json!({"task": q.id, "steps": steps, "evaluated_reuse": ev_r, "evaluated_full": ev_f, "ms_reuse": ms_r, "ms_full": ms_f, "same_trajectory": same}));
    }
    let ev_ratio = tot_reuse.0 as f64 / tot_full.0 as f64;
    let ms_ratio = tot_reuse.1 / tot_full.1;
    println!(
        "total over {} episodes: evaluated {} vs {} tokens, ratio {ev_ratio:.3}; wall {:.0} vs {:.0} ms, ratio {ms_ratio:.3}",
        questions.len(),
        tot_reuse.0,
        tot_full.0,
        tot_reuse.1,
        tot_full.1
    );
    let report = json!({"format_version": 1, "model": model_name, "threads": threads, "episodes": rows,
        "evaluated_ratio": ev_ratio, "wall_ratio": ms_ratio});
    Ok(retroformer_benches::finish_report(
        &report,
        Some(&out),
        None,
        threads,
    )?)
}
