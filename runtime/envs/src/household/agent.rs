//! ReAct on the household world as the trial runner's agent, the way Reflexion runs ALFWorld:
//! each attempt is an episode ([`super::episode`]: two few-shot trajectories of the task's type,
//! the memory of the last reflections, the newest one also as the episode's first thought,
//! replies constrained to the admissible actions), sampled as the run says
//! ([`RunConfig::actor_sampling`]: a seed per task and trial, the step added); each failure
//! gets a reflection ending in a new plan ([`super::reflect`]: Reflexion's prompt).
//!
//! Few-shot trajectories come from ALFWorld's prompt file (bundled,
//! [`crate::data::ALFWORLD_PROMPTS`]; `react_<type>_1` then `react_<type>_0`, as Reflexion does)
//! when it reads; otherwise they are made here, from the world itself: tasks of the training
//! split solved by the planner.

use super::{plan, train_split, HouseholdEnv, TaskSpec, TaskType};
use retroformer::agent::reflect::{Failure, Reflection, Reflector};
use retroformer::agent::run_chains;
use retroformer::agent::runner::{
    attempt_each, Attempt, AttemptDone, RunConfig, RunError, TaskInfo, TaskResult, TrialAgent,
};
use retroformer_llm::{SamplingParams, Session};

pub use super::episode::{
    memory_text, run_episode, run_episode_observed, EpisodeRun, HouseholdConfig, HouseholdOutcome,
    INSTRUCTION,
};
pub use super::reflect::{HouseholdReflection, REFLECTION_TOKENS};

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
    /// The run's settings, for the actor's sampling; `None`: greedy.
    run: Option<RunConfig>,
}

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
            run: None,
        }
    }

    /// Sample the actor as `run` says ([`RunConfig::actor_sampling`]: greedy at temperature
    /// 0, else a seed of each task and trial), every step of an episode with the step added to
    /// the seed. Without it the actor is greedy.
    pub fn sampled_as(mut self, run: &RunConfig) -> Self {
        self.run = Some(run.clone());
        self
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

    /// How the actor samples task `i`'s episode in `trial`.
    fn sampling(&self, i: usize, trial: u32) -> SamplingParams {
        self.run.as_ref().map_or_else(SamplingParams::greedy, |r| {
            r.actor_sampling(&self.specs[i].id(), trial)
        })
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

    fn attempt_stream(
        &mut self,
        tasks: &[(usize, &[TaskResult])],
        trial: u32,
        done: &mut AttemptDone<'_>,
    ) -> Result<(), RunError> {
        if self.parallelism() <= 1 || tasks.len() <= 1 {
            return attempt_each(self, tasks, trial, done);
        }
        // Every episode is a chain of requests: each action's reply asks for the next one,
        // which extends the same prompt (so it continues in the same lane, on its KV). An
        // episode is saved as soon as it ends.
        let mut envs = Vec::with_capacity(tasks.len());
        let mut runs = Vec::with_capacity(tasks.len());
        for (i, earlier) in tasks {
            let examples = self.examples_for(*i);
            let memory = self.plans(earlier);
            let mut env = HouseholdEnv::new(&self.specs[*i]);
            let sampling = self.sampling(*i, trial);
            runs.push(Some(EpisodeRun::start(
                &mut env, &examples, &memory, sampling,
            )));
            envs.push(env);
        }
        let cfg = self.cfg.clone();
        run_chains::<RunError>(&mut *self.session, runs.len(), |k, g| {
            let run = runs[k]
                .as_mut()
                .expect("a chain asks nothing after its end");
            if let Some(g) = g {
                run.answer(&mut envs[k], g, &cfg, &mut |_, _| {})?;
            }
            let next = run.request(&envs[k], &cfg);
            if next.is_none() {
                let run = runs[k].take().expect("the chain's run");
                done(k, run.finish(&envs[k]).into())?;
            }
            Ok(next)
        })
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
        trial: u32,
    ) -> Result<Attempt, RunError> {
        let examples = self.examples_for(i);
        let mut env = HouseholdEnv::new(&self.specs[i]);
        let memory = self.plans(earlier);
        let sampling = self.sampling(i, trial);
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
            &sampling,
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
    use retroformer::agent::reflect::{ChatFrame, LlmReflector};
    use retroformer_llm::scripted::ScriptedModel;
    use retroformer_llm::{LanguageModel, SessionOptions};

    fn spec(t: TaskType) -> TaskSpec {
        eval_split().into_iter().find(|s| s.task_type == t).unwrap()
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
            " I only looked around. Next time I will search the receptacles.\n\nmore",
        ]);
        let mut s1 = actor.session(&SessionOptions::default()).unwrap();
        let s2 = refl.session(&SessionOptions::default()).unwrap();
        let mut reflector = LlmReflector::new(
            s2,
            Box::new(HouseholdReflection::new(ChatFrame::default())),
            REFLECTION_TOKENS,
        );
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
        // The plan is also the episode's first thought.
        assert!(reqs[4].prompt.ends_with(
            "\n> think: I only looked around. Next time I will search the receptacles.\nOK.\n>"
        ));
        assert!(refl.requests()[0]
            .prompt
            .ends_with("> look\nYou are in the middle of a room. Looking quickly around you, you see nothing.\n\nSTATUS: FAIL\n\nNew plan:"));
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
        let refl = ScriptedModel::new([" Heat the mug first.\n> go to"]);
        let mut s1 = actor.session(&SessionOptions::default()).unwrap();
        let s2 = refl.session(&SessionOptions::default()).unwrap();
        let mut reflector = LlmReflector::new(
            s2,
            Box::new(HouseholdReflection::new(ChatFrame::default())),
            REFLECTION_TOKENS,
        )
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
            Some("Heat the mug first.")
        );
        assert_eq!(refl.requests()[0].sampling, sampled());
        // Trial 2's heat episode has the reflection in its memory; the put task is not retried.
        let reqs = actor.requests();
        let last = &reqs[put.len() + 4];
        assert!(last
            .prompt
            .contains("Trial 0:\nHeat the mug first.\nHere is the task:"));
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
    fn a_sampled_run_asks_each_step_with_its_task_and_trials_seed_plus_the_step() {
        use retroformer::agent::runner::run_trials;
        let specs = vec![spec(TaskType::Put)];
        let actor = ScriptedModel::new(vec!["look".to_string(); 8]);
        let refl = ScriptedModel::new([" Search the shelves."]);
        let mut s1 = actor.session(&SessionOptions::default()).unwrap();
        let s2 = refl.session(&SessionOptions::default()).unwrap();
        let mut reflector = LlmReflector::new(
            s2,
            Box::new(HouseholdReflection::new(ChatFrame::default())),
            REFLECTION_TOKENS,
        );
        let cfg = retroformer::agent::runner::RunConfig {
            actor_temperature: 0.7,
            actor_top_p: 0.9,
            actor_seed: 11,
            ..two_trial_reflexion()
        };
        let mut agent = HouseholdAgent::new(
            &specs,
            s1.as_mut(),
            &mut reflector,
            HouseholdConfig::default(),
            3,
        )
        .with_examples("EXAMPLES\n")
        .sampled_as(&cfg);
        let dir = tempfile::tempdir().unwrap();
        let tasks = HouseholdAgent::tasks(&specs);
        run_trials(&tasks, &mut agent, &cfg, dir.path(), &mut |_| {}).unwrap();
        let reqs = actor.requests();
        assert_eq!(reqs.len(), 8, "two trials of four looks");
        for (trial, episode) in reqs.chunks(4).enumerate() {
            let want = cfg.actor_sampling(&tasks[0].id, trial as u32);
            assert!(want.temperature == 0.7 && want.top_p == 0.9);
            for (step, q) in episode.iter().enumerate() {
                let mut s = want.clone();
                s.seed = want.seed.wrapping_add(step as u32);
                assert_eq!(q.sampling, s, "trial {trial} step {step}");
            }
        }
        assert_ne!(reqs[0].sampling.seed, reqs[4].sampling.seed);
    }
}
