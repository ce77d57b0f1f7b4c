//! The evaluation that every environment on the agent core's trial runner shares: lanes, the
//! actor's session, the reflector and its session, trial 1 taken from another run, progress
//! and the report. An environment writes only what is its own ([`TrialEnv`]) and hands it to
//! [`TrialEval::prepare`].

use std::path::{Path, PathBuf};

use retroformer::agent::reflect::{ChatFrame, LlmReflector, ReflectionPrompt};
use retroformer::agent::runner::{RunConfig, RunError, TaskInfo, TrialSummary};

use crate::trials::{self, AgentModels};
use crate::{EnvError, EvalPlan, EvalReport, Evaluation, Models, Needs, Progress, Setting, Spec};

/// What an environment on the trial runner supplies to [`TrialEval`].
pub trait TrialEnv: Send {
    /// Its name, as progress lines start ("hotpotqa").
    fn name(&self) -> &str;

    /// What its tasks are called in progress lines ("questions").
    fn noun(&self) -> &'static str {
        "tasks"
    }

    /// The split its tasks come from, where it has several.
    fn split(&self) -> Option<&str> {
        None
    }

    /// Its tasks, in run order.
    fn tasks(&self) -> Vec<TaskInfo>;

    /// Tokens of one lane under `cfg`: an attempt, or a reflection prompt and its reply.
    fn lane_tokens(&self, cfg: &RunConfig) -> u32;

    /// The reflector's prompt in this environment's words, and its tokens per reflection.
    fn reflection(&self, frame: ChatFrame, cfg: &RunConfig) -> (Box<dyn ReflectionPrompt>, u32);

    /// The chart's title.
    fn title(&self, cfg: &RunConfig) -> String;

    /// Trial 1 of `tasks` copied from the run in `from` into `to` (see
    /// [`retroformer::agent::runner::seed_first_trial`]); an environment may refuse it for
    /// settings a run does not record.
    fn seed_first_trial(
        &self,
        from: &Path,
        to: &Path,
        cfg: &RunConfig,
        tasks: &[TaskInfo],
    ) -> Result<usize, RunError> {
        retroformer::agent::runner::seed_first_trial(from, to, cfg, tasks)
    }

    /// Runs (or resumes) `cfg.trials` trials with `models`, writing into `out`, telling
    /// `progress` of each finished task.
    fn run(
        &self,
        models: AgentModels<'_>,
        cfg: &RunConfig,
        out: &Path,
        progress: &mut dyn Progress,
    ) -> Result<Vec<TrialSummary>, EnvError>;
}

/// An evaluation of a [`TrialEnv`]: a plan's run settings, checked, and where it writes.
pub struct TrialEval<E> {
    env: E,
    cfg: RunConfig,
    parallel: u32,
    first_trial_from: Option<PathBuf>,
    out: PathBuf,
}

impl<E: TrialEnv + 'static> TrialEval<E> {
    /// The evaluation of `env` with the run settings `cfg` of `plan`; `--parallel` counts where
    /// `spec` offers it (else one episode at a time).
    pub fn prepare(
        env: E,
        spec: &Spec,
        cfg: RunConfig,
        plan: &EvalPlan,
    ) -> Result<Box<dyn Evaluation>, EnvError> {
        let parallel = if spec.settings.contains(&Setting::Parallel) {
            trials::parallel(plan)?
        } else {
            1
        };
        Ok(Box::new(Self {
            env,
            cfg,
            parallel,
            first_trial_from: plan.first_trial_from.clone(),
            out: plan.out.clone(),
        }))
    }

    /// Trial 1 copied from `--first-trial-from`, if given, with a note of how many tasks.
    fn seed(&self, tasks: &[TaskInfo], progress: &mut dyn Progress) -> Result<(), EnvError> {
        let Some(from) = &self.first_trial_from else {
            return Ok(());
        };
        let n = self
            .env
            .seed_first_trial(from, &self.out, &self.cfg, tasks)?;
        if n > 0 {
            progress.note(&format!(
                "trial 1 of {n} {} taken from {}",
                self.env.noun(),
                from.display()
            ));
        }
        Ok(())
    }
}

impl<E: TrialEnv + 'static> Evaluation for TrialEval<E> {
    fn needs(&self) -> Needs {
        Needs::of(&self.cfg)
    }

    fn run(
        self: Box<Self>,
        models: &Models<'_>,
        progress: &mut dyn Progress,
    ) -> Result<EvalReport, EnvError> {
        let (cfg, env) = (&self.cfg, &self.env);
        let tasks = env.tasks();
        let (lanes, per_lane) = models.lanes(
            trials::in_flight(self.parallel, tasks.len()),
            env.lane_tokens(cfg),
        );
        let mut session = models.session(models.actor, lanes, per_lane)?;
        let (prompt, reflection_tokens) = env.reflection(ChatFrame::of(models.reflector), cfg);
        let mut reflector = LlmReflector::new(
            models.reflector_session(lanes, per_lane, trials::reflects(cfg))?,
            prompt,
            reflection_tokens,
        )
        .with_sampling(cfg.reflector_sampling());
        let split = env
            .split()
            .map(|s| format!(" ({s} split)"))
            .unwrap_or_default();
        progress.note(&format!(
            "{}: {} {}{split}, {} trials, strategy {}, out {}",
            env.name(),
            tasks.len(),
            env.noun(),
            cfg.trials,
            cfg.strategy,
            self.out.display()
        ));
        self.seed(&tasks, progress)?;
        progress.total(tasks.len() as u64 * u64::from(cfg.trials));
        let agents = AgentModels {
            actor: models.actor,
            session: session.as_mut(),
            reflector: &mut reflector,
            parallel: lanes as usize,
        };
        let summaries = env.run(agents, cfg, &self.out, progress)?;
        Ok(trials::report(&env.title(cfg), cfg, &summaries, &self.out))
    }
}
