//! One household episode, the way Reflexion runs ALFWorld: the instruction, two few-shot
//! trajectories of the task's type, the memory of the last reflections ("Your memory for the
//! task below"), then the task; the model writes one `> action` line per call and reads the
//! observation.
//!
//! What a small actor needs on top of that:
//! * **Constrained replies.** Each call's reply is constrained by a grammar
//!   ([`super::grammar`]) to the actions the world accepts in the current state, or a bounded
//!   `think:` (off with [`HouseholdConfig::constrained`] = false).
//! * **The plan where the actor reads it.** The task's newest reflection is also the
//!   episode's first line, `> think: PLAN` / `OK.`, as if the actor had thought it.
//! * **Thinks capped.** At most [`HouseholdConfig::max_thinks_in_a_row`] `think:` lines in a
//!   row (the plan line counts) and [`HouseholdConfig::max_thinks`] in an episode: the
//!   grammar then leaves `think:` out, and a think that comes anyway gets `Nothing happens.`
//! * **Loops end the episode.** The same action with the same observation more than
//!   `max_repeats` times in a row (`repeated`), or a block of 2 or 3 steps gone through
//!   `max_cycles` times in a row (`cycle`: A B A B A B, A B C A B C A B C); thoughts in
//!   between do not count (they change nothing in the world).
//! * **Sampling.** Each call samples with the episode's parameters, the step's index added to
//!   the seed (greedy stays greedy).

use serde::{Deserialize, Serialize};

use super::grammar::actions_grammar;
use super::{HouseholdEnv, NOTHING_HAPPENS, THINK_OK};
use retroformer::agent::runner::Attempt;
use retroformer::agent::AgentError;
use retroformer_core::records::Segment;
use retroformer_core::trajectory::Step;
use retroformer_llm::{GenerateRequest, Generation, LlmError, SamplingParams, Session};

/// Settings of a household episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HouseholdConfig {
    /// Most actions (Reflexion's paper: 30).
    pub max_steps: u32,
    /// The episode fails when one action gets the same observation more than this many times
    /// in a row.
    pub max_repeats: u32,
    /// The episode fails when the last 2 or 3 steps (actions with their observations) have
    /// come this many times in a row.
    #[serde(default = "default_max_cycles")]
    pub max_cycles: u32,
    /// Most `think:` lines in a row. 2: every ReAct ALFWorld example has at most 2 in a row.
    #[serde(default = "default_max_thinks_in_a_row")]
    pub max_thinks_in_a_row: u32,
    /// Most `think:` steps in an episode. 8: the ReAct ALFWorld examples have 4 to 7.
    #[serde(default = "default_max_thinks")]
    pub max_thinks: u32,
    /// Tokens per action line.
    pub max_tokens_per_action: u32,
    /// Constrain each reply to the admissible actions and a bounded `think:` (a grammar).
    #[serde(default = "yes")]
    pub constrained: bool,
}

fn default_max_cycles() -> u32 {
    3
}
fn default_max_thinks_in_a_row() -> u32 {
    2
}
fn default_max_thinks() -> u32 {
    8
}
fn yes() -> bool {
    true
}

impl Default for HouseholdConfig {
    fn default() -> Self {
        Self {
            max_steps: 30,
            max_repeats: 3,
            max_cycles: default_max_cycles(),
            max_thinks_in_a_row: default_max_thinks_in_a_row(),
            max_thinks: default_max_thinks(),
            max_tokens_per_action: 64,
            constrained: true,
        }
    }
}

/// The line before the examples.
pub const INSTRUCTION: &str = "Interact with a household to solve a task. Here are two examples.\n";

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

/// The first line of an episode with a plan: `> think: PLAN` (the plan on one line), `OK.`
/// `None` for an empty plan.
pub fn plan_line(plan: &str) -> Option<String> {
    let one = plan.split_whitespace().collect::<Vec<_>>().join(" ");
    (!one.is_empty()).then(|| format!("> think: {one}\n{THINK_OK}\n"))
}

/// What every request of an episode starts with: the instruction, the examples, the memory
/// and `Here is the task:`.
pub fn prompt_prefix(examples: &str, memory: &[String]) -> String {
    format!(
        "{INSTRUCTION}{examples}\n{}Here is the task:\n",
        memory_text(memory)
    )
}

