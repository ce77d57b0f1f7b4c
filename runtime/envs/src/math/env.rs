//! GSM8K and MATH in the registry: RISE inference, sequential turns and parallel samples.

use std::path::{Path, PathBuf};

use super::rise::{self, MathAgent, Mode, RiseConfig};
use super::{Dataset, MathProblem};
use crate::{
    Chart, EnvError, Environment, EvalPlan, EvalReport, Evaluation, Flag, FlagKind, Models, Needs,
    Progress, Setting, Spec,
};

/// A math data set with RISE inference.
pub struct MathEnv {
    dataset: Dataset,
}

/// GSM8K (the bundled test split by default).
pub static GSM8K: MathEnv = MathEnv {
    dataset: Dataset::Gsm8k,
};

/// MATH-format problems (`problem`, `solution` with `\boxed{}`), from `--data`.
pub static MATH: MathEnv = MathEnv {
    dataset: Dataset::Math,
};

const FLAGS: &[Flag] = &[
    Flag {
        name: "mode",
        help: "sequential (turns), parallel (samples of turn 1) or both (all four metrics).",
        kind: FlagKind::Value {
            default: Some("both"),
        },
    },
    Flag {
        name: "turns",
        help: "Sequential turns.",
        kind: FlagKind::Value { default: Some("5") },
    },
    Flag {
        name: "window",
        help: "Turns each turn's context holds, itself included, as RISE's context_window: 2 shows one earlier attempt, 1 none.",
        kind: FlagKind::Value { default: Some("2") },
    },
    Flag {
        name: "samples",
        help: "Parallel samples.",
        kind: FlagKind::Value { default: Some("5") },
    },
    Flag {
        name: "temperature",
        help: "Temperature of every sequential turn and parallel sample (RISE: 1.0); 0: greedy.",
        kind: FlagKind::Value {
            default: Some("1.0"),
        },
    },
    Flag {
        name: "top-p",
        help: "Top-p of every sampled attempt (RISE: 1.0).",
        kind: FlagKind::Value {
            default: Some("1.0"),
        },
    },
    Flag {
        name: "adapter",
        help: "A LoRA adapter (GGUF) on the model, e.g. one `retroformer rise round` trained.",
        kind: FlagKind::Value { default: None },
    },
    Flag {
        name: "max-tokens",
        help: "Tokens per attempt.",
        kind: FlagKind::Value {
            default: Some("512"),
        },
    },
    Flag {
        name: "seed",
        help: "Seed of the samplers.",
        kind: FlagKind::Value { default: Some("0") },
    },
    Flag {
        name: "batch",
        help: "Problems in flight together, with all their parallel samples: one session's lanes, refilled as attempts end, each problem saved as it ends (about 2.9x one sequence's decode at 32 sequences with Qwen2.5-Coder-0.5B on 2 cores; `cargo bench --bench throughput`). At most as many as a quarter of the free memory holds. 1: one at a time. Default: 32, or what the run being resumed in --out used.",
        kind: FlagKind::Value { default: None },
    },
];

