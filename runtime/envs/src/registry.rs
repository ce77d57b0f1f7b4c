//! One registry of environments. Evaluation, the canary, the Retroformer loop and the bench
//! reach every environment through [`Environment`]; adding one is a folder of its own and one
//! line in [`Registry::builtin`].
//!
//! An environment declares its settings as data ([`Setting`], [`Flag`]), so that the command
//! line (the only place `clap` lives) offers them as flags without naming the environment, and
//! evaluates a plan in two steps: [`Environment::prepare`] checks the plan and loads its tasks
//! before any model loads (a bad flag fails in milliseconds, not after a model load), and
//! [`Evaluation::run`] runs it with the models it asked for.

use std::collections::BTreeMap;
use std::path::PathBuf;

use retroformer_llm::target::TargetProfile;
use retroformer_llm::{AdapterHandle, LanguageModel, LlmError, Session, SessionOptions};

use crate::EnvError;

/// A setting every environment may take (each declares the ones it does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// `--strategy`: what a trial is told about earlier ones.
    Strategy,
    /// `--trials` (or the environment's own name for it): trials, or iterations, per task.
    Trials,
    /// `--memory`: reflections kept per task.
    Memory,
    /// `--max-steps`: the step limit of an episode.
    MaxSteps,
    /// `--reflector`, `--reflector-adapter`: who writes the reflections.
    Reflector,
    /// `--reflector-temperature`, `--reflector-seed`: sampled reflections.
    ReflectorSampling,
    /// `--temperature`, `--top-p`, `--seed`: the actor samples, with a seed per task and trial.
    ActorSampling,
    /// `--parallel`: episodes run at once through one session.
    Parallel,
    /// `--first-trial-from`: share another run's first trial.
    FirstTrialFrom,
    /// `--resume`: go on with a run's saved settings.
    Resume,
    /// `--data`: another data file than the bundled one.
    Data,
    /// `--split`: which split of a generated task set.
    Split,
    /// `--tasks`: only these task ids.
    Tasks,
    /// `--skip`: leave out the first tasks.
    Skip,
    /// `--limit`: only the first tasks.
    Limit,
}

/// What an environment says about the settings it takes.
#[derive(Debug, Clone)]
pub struct Spec {
    /// One line for `--help`.
    pub about: &'static str,
    /// The common settings it takes.
    pub settings: &'static [Setting],
    /// Its name for [`Setting::Trials`] (`trials`; HumanEval: `max-iters`) and the default.
    pub trials: (&'static str, u32),
    /// The strategies it runs (the first is the default).
    pub strategies: &'static [&'static str],
    /// The default step limit, where it has one.
    pub max_steps: u32,
    /// Its splits (the first is the default), for generated task sets.
    pub splits: &'static [&'static str],
    /// What `--data` reads by default (for its help).
    pub data: &'static str,
    /// The canary and the loop can run it (Reflexion trials with rating records).
    pub reflexion: bool,
}

/// One of an environment's own flags.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// The long name (`global-docstore`).
    pub name: &'static str,
    /// Its help.
    pub help: &'static str,
    /// A switch, or a value with its default.
    pub kind: FlagKind,
}

/// How a [`Flag`] is given.
#[derive(Debug, Clone, Copy)]
pub enum FlagKind {
    /// Present or not.
    Switch,
    /// A value (`--workers 2`), with a default when not given.
    Value {
        /// The default, if any.
        default: Option<&'static str>,
    },
}

/// The values of an environment's own flags, by name; a switch that is set has the value
/// `true`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options(pub BTreeMap<String, String>);

impl Options {
    /// The value of `--name`, parsed; `None` when absent. A value that does not parse is an
    /// error naming the flag.
    pub fn get<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, EnvError>
    where
        T::Err: std::fmt::Display,
    {
        self.0
            .get(name)
            .map(|v| {
                v.parse::<T>().map_err(|e| EnvError::Setting {
                    flag: name.to_string(),
                    message: format!("{v}: {e}"),
                })
            })
            .transpose()
    }

    /// `--name`'s value, or `default` when absent.
    pub fn or<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, EnvError>
    where
        T::Err: std::fmt::Display,
    {
        Ok(self.get(name)?.unwrap_or(default))
    }

    /// Whether the switch `--name` is set.
    pub fn switch(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| v == "true")
    }
}

