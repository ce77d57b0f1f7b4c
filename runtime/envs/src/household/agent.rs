//! ReAct on the household world, the way Reflexion runs ALFWorld: two few-shot trajectories of
//! the task's type, the memory of the last reflections ("Your memory for the task below"), then
//! the task; the model writes one `> action` line per call and reads the observation. An
//! episode fails at the step limit (30) or when the same action gets the same observation more
//! than 3 times in a row. Reflections end with `New plan:`.
//!
//! Few-shot trajectories come from ALFWorld's prompt file (bundled,
//! [`crate::data::ALFWORLD_PROMPTS`]; `react_<type>_1` then `react_<type>_0`, as Reflexion does)
//! when it reads; otherwise they are made here, from the world itself: tasks of the training
//! split solved by the planner.

use serde::{Deserialize, Serialize};

use super::{plan, train_split, HouseholdEnv, TaskSpec, TaskType};
use retroformer::agent::reflect::{Failure, Reflection, ReflectionPrompt, Reflector};
use retroformer::agent::runner::{Attempt, RunError, TaskInfo, TaskResult, TrialAgent};
use retroformer::agent::{run_chains, AgentError};
use retroformer_core::trajectory::Step;
use retroformer_llm::{GenerateRequest, Session};

/// Settings of a household episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HouseholdConfig {
    /// Most actions (Reflexion's paper: 30).
    pub max_steps: u32,
    /// The episode fails when one action gets the same observation more than this many times
    /// in a row.
    pub max_repeats: u32,
    /// Tokens per action line.
    pub max_tokens_per_action: u32,
}

impl Default for HouseholdConfig {
    fn default() -> Self {
        Self {
            max_steps: 30,
            max_repeats: 3,
            max_tokens_per_action: 64,
        }
    }
}

/// The line before the examples.
pub const INSTRUCTION: &str = "Interact with a household to solve a task. Here are two examples.\n";

/// ALFWorld's prompt file (`$RETROFORMER_DATA/alfworld/alfworld_3prompts.json`, else the
/// bundled copy), if it reads.
pub fn load_prompt_file() -> Option<serde_json::Map<String, serde_json::Value>> {
    let source = crate::data::Source::resolve(None, &crate::data::ALFWORLD_PROMPTS);
    serde_json::from_str(&source.read_to_string().ok()?).ok()
}

/// Two example trajectories for `task_type`: from the prompt file when given, else made from
/// the world ([`planner_examples`]).
pub fn examples(
    task_type: TaskType,
    prompts: Option<&serde_json::Map<String, serde_json::Value>>,
) -> String {
    let from_file = prompts.and_then(|d| {
        let get = |k: usize| d.get(&format!("react_{}_{k}", task_type.name()))?.as_str();
        Some(format!("{}{}", get(1)?, get(0)?))
    });
    from_file.unwrap_or_else(|| planner_examples(task_type))
}

/// Two trajectories of `task_type` from the training split, solved by the planner, in the
/// prompt file's layout (first observation, then `> action` / observation lines), with a
/// `think:` line that states the plan.
pub fn planner_examples(task_type: TaskType) -> String {
    let mut out = String::new();
    let mut made = 0;
    for spec in train_split(60)
        .into_iter()
        .filter(|s| s.task_type == task_type)
    {
        let mut env = HouseholdEnv::new(&spec);
        let Ok(actions) = plan(&env) else { continue };
        let first = env.reset();
        out.push_str(&first);
        out.push('\n');
        // The plan as a person would state it before looking around: what to do, not where
        // things are (the planner knows that; the model must find out).
        out.push_str(&format!(
            "> think: To solve the task, I need to {}.\nOK.\n",
            plan_sentence(env.task())
        ));
        for a in &actions {
            let obs = env.step(a).observation;
            out.push_str(&format!("> {a}\n{obs}\n"));
        }
        made += 1;
        if made == 2 {
            break;
        }
    }
    out
}