impl Environment for MathEnv {
    fn name(&self) -> &'static str {
        match self.dataset {
            Dataset::Gsm8k => "gsm8k",
            Dataset::Math => "math",
        }
    }

    fn spec(&self) -> Spec {
        Spec {
            about: match self.dataset {
                Dataset::Gsm8k => "GSM8K with RISE inference: sequential turns and/or parallel samples, four metrics.",
                Dataset::Math => "MATH-format problems (`problem`, `solution` with \\boxed{}) with RISE inference.",
            },
            settings: &[Setting::Data, Setting::Limit],
            trials: ("trials", 1),
            strategies: &[],
            max_steps: 0,
            splits: &[],
            data: match self.dataset {
                Dataset::Gsm8k => "the bundled GSM8K test split",
                Dataset::Math => "required: JSONL rows with problem and solution",
            },
            reflexion: false,
        }
    }

    fn flags(&self) -> &'static [Flag] {
        FLAGS
    }

    fn prepare(&self, plan: &EvalPlan) -> Result<Box<dyn Evaluation>, EnvError> {
        let o = &plan.options;
        let mode_name: String = o.or("mode", "both".to_string())?;
        let mode = Mode::parse(&mode_name).ok_or_else(|| {
            EnvError::setting(
                "mode",
                format!("{mode_name}: known modes are sequential, parallel, both"),
            )
        })?;
        let mut cfg = RiseConfig::new(self.dataset, mode, &plan.actor);
        cfg.turns = o.or("turns", 5)?;
        cfg.window = o.or("window", 2)?;
        cfg.samples = o.or("samples", 5)?;
        let temperature: f32 = o.or("temperature", rise::PUBLISHED_TEMPERATURE)?;
        cfg.top_p = o.or("top-p", rise::PUBLISHED_TOP_P)?;
        rise::check_sampling(cfg.window, temperature, cfg.top_p)
            .map_err(|(flag, why)| EnvError::setting(flag, why))?;
        cfg.sequential_temperature = temperature;
        cfg.parallel_temperature = temperature;
        cfg.adapter = o.get::<String>("adapter")?;
        if let Some(p) = &cfg.adapter {
            let sha = retroformer::fetch::sha256_file(Path::new(p), &retroformer::fetch::Silent)
                .map_err(|e| EnvError::setting("adapter", format!("{p}: {e}")))?;
            cfg.adapter_sha256 = Some(sha);
        }
        cfg.max_tokens = o.or("max-tokens", 512)?;
        rise::check_max_tokens(cfg.max_tokens)
            .map_err(|(flag, why)| EnvError::setting(flag, why))?;
        cfg.seed = o.or("seed", 0)?;
        rise::check_counts(cfg.turns, cfg.samples)
            .map_err(|(flag, why)| EnvError::setting(flag, why))?;
        cfg.batch = match o.get::<u32>("batch")? {
            Some(0) => return Err(EnvError::setting("batch", "must be at least 1")),
            Some(b) => b,
            None => resumed_batch(&plan.out)?.unwrap_or(crate::DEFAULT_PARALLEL),
        };
        let cap = crate::trials::row_cap(plan);
        let problems = load_first(self.dataset, plan.data.as_deref(), "test", cap)?;
        let origin = plan
            .data
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from("the bundled GSM8K test split"));
        let problems = crate::trials::select(problems, |p| p.id.clone(), plan, &origin)?;
        Ok(Box::new(MathEval {
            cfg,
            problems,
            out: plan.out.clone(),
        }))
    }

    fn bench(
        &self,
        model: &dyn retroformer_llm::LanguageModel,
        opts: &retroformer_llm::SessionOptions,
        quick: bool,
        progress: &dyn Fn(&str),
    ) -> Result<Vec<crate::BenchEpisode>, EnvError> {
        if quick || self.dataset != Dataset::Gsm8k {
            return Ok(Vec::new());
        }
        // One greedy attempt at each of the first two test problems.
        let problems = load(self.dataset, None, "test")?;
        let mut out = Vec::new();
        for p in problems.iter().take(2) {
            progress(&format!("gsm8k {}", p.id));
            let mut session = model.session(opts)?;
            let mut agent = MathAgent {
                model,
                session: session.as_mut(),
            };
            let msgs = rise::messages(&p.question, &[], 2);
            let a = agent
                .attempt(p, &msgs, retroformer_llm::SamplingParams::greedy(), 384)
                .map_err(retroformer::agent::runner::RunError::from)?;
            out.push(crate::BenchEpisode {
                task: p.id.clone(),
                success: a.reward > 0.0,
                calls: 1,
                evaluated_tokens: u64::from(a.evaluated_tokens),
                reused_tokens: u64::from(a.reused_tokens),
                generated_tokens: u64::from(a.generated_tokens),
                wall_ms: a.ms,
            });
        }
        Ok(out)
    }
}

/// The problems of `dataset`: from `data`, else GSM8K's bundled `split`; MATH needs a file.
pub fn load(
    dataset: Dataset,
    data: Option<&Path>,
    split: &str,
) -> Result<Vec<MathProblem>, EnvError> {
    load_first(dataset, data, split, None)
}

/// [`load`], reading at most `cap` rows when there is a cap.
pub fn load_first(
    dataset: Dataset,
    data: Option<&Path>,
    split: &str,
    cap: Option<usize>,
) -> Result<Vec<MathProblem>, EnvError> {
    match (dataset, data) {
        (Dataset::Gsm8k, _) => {
            let source = super::gsm8k_source(split, data).ok_or_else(|| {
                EnvError::setting("split", format!("{split}: GSM8K has train, test and demo"))
            })?;
            super::load_gsm8k_first(source, cap)
        }
        (Dataset::Math, Some(p)) => super::load_math_first(p, cap),
        (Dataset::Math, None) => Err(EnvError::setting(
            "data",
            "PATH is required for MATH (JSONL rows with problem and solution)",
        )),
    }
}

/// The `batch` of the RISE run already in `out` (1 for runs from before the setting), if any.
fn resumed_batch(out: &Path) -> Result<Option<u32>, EnvError> {
    let v: Option<serde_json::Value> = retroformer::agent::files::read_json(&out.join("run.json"))
        .map_err(|e| EnvError::Run(e.into()))?;
    Ok(v.map(|v| {
        v.get("batch")
            .and_then(|b| b.as_u64())
            .map_or(1, |b| u32::try_from(b).unwrap_or(u32::MAX))
    }))
}

