//! HumanEval in the registry: Reflexion's programming loop, every program run in the sandbox.

use std::path::PathBuf;

use super::programming::{self, CodingConfig, HumanevalAgent, ReflectorSession};
use super::Problem;
use crate::trials;
use crate::{
    Chart, EnvError, Environment, EvalPlan, EvalReport, Evaluation, Flag, FlagKind, Models, Needs,
    Progress, Setting, Spec,
};
use retroformer_sandbox::{Pool, Sandbox, SandboxConfig, SandboxError};

/// HumanEval (or MBPP-style JSONL).
pub struct Humaneval;

impl Environment for Humaneval {
    fn name(&self) -> &'static str {
        "humaneval"
    }

    fn spec(&self) -> Spec {
        use Setting::*;
        Spec {
            about: "HumanEval (or MBPP-style JSONL): Reflexion with the docstring's examples as visible tests (else one self-written test), run in the sandbox.",
            settings: &[
                Strategy,
                Trials,
                Reflector,
                ActorSampling,
                Data,
                Tasks,
                Skip,
                Limit,
            ],
            trials: ("max-iters", 5),
            strategies: &["reflexion", "none"],
            max_steps: 0,
            splits: &[],
            data: "the bundled HumanEval, 164 problems",
            reflexion: true,
        }
    }

    fn flags(&self) -> &'static [Flag] {
        &[
            Flag {
                name: "workers",
                help: "Sandbox runs at once (tests of one implementation run in parallel; hidden tests run while the model works on the next task).",
                kind: FlagKind::Value { default: Some("2") },
            },
            Flag {
                name: "test-timeout-ms",
                help: "Wall-clock limit of one test run, milliseconds.",
                kind: FlagKind::Value {
                    default: Some("6000"),
                },
            },
            Flag {
                name: "python",
                help: "Python interpreter for the sandbox.",
                kind: FlagKind::Value { default: None },
            },
        ]
    }

    fn prepare(&self, plan: &EvalPlan) -> Result<Box<dyn Evaluation>, EnvError> {
        let strategy = plan.strategy.clone().unwrap_or_else(|| "reflexion".into());
        if !self.spec().strategies.contains(&strategy.as_str()) {
            return Err(EnvError::setting(
                "strategy",
                format!("{strategy}: programming supports reflexion and none"),
            ));
        }
        let max_iters = plan.trials.unwrap_or(5);
        if max_iters == 0 {
            return Err(EnvError::setting("max-iters", "must be at least 1"));
        }
        let source = super::source(plan.data.as_deref());
        let problems = trials::select(
            super::load_first(source.clone(), trials::row_cap(plan))?,
            |p| p.task_id.clone(),
            plan,
            &source.path(),
        )?;
        let workers: usize = plan.options.or("workers", 2)?;
        let wall_ms: u64 = plan.options.or("test-timeout-ms", 6_000)?;
        let mut c = SandboxConfig {
            wall_ms,
            cpu_seconds: wall_ms.div_ceil(1000).max(1),
            memory_bytes: 1024 << 20,
            ..Default::default()
        };
        if let Some(p) = plan.options.get::<PathBuf>("python")? {
            c.python = p;
        }
        let sandbox = Sandbox::new(c).map_err(|e| {
            let flag = match &e {
                SandboxError::Config { .. } => "test-timeout-ms",
                _ => "python",
            };
            EnvError::setting(flag, e.to_string())
        })?;
        let mut cfg = CodingConfig::new(&strategy, max_iters, &plan.actor);
        cfg.reflector = plan.reflector.clone();
        cfg.reflector_adapter = plan.reflector_adapter.clone();
        let (t, p) = (plan.actor_temperature, plan.actor_top_p);
        if !(t.is_finite() && t >= 0.0) {
            return Err(EnvError::setting(
                "temperature",
                format!("{t}: must be 0 (greedy) or a positive number"),
            ));
        }
        if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
            return Err(EnvError::setting(
                "top-p",
                format!("{p}: must be in 0..=1 (0 or 1: off)"),
            ));
        }
        cfg.actor_temperature = t;
        // Top-p 1 is off, as 0 is: stored as 0 so that both are the same run.
        cfg.actor_top_p = if p >= 1.0 { 0.0 } else { p };
        cfg.actor_seed = plan.actor_seed;
        Ok(Box::new(HumanevalEval {
            cfg,
            problems,
            sandbox,
            workers,
            out: plan.out.clone(),
        }))
    }
}

struct HumanevalEval {
    cfg: CodingConfig,
    problems: Vec<Problem>,
    sandbox: Sandbox,
    workers: usize,
    out: PathBuf,
}

impl Evaluation for HumanevalEval {
    fn needs(&self) -> Needs {
        let c = &self.cfg;
        Needs::new(&c.actor, &c.reflector, c.reflector_adapter.as_deref())
    }

