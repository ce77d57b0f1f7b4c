//! A toy environment, to show what adding one takes: this folder, and one line that puts it in
//! a registry. Each task asks for the word that follows another in a fixed list; an attempt
//! succeeds when the reply names it; a failed attempt gets a reflection, shown next trial.

use retroformer::agent::reflect::{ChatFrame, Failure, Reflection, ReflectionPrompt, Reflector};
use retroformer::agent::runner::{
    run_trials, Attempt, RunConfig, RunError, TaskInfo, TaskResult, TrialAgent, TrialSummary,
};
use retroformer_envs::{
    AgentModels, BenchEpisode, EnvError, Environment, EvalPlan, Evaluation, Progress, Setting,
    Spec, TrialEnv, TrialEval,
};
use retroformer_llm::{GenerateRequest, LanguageModel, Session, SessionOptions};

pub const WORDS: [&str; 8] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
];

/// The toy environment.
pub struct Toy;

impl Environment for Toy {
    fn name(&self) -> &'static str {
        "toy"
    }

    fn spec(&self) -> Spec {
        use Setting::*;
        Spec {
            about: "Which word follows another.",
            settings: &[Strategy, Trials, Reflector, Limit],
            trials: ("trials", 2),
            strategies: &["reflexion", "none"],
            max_steps: 1,
            splits: &[],
            data: "generated",
            reflexion: true,
        }
    }

    fn prepare(&self, plan: &EvalPlan) -> Result<Box<dyn Evaluation>, EnvError> {
        let n = plan.limit.unwrap_or(WORDS.len() - 1).min(WORDS.len() - 1);
        let tasks = (0..n)
            .map(|i| TaskInfo {
                id: format!("w{i}"),
                question: format!("Which word follows {}?", WORDS[i]),
                gold: WORDS[i + 1].into(),
            })
            .collect();
        let cfg = RunConfig {
            agent: "toy".into(),
            trials: plan.trials.unwrap_or(2),
            strategy: plan.strategy.clone().unwrap_or_else(|| "reflexion".into()),
            memory: 1,
            max_steps: 1,
            actor: plan.actor.clone(),
            reflector: plan.reflector.clone(),
            reflector_adapter: plan.reflector_adapter.clone(),
            reflector_temperature: 0.0,
            reflector_seed: 0,
            env: Default::default(),
            ..Default::default()
        };
        TrialEval::prepare(ToyTrials { tasks }, &self.spec(), cfg, plan)
    }

    fn bench(
        &self,
        model: &dyn LanguageModel,
        opts: &SessionOptions,
        _quick: bool,
        _progress: &dyn Fn(&str),
    ) -> Result<Vec<BenchEpisode>, EnvError> {
        let mut s = model.session(opts)?;
        let g = s.generate(
            &GenerateRequest::new("Which word follows alpha?", 4),
            &mut |_| true,
        )?;
        Ok(vec![BenchEpisode {
            task: "w0".into(),
            success: g.text.contains("bravo"),
            calls: 1,
            evaluated_tokens: u64::from(g.stats.evaluated_tokens),
            reused_tokens: u64::from(g.stats.reused_tokens),
            generated_tokens: u64::from(g.stats.generated_tokens),
            wall_ms: g.stats.total_ms,
        }])
    }
}

/// What a toy evaluation runs: its tasks. The rest (sessions, the reflector, progress, the
/// report) is the trial runner's evaluation.
struct ToyTrials {
    tasks: Vec<TaskInfo>,
}

impl TrialEnv for ToyTrials {
    fn name(&self) -> &str {
        "toy"
    }

    fn tasks(&self) -> Vec<TaskInfo> {
        self.tasks.clone()
    }

    fn lane_tokens(&self, _: &RunConfig) -> u32 {
        256
    }

    fn reflection(&self, _: ChatFrame, _: &RunConfig) -> (Box<dyn ReflectionPrompt>, u32) {
        (Box::new(Plan), 8)
    }

    fn title(&self, cfg: &RunConfig) -> String {
        format!("Toy, {} ({} tasks)", cfg.strategy, self.tasks.len())
    }

    fn run(
        &self,
        models: AgentModels<'_>,
        cfg: &RunConfig,
        out: &std::path::Path,
        progress: &mut dyn Progress,
    ) -> Result<Vec<TrialSummary>, EnvError> {
        let mut agent = ToyAgent {
            tasks: &self.tasks,
            session: models.session,
            reflector: models.reflector,
        };
        Ok(run_trials(&self.tasks, &mut agent, cfg, out, &mut |r| {
            progress.done(&r.task_id)
        })?)
    }
}

struct Plan;

impl ReflectionPrompt for Plan {
    fn prompt(&self, f: &Failure<'_>) -> String {
        format!("{}\n{}\nPlan:", f.task, f.trajectory)
    }

    fn stops(&self) -> &[&str] {
        &["\n"]
    }
}

struct ToyAgent<'a> {
    tasks: &'a [TaskInfo],
    session: &'a mut dyn Session,
    reflector: &'a mut dyn Reflector,
}

impl TrialAgent for ToyAgent<'_> {
    fn attempt(
        &mut self,
        i: usize,
        earlier: &[TaskResult],
        _trial: u32,
    ) -> Result<Attempt, RunError> {
        let t = &self.tasks[i];
        let notes: String = earlier
            .iter()
            .filter_map(|r| r.reflection.as_ref())
            .map(|r| format!("{}\n", r.text))
            .collect();
        let g = self
            .session
            .generate(
                &GenerateRequest::new(format!("{notes}{}", t.question), 4),
                &mut |_| true,
            )
            .map_err(retroformer::agent::AgentError::from)?;
        let success = g.text.contains(&t.gold);
        Ok(Attempt {
            answer: Some(g.text.trim().to_string()),
            success,
            halted: false,
            episode_return: if success { 1.0 } else { 0.0 },
            steps: Vec::new(),
            scratchpad: g.text,
        })
    }

    fn reflect(
        &mut self,
        i: usize,
        a: &Attempt,
        _earlier: &[TaskResult],
    ) -> Result<Reflection, RunError> {
        Ok(self.reflector.reflect(&Failure {
            task: &self.tasks[i].question,
            trajectory: &a.scratchpad,
            episode_return: a.episode_return,
            earlier: &[],
        })?)
    }
}