/// Tokens one RISE attempt may need: instruction, worked example and question (generously
/// 400), `window - 1` earlier attempts with their retry messages, and its own answer.
pub fn lane_tokens(window: usize, max_tokens: u32) -> u32 {
    let earlier = u32::try_from(window.saturating_sub(1)).unwrap_or(u32::MAX);
    400u32
        .saturating_add(earlier.saturating_mul(max_tokens.saturating_add(40)))
        .saturating_add(max_tokens)
}

struct MathEval {
    cfg: RiseConfig,
    problems: Vec<MathProblem>,
    out: PathBuf,
}

impl MathEval {
    /// Lanes and context for attempts decoded together: `batch` problems' sequential turns
    /// (each up to the prompt, `window` earlier attempts and its own) or their `samples`
    /// parallel samples each; what the memory does not hold waits for a lane.
    fn lanes(&self, models: &Models<'_>) -> (u32, u32) {
        let c = &self.cfg;
        if c.batch <= 1 {
            return (1, 0);
        }
        // Never more problems in flight than there are.
        let batch = c
            .batch
            .min(u32::try_from(self.problems.len()).unwrap_or(u32::MAX))
            .max(1);
        let mode = Mode::parse(&c.strategy).unwrap_or(Mode::Both);
        let (mut lanes, mut per_lane) = (1u32, 0u32);
        if matches!(mode, Mode::Sequential | Mode::Both) {
            lanes = lanes.max(batch);
            per_lane = per_lane.max(lane_tokens(c.window, c.max_tokens));
        }
        if matches!(mode, Mode::Parallel | Mode::Both) {
            lanes = lanes.max(batch.saturating_mul(c.samples));
            per_lane = per_lane.max(lane_tokens(1, c.max_tokens));
        }
        let cells = models.profile.batch_cells(
            models.actor.kv_bytes_per_token(),
            retroformer_core::rss::available_bytes(),
        );
        models.profile.lanes(lanes, per_lane, cells)
    }
}

impl Evaluation for MathEval {
    fn needs(&self) -> Needs {
        Needs {
            actor: self.cfg.actor.clone(),
            reflector: None,
            reflector_adapter: None,
        }
    }

    fn run(
        self: Box<Self>,
        models: &Models<'_>,
        progress: &mut dyn Progress,
    ) -> Result<EvalReport, EnvError> {
        let cfg = &self.cfg;
        let (lanes, lane_tokens) = self.lanes(models);
        let mut session = models.session(models.actor, lanes, lane_tokens)?;
        if let Some(path) = &cfg.adapter {
            let h = models
                .actor
                .load_adapter(Path::new(path))
                .map_err(|e| EnvError::setting("adapter", format!("{path}: {e}")))?;
            session.set_adapter(Some((h, 1.0)))?;
            progress.note(&format!("adapter: {path}"));
        }
        progress.note(&format!(
            "rise: {} problems, mode {}, {} turns (window {}), {} samples, out {}",
            self.problems.len(),
            cfg.strategy,
            cfg.turns,
            cfg.window,
            cfg.samples,
            self.out.display()
        ));
        progress.total(self.problems.len() as u64);
        let mut agent = MathAgent {
            model: models.actor,
            session: session.as_mut(),
        };
        let summary = rise::run(&self.problems, cfg, &self.out, &mut agent, |r| {
            let turns: Vec<String> = r.sequential.iter().map(|t| t.reward.to_string()).collect();
            progress.done(&format!("{}: turns {}", r.problem_id, turns.join(" ")));
        })?;
        let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
        let m = &summary.metrics;
        let lines = vec![
            format!(
                "m1@t1 {}  m5@t1 {}  m1@t5 {}  p1@t5 {}  ({} problems, {:.1} s and {:.0} generated tokens per problem)",
                f(m.m1_t1), f(m.m5_t1), f(m.m1_t5), f(m.p1_t5),
                summary.problems, summary.mean_problem_s, summary.mean_generated_tokens
            ),
            format!("results: {} (trial-00/*.json, rise.json)", self.out.display()),
        ];
        let chart = (!summary.accuracy_by_turn.is_empty()).then(|| Chart {
            stem: "turns".into(),
            title: format!(
                "RISE sequential turns, {} ({})",
                cfg.actor, summary.problems
            ),
            x_label: "turn".into(),
            y_label: "accuracy".into(),
            series: vec![(
                "accuracy at turn t".into(),
                summary
                    .accuracy_by_turn
                    .iter()
                    .enumerate()
                    .map(|(i, v)| ((i + 1) as f64, *v))
                    .collect(),
            )],
        });
        Ok(EvalReport {
            score: m.m1_t1,
            success_by_trial: Vec::new(),
            tasks: summary.problems,
            lines,
            chart,
        })
    }
}