    fn run(
        self: Box<Self>,
        models: &Models<'_>,
        progress: &mut dyn Progress,
    ) -> Result<EvalReport, EnvError> {
        let cfg = &self.cfg;
        let inactive: Vec<&str> = self
            .sandbox
            .isolation()
            .iter()
            .filter(|l| !l.active)
            .map(|l| l.name.as_str())
            .collect();
        if !inactive.is_empty() {
            progress.note(&format!(
                "sandbox: layers not available here: {}",
                inactive.join(", ")
            ));
        }
        let pool = Pool::new(self.sandbox, self.workers)
            .map_err(|e| EnvError::setting("workers", format!("{}: {e}", self.workers)))?;
        let mut session = models.session(models.actor, 1, 0)?;
        // A reflector of its own (another model, or the actor with an adapter) gets its own
        // session; otherwise the actor reflects in its session, as Reflexion does.
        let own = cfg.reflector != "actor" || models.reflector_adapter.is_some();
        let mut reflector_session = if own {
            Some(models.reflector_session(1, 0, true)?)
        } else {
            None
        };
        let decoding = if cfg.sampled() {
            format!(
                "sampled (temperature {}, top-p {}, seed {})",
                cfg.actor_temperature,
                if cfg.actor_top_p > 0.0 {
                    cfg.actor_top_p
                } else {
                    1.0
                },
                cfg.actor_seed
            )
        } else {
            "greedy".into()
        };
        progress.note(&format!(
            "humaneval: {} problems, strategy {}, max {} iterations, actor {decoding}, out {}",
            self.problems.len(),
            cfg.strategy,
            cfg.max_iters,
            self.out.display()
        ));
        progress.total(self.problems.len() as u64);
        let mut agent = HumanevalAgent {
            model: models.actor,
            session: session.as_mut(),
            reflector: reflector_session.as_mut().map(|s| ReflectorSession {
                model: models.reflector,
                session: s.as_mut(),
            }),
        };
        let mut passed = 0usize;
        let mut finished = 0usize;
        let (summary, _) = programming::run(
            &self.problems,
            cfg,
            &self.out,
            &mut agent,
            &pool,
            |r| {
                passed += usize::from(r.passed);
                finished += 1;
                progress.done(&format!(
                    "{}: {} after {} iteration(s) (submitted #{}, visible tests: {}); pass@1 so far {passed}/{finished}",
                    r.task_id,
                    r.hidden.outcome.name(),
                    r.iterations.len(),
                    r.submitted.map_or(r.iterations.len(), |s| s + 1),
                    programming::visible_source(r),
                ));
            },
        )?;
        Ok(report(cfg, &summary, self.problems.len(), &self.out))
    }
}

fn report(
    cfg: &CodingConfig,
    s: &programming::CodingSummary,
    problems: usize,
    out: &std::path::Path,
) -> EvalReport {
    let counts = |m: &std::collections::BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let v = &s.verifier;
    let share = |r: Option<f64>| r.map_or("-".to_string(), |x| format!("{:.1} %", 100.0 * x));
    let lines = vec![
        format!(
            "pass@1 {:.3} ({} of {}), strategy {}, actor {}",
            s.pass_at_1, s.passed, s.tasks, cfg.strategy, cfg.actor
        ),
        format!("hidden-test outcomes: {}", counts(&s.outcomes)),
        format!("loops ended: {}", counts(&s.stops)),
        format!("visible tests from: {}", counts(&s.visible_tests)),
        format!(
            "verifier (hidden tests on every implementation, analysis only): false alarms {} of {} that pass ({}), misses {} of {} that fail ({}); regressions {}, fixes {} (of {} tasks, {} first implementations passed); {} tasks submitted an earlier implementation",
            v.false_alarms,
            v.hidden_passed,
            share(v.false_alarm_rate),
            v.misses,
            v.hidden_failed,
            share(v.miss_rate),
            v.regressions,
            v.fixes,
            v.tasks,
            v.first_passed,
            s.submitted_earlier
        ),
        format!(
            "per task: {:.1} iterations, {:.1} s, {:.0} tokens ({:.0} generated)",
            s.mean_iterations, s.mean_task_s, s.mean_tokens, s.mean_generated_tokens
        ),
        format!(
            "results: {} (trial-00/*.json, humaneval.json, records.jsonl)",
            out.display()
        ),
    ];
    let own = s
        .own_tests_pass_by_iteration
        .iter()
        .enumerate()
        .map(|(i, v)| ((i + 1) as f64, *v))
        .collect();
    let hidden = (1..=cfg.max_iters)
        .map(|k| (f64::from(k), s.pass_at_1))
        .collect();
    let oracle = s
        .hidden_pass_any_by_iteration
        .iter()
        .enumerate()
        .map(|(i, v)| ((i + 1) as f64, *v))
        .collect();
    EvalReport {
        score: Some(s.pass_at_1),
        success_by_trial: Vec::new(),
        tasks: s.tasks,
        lines,
        chart: Some(Chart {
            stem: "success".into(),
            title: format!(
                "HumanEval, {} ({}, {problems} problems)",
                cfg.strategy, cfg.actor
            ),
            x_label: "iteration".into(),
            y_label: "share of tasks".into(),
            series: vec![
                ("visible tests all pass (cumulative)".into(), own),
                (
                    "an implementation passes the hidden tests (cumulative, oracle)".into(),
                    oracle,
                ),
                (
                    format!("hidden tests, submitted: pass@1 {:.3}", s.pass_at_1),
                    hidden,
                ),
            ],
        }),
    }
}