/// The steps of a task in words, as the prompt file's first `think:` states them.
pub fn plan_sentence(task: &crate::household::Task) -> String {
    let (o, r) = (&task.object, &task.target);
    match task.task_type {
        TaskType::Put => format!("find and take a {o}, then put it in/on {r}"),
        TaskType::Clean => format!("find and take a {o}, then clean it with sinkbasin, then put it in/on {r}"),
        TaskType::Heat => format!("find and take a {o}, then heat it with microwave, then put it in/on {r}"),
        TaskType::Cool => format!("find and take a {o}, then cool it with fridge, then put it in/on {r}"),
        TaskType::Examine => format!("find and take a {o}, then find and use a {r}"),
        TaskType::PutTwo => format!(
            "find and take the first {o}, then put it in/on {r}, then find and take the second {o}, then put it in/on {r}"
        ),
    }
}

/// The memory block Reflexion puts before the task.
pub fn memory_text(reflections: &[String]) -> String {
    if reflections.is_empty() {
        return String::new();
    }
    let mut s = String::from("Your memory for the task below:\n");
    for (i, r) in reflections.iter().enumerate() {
        s.push_str(&format!("Trial {i}:\n{}\n", r.trim()));
    }
    s
}

/// How an episode ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HouseholdOutcome {
    /// The goal was reached.
    pub success: bool,
    /// Why it stopped when it failed: `steps` (the limit) or `repeated` (the same action and
    /// observation more than `max_repeats` times in a row).
    pub stopped: Option<String>,
    /// The actions with their observations and token counts.
    pub steps: Vec<Step>,
    /// The task as the model saw it: first observation, then `> action` / observation lines.
    pub scratchpad: String,
}

/// An episode as the trial runner's attempt: return 1 when solved, else 0 and halted.
impl From<HouseholdOutcome> for Attempt {
    fn from(out: HouseholdOutcome) -> Self {
        Attempt {
            answer: None,
            success: out.success,
            halted: !out.success,
            episode_return: if out.success { 1.0 } else { 0.0 },
            steps: out.steps,
            scratchpad: out.scratchpad,
        }
    }
}

/// Run one episode: `env` from reset, one model call per action.
pub fn run_episode(
    session: &mut dyn Session,
    env: &mut HouseholdEnv,
    examples: &str,
    memory: &[String],
    cfg: &HouseholdConfig,
) -> Result<HouseholdOutcome, AgentError> {
    run_episode_observed(session, env, examples, memory, cfg, &mut |_, _| {})
}

/// [`run_episode`], calling `observe(action, observation)` after every step (live views).
pub fn run_episode_observed(
    session: &mut dyn Session,
    env: &mut HouseholdEnv,
    examples: &str,
    memory: &[String],
    cfg: &HouseholdConfig,
    observe: &mut dyn FnMut(&str, &str),
) -> Result<HouseholdOutcome, AgentError> {
    let mut run = EpisodeRun::start(env, examples, memory);
    while let Some(req) = run.request(cfg) {
        let g = session.generate(&req, &mut |_| true)?;
        run.absorb(env, &g, cfg, observe);
    }
    Ok(run.finish(env))
}

/// One episode as a state machine: the request for the next action, then the model's reply.
/// [`run_episode_observed`] drives one with a session; [`HouseholdAgent`] drives many at once
/// through [`Session::generate_stream`].
pub struct EpisodeRun {
    prefix: String,
    scratchpad: String,
    steps: Vec<Step>,
    last: Option<(String, String)>,
    repeats: u32,
    stopped: Option<String>,
    over: bool,
}

impl EpisodeRun {
    /// Resets `env` and builds the prompt prefix (instruction, examples, memory).
    pub fn start(env: &mut HouseholdEnv, examples: &str, memory: &[String]) -> Self {
        let first = env.reset();
        Self {
            prefix: format!(
                "{INSTRUCTION}{examples}\n{}Here is the task:\n",
                memory_text(memory)
            ),
            scratchpad: format!("{first}\n"),
            steps: Vec::new(),
            last: None,
            repeats: 0,
            stopped: Some("steps".to_string()),
            over: false,
        }
    }