/// What to evaluate: the common settings (each environment reads the ones it takes; `None`
/// is its default) and its own flags.
#[derive(Debug, Clone, Default)]
pub struct EvalPlan {
    /// The output folder (a run there is resumed).
    pub out: PathBuf,
    /// Go on with the settings saved in `out` instead of these.
    pub resume: bool,
    /// The actor model (a manifest name or a GGUF path).
    pub actor: String,
    /// The reflector model, or `actor`.
    pub reflector: String,
    /// The reflector's LoRA adapter as given (a file, or `active`), recorded in the run.
    pub reflector_adapter: Option<String>,
    /// Sample reflections at this temperature (0: greedy).
    pub reflector_temperature: f32,
    /// The reflector's seed.
    pub reflector_seed: u32,
    /// The actor's temperature (0: greedy).
    pub actor_temperature: f32,
    /// The actor's top-p (0 or 1: off).
    pub actor_top_p: f32,
    /// The seed each task's and trial's actor seed derives from.
    pub actor_seed: u32,
    /// The strategy.
    pub strategy: Option<String>,
    /// Trials (or iterations) per task.
    pub trials: Option<u32>,
    /// Reflections kept per task.
    pub memory: Option<usize>,
    /// Step limit of an episode.
    pub max_steps: Option<u32>,
    /// Episodes at once.
    pub parallel: Option<u32>,
    /// Take the first trial from the run in this folder.
    pub first_trial_from: Option<PathBuf>,
    /// Another data file.
    pub data: Option<PathBuf>,
    /// The split.
    pub split: Option<String>,
    /// Only these task ids.
    pub tasks: Vec<String>,
    /// Leave out the first tasks.
    pub skip: usize,
    /// Only the first tasks (after `skip`).
    pub limit: Option<usize>,
    /// The environment's own flags.
    pub options: Options,
}

/// The models an evaluation asks for, before they are loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Needs {
    /// The actor.
    pub actor: String,
    /// The reflector model, when it is not the actor's.
    pub reflector: Option<String>,
    /// The reflector's adapter as given (a file or `active`).
    pub reflector_adapter: Option<String>,
}

impl Needs {
    /// The models of a run whose reflector is `reflector` (`actor`: the actor's own model).
    pub fn new(actor: &str, reflector: &str, reflector_adapter: Option<&str>) -> Self {
        Self {
            actor: actor.into(),
            reflector: (reflector != "actor").then(|| reflector.into()),
            reflector_adapter: reflector_adapter.map(Into::into),
        }
    }

    /// The models a trial run's settings name (actor, reflector, reflector adapter).
    pub fn of(cfg: &retroformer::agent::runner::RunConfig) -> Self {
        Self::new(&cfg.actor, &cfg.reflector, cfg.reflector_adapter.as_deref())
    }
}

/// The loaded models an evaluation runs with, and how to open their sessions.
pub struct Models<'a> {
    /// The actor.
    pub actor: &'a dyn LanguageModel,
    /// The reflector's model (the actor's when it reflects itself).
    pub reflector: &'a dyn LanguageModel,
    /// The reflector's adapter, loaded on `reflector`.
    pub reflector_adapter: Option<AdapterHandle>,
    /// Threads and context of one-at-a-time sessions.
    pub sessions: SessionOptions,
    /// The hardware profile (it bounds batched sessions' context).
    pub profile: &'a TargetProfile,
}

impl Models<'_> {
    /// A session of `model` with `lanes` requests decoded together, each with `lane_tokens` of
    /// context (one lane: the ordinary context).
    pub fn session(
        &self,
        model: &dyn LanguageModel,
        lanes: u32,
        lane_tokens: u32,
    ) -> Result<Box<dyn Session>, LlmError> {
        let context_size = if lanes > 1 && lane_tokens > 0 {
            Some(lane_tokens)
        } else {
            self.sessions.context_size
        };
        model.session(&SessionOptions {
            context_size,
            threads: self.sessions.threads,
            sequences: Some(lanes),
        })
    }

    /// A reflector session ([`Models::session`] of the reflector), with its adapter on. A run
    /// that writes no reflection (`reflects` false: one trial, or a strategy without them)
    /// gets one lane, so that its cache takes no memory from the actor's lanes.
    pub fn reflector_session(
        &self,
        lanes: u32,
        lane_tokens: u32,
        reflects: bool,
    ) -> Result<Box<dyn Session>, LlmError> {
        let (lanes, lane_tokens) = if reflects {
            (lanes, lane_tokens)
        } else {
            (1, 0)
        };
        let mut s = self.session(self.reflector, lanes, lane_tokens)?;
        if let Some(h) = &self.reflector_adapter {
            s.set_adapter(Some((h.clone(), 1.0)))?;
        }
        Ok(s)
    }

    /// Lanes and context per lane for `wanted` lanes of `lane_tokens` (see
    /// [`TargetProfile::lanes`]); one lane when `wanted` is 1. The actor's and the reflector's
    /// sessions get as many lanes each, so together their caches take at most a quarter of
    /// the memory available now.
    pub fn lanes(&self, wanted: u32, lane_tokens: u32) -> (u32, u32) {
        if wanted <= 1 {
            return (1, 0);
        }
        let per_token = self
            .actor
            .kv_bytes_per_token()
            .zip(self.reflector.kv_bytes_per_token())
            .map(|(a, r)| a + r);
        let cells = self
            .profile
            .batch_cells(per_token, retroformer_core::rss::available_bytes());
        self.profile.lanes(wanted, lane_tokens, cells)
    }
}