/// An episode as a training example's segments: the first request's prompt (`prefix`, the
/// scratchpad's start, `>`), then each action as the model wrote it (` action` and the newline
/// the grammar ends it with: the loss) and its observation up to the next `>` (no loss); the
/// last observation is left out. Each request of the episode is a prefix of the segments'
/// text. `None` when the scratchpad does not end with the steps (an outcome edited by hand).
pub fn episode_segments(prefix: &str, out: &HouseholdOutcome) -> Option<Vec<Segment>> {
    let steps: String = out
        .steps
        .iter()
        .map(|s| format!("> {}\n{}\n", s.action, s.observation))
        .collect();
    let head = out.scratchpad.strip_suffix(&steps)?;
    let seg = |text: String, loss: bool| Segment { text, loss };
    let mut segments = vec![seg(format!("{prefix}{head}>"), false)];
    for (i, s) in out.steps.iter().enumerate() {
        segments.push(seg(format!(" {}\n", s.action), true));
        if i + 1 < out.steps.len() {
            segments.push(seg(format!("{}\n>", s.observation), false));
        }
    }
    Some(segments)
}

/// The sampling of an episode's step `step`: the episode's, with the step added to the seed
/// (greedy stays greedy).
pub fn step_sampling(episode: &SamplingParams, step: u32) -> SamplingParams {
    let mut s = episode.clone();
    if !s.is_greedy() {
        s.seed = s.seed.wrapping_add(step);
    }
    s
}

/// Whether `action` is a `think:` (as the world reads it: ASCII case does not matter).
pub(crate) fn is_think(action: &str) -> bool {
    action.len() >= 6 && action.as_bytes()[..6].eq_ignore_ascii_case(b"think:")
}

/// How an episode ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HouseholdOutcome {
    /// The goal was reached.
    pub success: bool,
    /// Why it stopped when it failed: `steps` (the limit), `repeated` (the same action and
    /// observation more than `max_repeats` times in a row), `cycle` (2 or 3 steps repeated
    /// `max_cycles` times in a row) or `context` (the prompt outgrew the model's lane).
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

/// Run one episode: `env` from reset, one model call per action, sampled with `sampling`
/// ([`step_sampling`]).
pub fn run_episode(
    session: &mut dyn Session,
    env: &mut HouseholdEnv,
    examples: &str,
    memory: &[String],
    cfg: &HouseholdConfig,
    sampling: &SamplingParams,
) -> Result<HouseholdOutcome, AgentError> {
    run_episode_observed(
        session,
        env,
        examples,
        memory,
        cfg,
        sampling,
        &mut |_, _| {},
    )
}

/// [`run_episode`], calling `observe(action, observation)` after every step (live views).
pub fn run_episode_observed(
    session: &mut dyn Session,
    env: &mut HouseholdEnv,
    examples: &str,
    memory: &[String],
    cfg: &HouseholdConfig,
    sampling: &SamplingParams,
    observe: &mut dyn FnMut(&str, &str),
) -> Result<HouseholdOutcome, AgentError> {
    let mut run = EpisodeRun::start(env, examples, memory, sampling.clone());
    while let Some(req) = run.request(env, cfg) {
        run.answer(env, session.generate(&req, &mut |_| true), cfg, observe)?;
    }
    Ok(run.finish(env))
}

/// One episode as a state machine: the request for the next action, then the model's reply.
/// [`run_episode_observed`] drives one with a session; the household agent drives many at
/// once through [`Session::generate_stream`].
pub struct EpisodeRun {
    prefix: String,
    scratchpad: String,
    steps: Vec<Step>,
    sampling: SamplingParams,
    /// `think:` lines in a row at the end of the scratchpad (the plan line included).
    thinks_in_a_row: u32,
    /// `think:` steps the world accepted.
    thinks: u32,
    stopped: Option<String>,
    over: bool,
}

impl EpisodeRun {
    /// Resets `env` and builds the prompt: the instruction, the examples, the memory, the
    /// task, and the newest reflection of `memory` as the first `think:` line
    /// ([`plan_line`]). Each call samples with `sampling` ([`step_sampling`]).
    pub fn start(
        env: &mut HouseholdEnv,
        examples: &str,
        memory: &[String],
        sampling: SamplingParams,
    ) -> Self {
        let first = env.reset();
        let plan = memory.last().and_then(|p| plan_line(p));
        Self {
            prefix: prompt_prefix(examples, memory),
            scratchpad: format!("{first}\n{}", plan.as_deref().unwrap_or("")),
            steps: Vec::new(),
            sampling,
            thinks_in_a_row: u32::from(plan.is_some()),
            thinks: 0,
            stopped: Some("steps".to_string()),
            over: false,
        }
    }