    /// The request for the next action, or `None` once the episode is over.
    pub fn request(&self, cfg: &HouseholdConfig) -> Option<GenerateRequest> {
        if self.over || self.steps.len() >= cfg.max_steps as usize {
            return None;
        }
        let mut req = GenerateRequest::new(
            format!("{}{}>", self.prefix, self.scratchpad),
            cfg.max_tokens_per_action,
        )
        .stop("\n");
        req.parse_special = false;
        Some(req)
    }

    /// Takes the model's reply: acts in `env`, and ends the episode on success or on the
    /// repetition limit.
    pub fn absorb(
        &mut self,
        env: &mut HouseholdEnv,
        g: &retroformer_llm::Generation,
        cfg: &HouseholdConfig,
        observe: &mut dyn FnMut(&str, &str),
    ) {
        let action = g.text.trim().trim_start_matches('>').trim().to_string();
        let result = env.step(&action);
        observe(&action, &result.observation);
        self.scratchpad
            .push_str(&format!("> {action}\n{}\n", result.observation));
        self.steps.push(Step {
            thought: String::new(),
            action: action.clone(),
            observation: result.observation.clone(),
            reused_tokens: g.stats.reused_tokens,
            evaluated_tokens: g.stats.evaluated_tokens,
            generated_tokens: g.stats.generated_tokens,
        });
        if env.is_success() {
            self.stopped = None;
            self.over = true;
            return;
        }
        let now = (action, result.observation);
        if self.last.as_ref() == Some(&now) {
            self.repeats += 1;
        } else {
            self.repeats = 1;
        }
        self.last = Some(now);
        if self.repeats > cfg.max_repeats {
            self.stopped = Some("repeated".into());
            self.over = true;
        }
    }

    /// How it ended.
    pub fn finish(self, env: &HouseholdEnv) -> HouseholdOutcome {
        HouseholdOutcome {
            success: env.is_success(),
            stopped: self.stopped,
            steps: self.steps,
            scratchpad: self.scratchpad,
        }
    }
}

/// Our reflection example (in the format of Reflexion's ALFWorld examples: a failed trajectory,
/// `STATUS: FAIL`, then `New plan:`).
pub const REFLECTION_EXAMPLE: &str = "You are in the middle of a room. Looking quickly around you, you see a cabinet 2, a cabinet 1, a countertop 1, a fridge 1, a microwave 1, and a sinkbasin 1.\nYour task is to: put a hot egg in fridge.\n> go to fridge 1\nThe fridge 1 is closed.\n> open fridge 1\nYou open the fridge 1. The fridge 1 is open. In it, you see a egg 1.\n> take egg 1 from fridge 1\nYou pick up the egg 1 from the fridge 1.\n> put egg 1 in/on fridge 1\nYou put the egg 1 in/on the fridge 1.\n\nSTATUS: FAIL\nNew plan: I put the egg back in the fridge without heating it. The egg had to be hot first. Next time I will take the egg 1, go to microwave 1, heat egg 1 with microwave 1, then go to fridge 1 and put the egg in it.\n";

/// The reflection prompt: the example, the failed trajectory, `STATUS: FAIL`, the plans of
/// earlier trials if any, then `New plan:`.
pub fn reflection_prompt(scratchpad: &str, past_plans: &[String]) -> String {
    let mut s = format!(
        "{REFLECTION_EXAMPLE}\n\n{}\nSTATUS: FAIL\n",
        scratchpad.trim_end()
    );
    if !past_plans.is_empty() {
        s.push_str("Plans from past attempts:\n");
        for (i, p) in past_plans.iter().enumerate() {
            s.push_str(&format!("Trial #{i}: {}\n", p.trim()));
        }
    }
    s.push_str("New plan:");
    s
}

/// The household's [`ReflectionPrompt`]: the failed trajectory, the plans of earlier trials,
/// `New plan:`; a plan is one line.
pub struct HouseholdReflection;

impl ReflectionPrompt for HouseholdReflection {
    fn prompt(&self, failure: &Failure<'_>) -> String {
        reflection_prompt(failure.trajectory, failure.earlier)
    }

    fn stops(&self) -> &[&str] {
        &["\n"]
    }
}

/// Called with (action, observation) after every step.
pub type StepObserver<'a> = Box<dyn FnMut(&str, &str) + 'a>;