/// Where an evaluation reports as it goes.
pub trait Progress: Send {
    /// A piece of work starts (one command may run several, one after another): how many
    /// units it has (tasks, or tasks times trials); its count starts at 0.
    fn total(&mut self, n: u64);
    /// One unit is done; `message` says which and how it went.
    fn done(&mut self, message: &str);
    /// A line for the user (what runs, where it goes).
    fn note(&mut self, message: &str);
    /// Whether [`Progress::detail`] is shown (a live view); an environment may run its
    /// episodes one at a time for it.
    fn wants_details(&self) -> bool {
        false
    }
    /// A line of a live view (an action and its observation).
    fn detail(&mut self, _line: &str) {}
}

/// A chart of an evaluation's results, drawn by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// File stem inside the run folder (`success`).
    pub stem: String,
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The lines: label and (x, y) points.
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

/// What an evaluation found.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// The score the canary compares: the success rate after the last trial (pass@1 for
    /// HumanEval); `None` when the environment has no single score.
    pub score: Option<f64>,
    /// Success rate after each trial, where the environment runs trials.
    pub success_by_trial: Vec<f64>,
    /// Tasks evaluated.
    pub tasks: usize,
    /// Lines for the user.
    pub lines: Vec<String>,
    /// A chart to draw into the run folder.
    pub chart: Option<Chart>,
}

/// An evaluation whose plan was checked and whose tasks are loaded.
pub trait Evaluation {
    /// The models it needs.
    fn needs(&self) -> Needs;
    /// Runs (or resumes) it.
    fn run(
        self: Box<Self>,
        models: &Models<'_>,
        progress: &mut dyn Progress,
    ) -> Result<EvalReport, EnvError>;
}

/// One episode of the bench's agent suite.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchEpisode {
    /// The task.
    pub task: String,
    /// Solved.
    pub success: bool,
    /// Model calls.
    pub calls: u32,
    /// Prompt tokens evaluated.
    pub evaluated_tokens: u64,
    /// Prompt tokens taken from the KV cache.
    pub reused_tokens: u64,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Wall time, milliseconds.
    pub wall_ms: f64,
}

/// An environment.
pub trait Environment: Sync {
    /// Its registry name (`hotpotqa`).
    fn name(&self) -> &'static str;
    /// Its settings.
    fn spec(&self) -> Spec;
    /// Its own flags.
    fn flags(&self) -> &'static [Flag] {
        &[]
    }
    /// Checks `plan` and loads its tasks.
    fn prepare(&self, plan: &EvalPlan) -> Result<Box<dyn Evaluation>, EnvError>;
    /// The bench's agent suite: one greedy episode of each of a fixed few tasks, without
    /// reflection (`quick`: fewer, shorter), so that machines and commits compare on the same
    /// work. None by default.
    fn bench(
        &self,
        _model: &dyn LanguageModel,
        _opts: &SessionOptions,
        _quick: bool,
        _progress: &dyn Fn(&str),
    ) -> Result<Vec<BenchEpisode>, EnvError> {
        Ok(Vec::new())
    }
}

/// The environments a build knows.
pub struct Registry {
    envs: Vec<&'static dyn Environment>,
}

impl Registry {
    /// The environments of this crate. A new environment is one line here.
    pub fn builtin() -> Self {
        Self {
            envs: vec![
                &crate::hotpotqa::env::Hotpotqa,
                &crate::household::env::Household,
                #[cfg(unix)]
                &crate::humaneval::env::Humaneval,
                &crate::math::env::GSM8K,
                &crate::math::env::MATH,
                &crate::math::retry_env::Gsm8kRetry,
            ],
        }
    }

    /// This registry with `env` added (tests, and builds with environments of their own).
    pub fn with(mut self, env: &'static dyn Environment) -> Self {
        self.envs.push(env);
        self
    }

    /// Every environment, in order.
    pub fn all(&self) -> &[&'static dyn Environment] {
        &self.envs
    }

    /// The environment called `name`, or an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<&'static dyn Environment, EnvError> {
        self.envs
            .iter()
            .find(|e| e.name() == name)
            .copied()
            .ok_or_else(|| EnvError::Setting {
                flag: "env".into(),
                message: format!(
                    "{name}: known environments are {}",
                    self.envs
                        .iter()
                        .map(|e| e.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }
}