    /// Whether the next step may be a `think:`.
    pub fn may_think(&self, cfg: &HouseholdConfig) -> bool {
        self.thinks_in_a_row < cfg.max_thinks_in_a_row && self.thinks < cfg.max_thinks
    }

    /// The request for the next action in `env`'s current state, or `None` once the episode
    /// is over.
    pub fn request(&self, env: &HouseholdEnv, cfg: &HouseholdConfig) -> Option<GenerateRequest> {
        if self.over || self.steps.len() >= cfg.max_steps as usize {
            return None;
        }
        let mut req = GenerateRequest::new(
            format!("{}{}>", self.prefix, self.scratchpad),
            cfg.max_tokens_per_action,
        )
        .stop("\n");
        req.parse_special = false;
        req.sampling = step_sampling(&self.sampling, self.steps.len() as u32);
        if cfg.constrained {
            req.grammar = Some(actions_grammar(
                &env.admissible_actions(),
                self.may_think(cfg),
            ));
        }
        Some(req)
    }

    /// Takes the session's reply to [`Self::request`]: a generation is absorbed; a prompt that
    /// outgrew the model's lane ends the episode (`stopped: "context"`, like the step limit,
    /// so that one long episode cannot stop a whole run); any other error is returned.
    pub fn answer(
        &mut self,
        env: &mut HouseholdEnv,
        reply: Result<Generation, LlmError>,
        cfg: &HouseholdConfig,
        observe: &mut dyn FnMut(&str, &str),
    ) -> Result<(), LlmError> {
        match reply {
            Ok(g) => self.absorb(env, &g, cfg, observe),
            Err(LlmError::PromptTooLong { .. }) => {
                self.stopped = Some("context".to_string());
                self.over = true;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Takes the model's reply: acts in `env` (a `think:` beyond the caps gets
    /// `Nothing happens.`), and ends the episode on success or in a loop.
    pub fn absorb(
        &mut self,
        env: &mut HouseholdEnv,
        g: &Generation,
        cfg: &HouseholdConfig,
        observe: &mut dyn FnMut(&str, &str),
    ) {
        let action = g.text.trim().trim_start_matches('>').trim().to_string();
        let observation = if !is_think(&action) {
            self.thinks_in_a_row = 0;
            env.step(&action).observation
        } else if self.may_think(cfg) {
            self.thinks_in_a_row += 1;
            self.thinks += 1;
            env.step(&action).observation
        } else {
            self.thinks_in_a_row += 1;
            NOTHING_HAPPENS.to_string()
        };
        observe(&action, &observation);
        self.scratchpad
            .push_str(&format!("> {action}\n{observation}\n"));
        self.steps.push(Step {
            thought: String::new(),
            action,
            observation,
            reused_tokens: g.stats.reused_tokens,
            evaluated_tokens: g.stats.evaluated_tokens,
            generated_tokens: g.stats.generated_tokens,
        });
        if env.is_success() {
            self.stopped = None;
            self.over = true;
        } else if let Some(why) = looped(&self.steps, cfg) {
            self.stopped = Some(why.into());
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

/// Whether the episode is caught in a loop, over its steps other than thoughts (a thought
/// changes nothing in the world, so thoughts in between do not break a loop): `repeated` when
/// the last step (action and observation) came more than `max_repeats` times in a row, `cycle`
/// when a block of the last 2 or 3 steps (not one step repeated) came `max_cycles` times in a
/// row.
fn looped(steps: &[Step], cfg: &HouseholdConfig) -> Option<&'static str> {
    let steps: Vec<&Step> = steps.iter().filter(|s| !is_think(&s.action)).collect();
    let same = |a: &Step, b: &Step| a.action == b.action && a.observation == b.observation;
    let n = steps.len();
    let last = *steps.last()?;
    let run = steps.iter().rev().take_while(|s| same(s, last)).count();
    if run > cfg.max_repeats as usize {
        return Some("repeated");
    }
    let reps = cfg.max_cycles.max(2) as usize;
    for period in [2usize, 3] {
        let len = period * reps;
        if n < len {
            continue;
        }
        let tail = &steps[n - len..];
        let periodic = (0..len - period).all(|i| same(tail[i], tail[i + period]));
        let one_step = (1..period).all(|i| same(tail[i], tail[0]));
        if periodic && !one_step {
            return Some("cycle");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::household::{eval_split, plan, TaskSpec, TaskType};
    use retroformer_llm::scripted::ScriptedModel;
    use retroformer_llm::{LanguageModel, SessionOptions};

    fn spec(t: TaskType) -> TaskSpec {
        eval_split().into_iter().find(|s| s.task_type == t).unwrap()
    }

    fn greedy() -> SamplingParams {
        SamplingParams::greedy()
    }

    /// An episode of `task_type` in which the scripted model says `replies`.
    fn episode(
        t: TaskType,
        replies: Vec<String>,
        memory: &[String],
        cfg: &HouseholdConfig,
        sampling: &SamplingParams,
    ) -> (HouseholdOutcome, ScriptedModel) {
        let mut env = HouseholdEnv::new(&spec(t));
        let model = ScriptedModel::new(replies);
        let mut session = model.session(&SessionOptions::default()).unwrap();
        let out = run_episode(session.as_mut(), &mut env, "", memory, cfg, sampling).unwrap();
        (out, model)
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
        let ex = crate::household::agent::planner_examples(TaskType::Heat);
        let out = run_episode(
            session.as_mut(),
            &mut env,
            &ex,
            &["I forgot to heat it.".into()],
            &HouseholdConfig::default(),
            &greedy(),
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
        // The newest plan is the episode's first line, as a thought.
        assert!(reqs[0].prompt.ends_with(&format!(
            "{}\n> think: I forgot to heat it.\nOK.\n>",
            env.intro().trim_end()
        )));
        // Each call sees the previous action and its observation.
        assert!(reqs[1]
            .prompt
            .ends_with("> think: I need a hot one.\nOK.\n>"));
        assert!(out
            .scratchpad
            .starts_with(&format!("{}\n> think: I forgot", env.intro())));
    }

    #[test]
    fn an_episodes_segments_rebuild_every_request_it_made_with_the_loss_on_its_actions() {
        let s = spec(TaskType::Clean);
        let mut env = HouseholdEnv::new(&s);
        let actions = plan(&env).unwrap();
        let mut replies = vec![" think: Clean it first.".to_string()];
        replies.extend(actions.iter().map(|a| format!(" {a}\n")));
        let model = ScriptedModel::new(replies);
        let mut session = model.session(&SessionOptions::default()).unwrap();
        let ex = crate::household::agent::planner_examples(TaskType::Clean);
        let memory = ["Find it.".to_string()];
        let cfg = HouseholdConfig::default();
        let out = run_episode(session.as_mut(), &mut env, &ex, &memory, &cfg, &greedy()).unwrap();
        assert!(out.success);
        let segments = episode_segments(&prompt_prefix(&ex, &memory), &out).unwrap();
        let reqs = model.requests();
        assert_eq!(reqs.len(), out.steps.len());
        assert_eq!(segments.len(), 2 * out.steps.len());
        for (k, req) in reqs.iter().enumerate() {
            let text: String = segments[..2 * k + 1]
                .iter()
                .map(|g| g.text.as_str())
                .collect();
            assert_eq!(text, req.prompt, "request {k}");
        }
        let loss: Vec<&str> = segments
            .iter()
            .filter(|g| g.loss)
            .map(|g| g.text.as_str())
            .collect();
        assert_eq!(loss[0], " think: Clean it first.\n");
        assert_eq!(
            &loss[1..],
            actions
                .iter()
                .map(|a| format!(" {a}\n"))
                .collect::<Vec<_>>()
        );
        // An outcome whose scratchpad does not end with its steps gives none.
        let mut edited = out.clone();
        edited.scratchpad.push('x');
        assert_eq!(episode_segments("", &edited), None);
    }

    #[test]
    fn the_newest_of_several_plans_opens_the_episode_on_one_line_and_none_without_plans() {
        let memory = ["old plan".to_string(), "  new\nplan  ".to_string()];
        let (out, model) = episode(
            TaskType::Put,
            vec!["look".into()],
            &memory,
            &HouseholdConfig {
                max_steps: 1,
                ..Default::default()
            },
            &greedy(),
        );
        let prompt = &model.requests()[0].prompt;
        assert!(prompt.ends_with("\n> think: new plan\nOK.\n>"), "{prompt}");
        assert!(prompt.contains("Trial 0:\nold plan\nTrial 1:\nnew\nplan\nHere is the task:"));
        assert_eq!(out.steps.len(), 1, "the plan line is not a step");
        assert_eq!(plan_line(" \n "), None);
        let (_, model) = episode(
            TaskType::Put,
            vec!["look".into()],
            &[],
            &HouseholdConfig {
                max_steps: 1,
                ..Default::default()
            },
            &greedy(),
        );
        assert!(!model.requests()[0].prompt.contains("> think:"));
    }

    #[test]
    fn every_request_is_constrained_to_the_admissible_actions_of_its_state() {
        let s = spec(TaskType::Put);
        let mut env = HouseholdEnv::new(&s);
        let actions = plan(&env).unwrap();
        let model = ScriptedModel::new(actions.clone());
        let mut session = model.session(&SessionOptions::default()).unwrap();
        let cfg = HouseholdConfig::default();
        run_episode(session.as_mut(), &mut env, "", &[], &cfg, &greedy()).unwrap();
        let reqs = model.requests();
        assert_eq!(reqs.len(), actions.len());
        let mut replay = HouseholdEnv::new(&s);
        replay.reset();
        for (req, action) in reqs.iter().zip(&actions) {
            let g = req.grammar.as_ref().expect("a grammar");
            let admissible = replay.admissible_actions();
            assert_eq!(g, &actions_grammar(&admissible, true));
            assert!(
                admissible.contains(action),
                "{action} not in {admissible:?}"
            );
            for a in &admissible {
                assert!(g.text.contains(&format!("\"{a}\"")), "{a}");
            }
            replay.step(action);
        }
        assert_eq!(reqs[0].stop, vec!["\n"]);
        let (_, free) = episode(
            TaskType::Put,
            vec!["look".into()],
            &[],
            &HouseholdConfig {
                max_steps: 1,
                constrained: false,
                ..Default::default()
            },
            &greedy(),
        );
        assert_eq!(free.requests()[0].grammar, None);
    }

    #[test]
    fn at_most_two_thinks_in_a_row_and_eight_in_an_episode_and_the_plan_line_counts_in_a_row() {
        // think think think: the third is refused (and the grammar had left it out).
        let replies: Vec<String> = ["think: a", "think: b", "think: c", "look"]
            .map(String::from)
            .to_vec();
        let cfg = HouseholdConfig {
            max_steps: 4,
            ..Default::default()
        };
        let (out, model) = episode(TaskType::Put, replies, &[], &cfg, &greedy());
        let obs: Vec<&str> = out.steps.iter().map(|s| s.observation.as_str()).collect();
        assert_eq!(&obs[..3], ["OK.", "OK.", NOTHING_HAPPENS]);
        let thinks: Vec<bool> = model
            .requests()
            .iter()
            .map(|q| q.grammar.as_ref().unwrap().text.contains("think"))
            .collect();
        assert_eq!(thinks, [true, true, false, false]);
        // With a plan line, one think more in a row.
        let replies: Vec<String> = ["think: a", "think: b"].map(String::from).to_vec();
        let cfg = HouseholdConfig {
            max_steps: 2,
            ..Default::default()
        };
        let (out, _) = episode(TaskType::Put, replies, &["plan".into()], &cfg, &greedy());
        assert_eq!(out.steps[0].observation, "OK.");
        assert_eq!(out.steps[1].observation, NOTHING_HAPPENS);
        // Eight in all: think, look, think, inventory, ... the ninth think is refused.
        let mut replies = Vec::new();
        for i in 0..9 {
            replies.push(format!("think: {i}"));
            replies.push(["look", "inventory", "examine nothing 1"][i % 3].to_string());
        }
        let cfg = HouseholdConfig {
            max_steps: 18,
            max_repeats: 100,
            max_cycles: 100,
            ..Default::default()
        };
        let (out, _) = episode(TaskType::Put, replies, &[], &cfg, &greedy());
        let think_obs: Vec<&str> = out
            .steps
            .iter()
            .filter(|s| s.action.starts_with("think:"))
            .map(|s| s.observation.as_str())
            .collect();
        assert_eq!(think_obs.len(), 9);
        assert!(think_obs[..8].iter().all(|o| *o == "OK."));
        assert_eq!(think_obs[8], NOTHING_HAPPENS);
    }

    #[test]
    fn the_same_action_with_the_same_result_four_times_fails_the_episode() {
        let replies = vec!["look".to_string(); 10];
        let (out, _) = episode(TaskType::Put, replies, &[], &Default::default(), &greedy());
        assert!(!out.success);
        assert_eq!(out.stopped.as_deref(), Some("repeated"));
        assert_eq!(out.steps.len(), 4);
    }

    #[test]
    fn two_and_three_step_cycles_gone_through_three_times_fail_the_episode_thoughts_aside() {
        let two: Vec<String> = ["look", "inventory"].repeat(5).map_to_strings();
        let (out, _) = episode(TaskType::Put, two, &[], &Default::default(), &greedy());
        assert_eq!(out.stopped.as_deref(), Some("cycle"));
        assert_eq!(out.steps.len(), 6);
        let three: Vec<String> = ["look", "inventory", "examine x 1"]
            .repeat(5)
            .map_to_strings();
        let (out, _) = episode(TaskType::Put, three, &[], &Default::default(), &greedy());
        assert_eq!(out.stopped.as_deref(), Some("cycle"));
        assert_eq!(out.steps.len(), 9);
        // Thoughts in between do not break a loop: A B C think A B C think A B C.
        let mut thinking: Vec<String> = Vec::new();
        for i in 0..3 {
            thinking.extend(["look", "inventory", "examine x 1"].map(String::from));
            thinking.push(format!("think: round {i}"));
        }
        let (out, _) = episode(TaskType::Put, thinking, &[], &Default::default(), &greedy());
        assert_eq!(out.stopped.as_deref(), Some("cycle"));
        assert_eq!(out.steps.len(), 11);
        // Nor do they break a repeat: look, think, look, think, look, think, look.
        let mut repeats: Vec<String> = Vec::new();
        for i in 0..4 {
            repeats.push("look".into());
            repeats.push(format!("think: {i}"));
        }
        let (out, _) = episode(TaskType::Put, repeats, &[], &Default::default(), &greedy());
        assert_eq!(out.stopped.as_deref(), Some("repeated"));
        assert_eq!(out.steps.len(), 7);
        // A B A B A C: no cycle.
        let broken: Vec<String> = ["look", "inventory", "look", "inventory", "look", "open x 1"]
            .map(String::from)
            .to_vec();
        let cfg = HouseholdConfig {
            max_steps: 6,
            ..Default::default()
        };
        let (out, _) = episode(TaskType::Put, broken, &[], &cfg, &greedy());
        assert_eq!(out.stopped.as_deref(), Some("steps"));
        assert_eq!(out.steps.len(), 6);
    }

    #[test]
    fn the_step_limit_ends_an_episode() {
        let replies = (0..40)
            .map(|i| ["look", "inventory", "examine y 1", "think: z"][i % 4].to_string())
            .collect();
        let cfg = HouseholdConfig {
            max_steps: 5,
            ..HouseholdConfig::default()
        };
        let (out, _) = episode(TaskType::Put, replies, &[], &cfg, &greedy());
        assert_eq!(out.steps.len(), 5);
        assert_eq!(out.stopped.as_deref(), Some("steps"));
    }

    #[test]
    fn a_sampled_episode_adds_the_step_to_its_seed_and_a_greedy_one_stays_greedy() {
        let sampled = SamplingParams {
            temperature: 0.7,
            top_p: 0.9,
            seed: u32::MAX - 1,
            ..Default::default()
        };
        let replies = vec!["look".to_string(), "inventory".into(), "examine z 1".into()];
        let cfg = HouseholdConfig {
            max_steps: 3,
            ..Default::default()
        };
        let (_, model) = episode(TaskType::Put, replies.clone(), &[], &cfg, &sampled);
        let seeds: Vec<u32> = model.requests().iter().map(|q| q.sampling.seed).collect();
        assert_eq!(seeds, [u32::MAX - 1, u32::MAX, 0]);
        assert!(model
            .requests()
            .iter()
            .all(|q| q.sampling.temperature == 0.7 && q.sampling.top_p == 0.9));
        let (_, model) = episode(TaskType::Put, replies, &[], &cfg, &greedy());
        assert!(model.requests().iter().all(|q| q.sampling == greedy()));
    }

    trait MapToStrings {
        fn map_to_strings(self) -> Vec<String>;
    }
    impl MapToStrings for Vec<&str> {
        fn map_to_strings(self) -> Vec<String> {
            self.into_iter().map(String::from).collect()
        }
    }
}