/// The household environment as a [`TrialAgent`] for the trial runner: one episode per attempt,
/// with the last `memory` reflections of the task in the prompt, and a `New plan:` reflection
/// after a failure (written by the reflector, asked with [`HouseholdReflection`]).
pub struct HouseholdAgent<'a> {
    specs: &'a [TaskSpec],
    session: &'a mut dyn Session,
    reflector: &'a mut dyn Reflector,
    prompts: Option<serde_json::Map<String, serde_json::Value>>,
    examples: std::collections::HashMap<TaskType, String>,
    cfg: HouseholdConfig,
    memory: usize,
    observe: Option<StepObserver<'a>>,
    parallel: usize,
}

/// Tokens of a household reflection.
pub const REFLECTION_TOKENS: u32 = 160;

impl<'a> HouseholdAgent<'a> {
    /// An agent over `specs`; `reflector` writes the reflections (an
    /// [`LlmReflector`](retroformer::agent::reflect::LlmReflector) asked with
    /// [`HouseholdReflection`]: the actor's model in a session of its own, or another model).
    pub fn new(
        specs: &'a [TaskSpec],
        session: &'a mut dyn Session,
        reflector: &'a mut dyn Reflector,
        cfg: HouseholdConfig,
        memory: usize,
    ) -> Self {
        Self {
            specs,
            session,
            reflector,
            prompts: load_prompt_file(),
            examples: Default::default(),
            cfg,
            memory,
            observe: None,
            parallel: 1,
        }
    }

    /// Run up to `n` episodes at once through the session's continuous batching (open the
    /// session with `sequences` = n); 1 runs them one after another.
    pub fn parallel(mut self, n: usize) -> Self {
        self.parallel = n.max(1);
        self
    }

    /// Call `f(action, observation)` after every step of every episode (a live view).
    pub fn on_step(mut self, f: impl FnMut(&str, &str) + 'a) -> Self {
        self.observe = Some(Box::new(f));
        self
    }

    /// Use these example trajectories for every task type instead of the prompt file's (tests,
    /// or a fixed prompt).
    pub fn with_examples(mut self, examples: &str) -> Self {
        for t in TaskType::ALL {
            self.examples.insert(t, examples.to_string());
        }
        self
    }

    /// The runner's view of the tasks.
    pub fn tasks(specs: &[TaskSpec]) -> Vec<TaskInfo> {
        specs
            .iter()
            .map(|s| TaskInfo {
                id: s.id(),
                question: HouseholdEnv::new(s).task_text().to_string(),
                gold: String::new(),
            })
            .collect()
    }

    fn plans(&self, earlier: &[TaskResult]) -> Vec<String> {
        let all: Vec<String> = earlier
            .iter()
            .filter_map(|r| r.reflection.as_ref().map(|x| x.text.clone()))
            .collect();
        all[all.len().saturating_sub(self.memory)..].to_vec()
    }
}

impl HouseholdAgent<'_> {
    /// The prompt examples of task `i`'s type.
    fn examples_for(&mut self, i: usize) -> String {
        let t = self.specs[i].task_type;
        let prompts = self.prompts.as_ref();
        self.examples
            .entry(t)
            .or_insert_with(|| examples(t, prompts))
            .clone()
    }
}

impl TrialAgent for HouseholdAgent<'_> {
    fn parallelism(&self) -> usize {
        // A live view shows one episode's steps at a time.
        if self.observe.is_some() {
            1
        } else {
            self.parallel
        }
    }

    fn attempt_many(
        &mut self,
        tasks: &[(usize, &[TaskResult])],
        trial: u32,
    ) -> Result<Vec<Attempt>, RunError> {
        if self.parallelism() <= 1 || tasks.len() <= 1 {
            return tasks
                .iter()
                .map(|(i, earlier)| self.attempt(*i, earlier, trial))
                .collect();
        }
        // Every episode is a chain of requests: each action's reply asks for the next one,
        // which extends the same prompt (so it continues in the same lane, on its KV).
        let mut envs = Vec::with_capacity(tasks.len());
        let mut runs = Vec::with_capacity(tasks.len());
        for (i, earlier) in tasks {
            let examples = self.examples_for(*i);
            let memory = self.plans(earlier);
            let mut env = HouseholdEnv::new(&self.specs[*i]);
            runs.push(EpisodeRun::start(&mut env, &examples, &memory));
            envs.push(env);
        }
        let cfg = self.cfg.clone();
        run_chains::<AgentError>(&mut *self.session, runs.len(), |k, g| {
            if let Some(g) = g {
                runs[k].absorb(&mut envs[k], &g, &cfg, &mut |_, _| {});
            }
            Ok(runs[k].request(&cfg))
        })?;
        Ok(runs
            .into_iter()
            .zip(&envs)
            .map(|(r, env)| r.finish(env).into())
            .collect())
    }

    fn reflect_many(
        &mut self,
        failed: &[(usize, &Attempt, &[TaskResult])],
    ) -> Result<Vec<Reflection>, RunError> {
        let plans: Vec<Vec<String>> = failed.iter().map(|(_, _, e)| self.plans(e)).collect();
        let goals: Vec<String> = failed
            .iter()
            .map(|(i, _, _)| HouseholdEnv::new(&self.specs[*i]).task_text().to_string())
            .collect();
        let failures: Vec<Failure<'_>> = failed
            .iter()
            .zip(plans.iter().zip(&goals))
            .map(|((_, a, _), (plans, goal))| Failure {
                task: goal,
                trajectory: &a.scratchpad,
                episode_return: a.episode_return,
                earlier: plans,
            })
            .collect();
        Ok(self.reflector.reflect_many(&failures)?)
    }

    fn attempt(
        &mut self,
        i: usize,
        earlier: &[TaskResult],
        _trial: u32,
    ) -> Result<Attempt, RunError> {
        let examples = self.examples_for(i);
        let mut env = HouseholdEnv::new(&self.specs[i]);
        let memory = self.plans(earlier);
        let mut none = |_: &str, _: &str| {};
        let observe: &mut dyn FnMut(&str, &str) = match self.observe.as_mut() {
            Some(f) => f.as_mut(),
            None => &mut none,
        };
        let out = run_episode_observed(
            &mut *self.session,
            &mut env,
            &examples,
            &memory,
            &self.cfg,
            observe,
        )?;
        Ok(out.into())
    }

    fn reflect(
        &mut self,
        i: usize,
        attempt: &Attempt,
        earlier: &[TaskResult],
    ) -> Result<Reflection, RunError> {
        let mut one = self.reflect_many(&[(i, attempt, earlier)])?;
        Ok(one.pop().expect("one reflection per failure"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::household::{eval_split, TaskSpec};
    use retroformer::agent::reflect::LlmReflector;
    use retroformer_llm::scripted::ScriptedModel;
    use retroformer_llm::{LanguageModel, SessionOptions};

    fn spec(t: TaskType) -> TaskSpec {
        eval_split().into_iter().find(|s| s.task_type == t).unwrap()
    }

    #[test]
    fn a_scripted_model_that_follows_the_plan_solves_the_task() {
        let s = spec(TaskType::Heat);
        let mut env = HouseholdEnv::new(&s);
        let actions = plan(&env).unwrap();
        let mut replies = vec![" think: I need a hot one.".to_string()];
        replies.extend(actions.iter().map(|a| format!(" {a}\n> more")));
        let model = ScriptedModel::new(replies);
        let mut session = model.session(&SessionOptions::default()).unwrap();
        let ex = planner_examples(TaskType::Heat);
        let out = run_episode(
            session.as_mut(),
            &mut env,
            &ex,
            &["I forgot to heat it.".into()],
            &HouseholdConfig::default(),
        )
        .unwrap();
        assert!(out.success, "{}", out.scratchpad);
        assert_eq!(out.stopped, None);
        assert_eq!(out.steps.len(), actions.len() + 1);
        assert_eq!(out.steps[0].observation, "OK.");
        let reqs = model.requests();
        assert!(reqs[0].prompt.starts_with(INSTRUCTION));
        assert!(reqs[0].prompt.contains(
            "Your memory for the task below:\nTrial 0:\nI forgot to heat it.\nHere is the task:\n"
        ));
        assert!(reqs[0]
            .prompt
            .ends_with(&format!("{}\n>", env.intro().trim_end())));
        // Each call sees the previous action and its observation.
        assert!(reqs[1]
            .prompt
            .ends_with("> think: I need a hot one.\nOK.\n>"));
    }

    #[test]
    fn the_same_action_with_the_same_result_four_times_fails_the_episode() {
        let mut env = HouseholdEnv::new(&spec(TaskType::Put));
        let model = ScriptedModel::new(vec!["look"; 10]);
        let mut session = model.session(&SessionOptions::default()).unwrap();
        let out = run_episode(
            session.as_mut(),
            &mut env,
            "",
            &[],
            &HouseholdConfig::default(),
        )
        .unwrap();
        assert!(!out.success);
        assert_eq!(out.stopped.as_deref(), Some("repeated"));
        assert_eq!(out.steps.len(), 4);
    }

    #[test]
    fn the_step_limit_ends_an_episode() {
        let mut env = HouseholdEnv::new(&spec(TaskType::Put));
        let model = ScriptedModel::new((0..40).map(|i| format!("think: step {i}")));
        let mut session = model.session(&SessionOptions::default()).unwrap();
        let cfg = HouseholdConfig {
            max_steps: 5,
            ..HouseholdConfig::default()
        };
        let out = run_episode(session.as_mut(), &mut env, "", &[], &cfg).unwrap();
        assert_eq!(out.steps.len(), 5);
        assert_eq!(out.stopped.as_deref(), Some("steps"));
    }

    /// Sampled reflections (a collection's second and later samples).
    fn sampled() -> retroformer_llm::SamplingParams {
        retroformer_llm::SamplingParams {
            temperature: 0.8,
            seed: 2,
            ..Default::default()
        }
    }

    /// Household Reflexion over two trials, memory 3, with a scripted actor.
    fn two_trial_reflexion() -> retroformer::agent::runner::RunConfig {
        retroformer::agent::runner::RunConfig {
            agent: "household".into(),
            trials: 2,
            strategy: "reflexion".into(),
            memory: 3,
            max_steps: 30,
            actor: "scripted".into(),
            reflector: "actor".into(),
            reflector_adapter: None,
            reflector_temperature: 0.0,
            reflector_seed: 0,
            env: Default::default(),
            ..Default::default()
        }
    }

    #[test]
    fn a_two_trial_reflexion_run_reflects_after_a_failure_and_uses_the_plan_next_trial() {
        use retroformer::agent::runner::run_trials;
        let specs = vec![spec(TaskType::Put)];
        let plan_actions = plan(&HouseholdEnv::new(&specs[0])).unwrap();
        // Trial 1: looks four times (repeated: failure); reflection; trial 2 follows the plan.
        let mut actor_replies: Vec<String> = vec!["look".into(); 4];
        actor_replies.extend(plan_actions.iter().cloned());
        let actor = ScriptedModel::new(actor_replies);
        let refl = ScriptedModel::new([
            " I only looked around. Next time I will search the receptacles.\nmore",
        ]);
        let mut s1 = actor.session(&SessionOptions::default()).unwrap();
        let s2 = refl.session(&SessionOptions::default()).unwrap();
        let mut reflector = LlmReflector::new(s2, Box::new(HouseholdReflection), REFLECTION_TOKENS);
        let mut agent = HouseholdAgent::new(
            &specs,
            s1.as_mut(),
            &mut reflector,
            HouseholdConfig::default(),
            3,
        )
        .with_examples("EXAMPLES\n");
        let cfg = two_trial_reflexion();
        let dir = tempfile::tempdir().unwrap();
        let tasks = HouseholdAgent::tasks(&specs);
        let sums = run_trials(&tasks, &mut agent, &cfg, dir.path(), &mut |_| {}).unwrap();
        assert_eq!((sums[0].solved_total, sums[1].solved_total), (0, 1));
        let reqs = actor.requests();
        assert!(reqs[4].prompt.contains(
            "Your memory for the task below:\nTrial 0:\nI only looked around. Next time I will search the receptacles.\nHere is the task:"
        ));
        assert!(refl.requests()[0]
            .prompt
            .ends_with("STATUS: FAIL\nNew plan:"));
        assert_eq!(
            refl.requests()[0].sampling,
            retroformer_llm::SamplingParams::default()
        );
        let records = std::fs::read_to_string(dir.path().join("records.jsonl")).unwrap();
        assert_eq!(records.lines().count(), 1);
        assert!(records.contains("\"rating\":1.0"), "{records}");
    }

    #[test]
    fn episodes_run_together_through_a_stream_give_each_task_its_own_steps_and_reflection() {
        use retroformer::agent::runner::run_trials;
        let specs = vec![spec(TaskType::Put), spec(TaskType::Heat)];
        let put = plan(&HouseholdEnv::new(&specs[0])).unwrap();
        let heat = plan(&HouseholdEnv::new(&specs[1])).unwrap();
        // The scripted session streams one request at a time, follow-ups first: the put
        // episode runs to its end, then the heat episode looks four times and fails; in trial 2
        // only the heat task is open again and follows its plan.
        let mut replies: Vec<String> = put.clone();
        replies.extend(vec!["look".to_string(); 4]);
        replies.extend(heat.iter().cloned());
        let actor = ScriptedModel::new(replies);
        let refl = ScriptedModel::new([" Heat the egg first.\nmore"]);
        let mut s1 = actor.session(&SessionOptions::default()).unwrap();
        let s2 = refl.session(&SessionOptions::default()).unwrap();
        let mut reflector = LlmReflector::new(s2, Box::new(HouseholdReflection), REFLECTION_TOKENS)
            .with_sampling(sampled());
        let mut agent = HouseholdAgent::new(
            &specs,
            s1.as_mut(),
            &mut reflector,
            HouseholdConfig::default(),
            3,
        )
        .with_examples("EXAMPLES\n")
        .parallel(2);
        let cfg = two_trial_reflexion();
        let dir = tempfile::tempdir().unwrap();
        let tasks = HouseholdAgent::tasks(&specs);
        let sums = run_trials(&tasks, &mut agent, &cfg, dir.path(), &mut |_| {}).unwrap();
        assert_eq!((sums[0].solved_total, sums[1].solved_total), (1, 2));
        assert_eq!(actor.remaining(), 0);
        let first: retroformer::agent::runner::TaskResult = retroformer::agent::files::read_json(
            &retroformer::agent::runner::task_path(dir.path(), 0, &tasks[1].id),
        )
        .unwrap()
        .unwrap();
        assert!(!first.success);
        assert_eq!(first.steps.len(), 4);
        assert_eq!(
            first.reflection.as_ref().map(|r| r.text.as_str()),
            Some("Heat the egg first.")
        );
        assert_eq!(refl.requests()[0].sampling, sampled());
        // Trial 2's heat episode has the reflection in its memory; the put task is not retried.
        let reqs = actor.requests();
        let last = &reqs[put.len() + 4];
        assert!(last
            .prompt
            .contains("Trial 0:\nHeat the egg first.\nHere is the task:"));
        assert!(last.prompt.contains(&tasks[1].question));
        let records = std::fs::read_to_string(dir.path().join("records.jsonl")).unwrap();
        assert_eq!(records.lines().count(), 1);
        assert!(records.contains("\"rating\":1.0"), "{records}");
    }

    #[test]
    fn planner_examples_are_two_solved_trajectories_of_the_type() {
        for t in TaskType::ALL {
            let ex = planner_examples(t);
            assert_eq!(ex.matches("Your task is to:").count(), 2, "{t:?}: {ex}");
            assert!(ex.contains("> think: To solve the task"));
        }
    }

    #[test]
    fn the_reflection_prompt_ends_with_new_plan_and_lists_past_plans() {
        let p = reflection_prompt(
            "Your task is to: x.\n> look\nNothing.",
            &["a".into(), "b".into()],
        );
        assert!(p.ends_with(
            "STATUS: FAIL\nPlans from past attempts:\nTrial #0: a\nTrial #1: b\nNew plan:"
        ));
        assert!(p.starts_with(REFLECTION_EXAMPLE));
    }
}
