//! A household world that speaks ALFWorld's text interface, so that the ReAct/Reflexion ALFWorld
//! few-shot prompts (bundled: [`crate::data::ALFWORLD_PROMPTS`]) work unchanged.
//!
//! ALFWorld's game files are not available offline; this is the project's own world with the
//! same rules and the same words (see [`world`] for the observation formats and where each was
//! derived from): rooms (kitchen, bathroom, bedroom, living room) with numbered receptacles,
//! some of which open; objects in or on them that can be cleaned, heated, cooled or switched
//! on; an agent that carries one object at most; the six task types ([`TaskType`]) with
//! ALFWorld's goal texts and goal predicates.
//!
//! * [`HouseholdEnv`]: one task; `reset` gives the first observation (`You are in the middle
//!   of a room. ...` and `Your task is to: ...`), `step` an action's observation, with `done`
//!   and reward 1.0 when the goal is reached; [`HouseholdEnv::admissible_actions`] lists the
//!   valid actions.
//! * [`TaskSpec`] (seed, task type) generates a world ([`gen::generate`]) deterministically;
//!   [`eval_split`] is a fixed set of 134 tasks balanced like ALFWorld's unseen split,
//!   [`train_split`] other seeds.
//! * [`WorldSpec`] describes a world as data (fixtures, replays of the prompt trajectories).
//! * [`plan::plan`]: a breadth-first planner that solves a task from the current state.
//! * [`episode`]: one ReAct episode (replies constrained by [`grammar`] to the admissible
//!   actions, the newest plan as the first thought, thinks capped, loops ended);
//!   [`agent::HouseholdAgent`]: the trial runner's agent; [`reflect`]: Reflexion's ALFWorld
//!   reflection prompt.

pub mod agent;
mod catalog;
pub mod env;
pub mod episode;
pub mod expert;
pub mod gen;
pub mod grammar;
pub mod plan;
pub mod reflect;
pub mod task;
pub mod world;

use serde::{Deserialize, Serialize};

pub use gen::{generate, Generated, Room, SplitMix64};
pub use plan::{plan, PlanError};
pub use task::{Task, TaskType};
pub use world::{ReceptacleSpec, WorldError, WorldSpec, NOTHING_HAPPENS, THINK_OK};

use super::StepResult;
use world::{Goal, Layout, State};

/// A generated task: a seed and a task type. The same spec is the same world, always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The seed of the world.
    pub seed: u64,
    /// The task type.
    pub task_type: TaskType,
}

impl TaskSpec {
    /// A spec.
    pub fn new(seed: u64, task_type: TaskType) -> Self {
        TaskSpec { seed, task_type }
    }

    /// A stable name for result files: `{type}-{seed}` (`clean-1001003`).
    pub fn id(&self) -> String {
        format!("{}-{}", self.task_type.name(), self.seed)
    }
}

/// How many tasks of each type [`eval_split`] has: ALFWorld's 134 unseen games (put 24, clean
/// 31, heat 23, cool 21, examine 18, puttwo 17).
pub const EVAL_COUNTS: [(TaskType, usize); 6] = [
    (TaskType::Put, 24),
    (TaskType::Clean, 31),
    (TaskType::Heat, 23),
    (TaskType::Cool, 21),
    (TaskType::Examine, 18),
    (TaskType::PutTwo, 17),
];

/// Seeds of the evaluation split: `EVAL_SEED_BASE + 1000 * type index + i`.
pub const EVAL_SEED_BASE: u64 = 1_000_000;
/// Seeds of the training split: `TRAIN_SEED_BASE + i` (never an evaluation seed).
pub const TRAIN_SEED_BASE: u64 = 2_000_000;

/// The fixed evaluation split: 134 tasks, by type as [`EVAL_COUNTS`], in that order.
pub fn eval_split() -> Vec<TaskSpec> {
    let mut out = Vec::with_capacity(134);
    for (t, (task_type, n)) in EVAL_COUNTS.iter().enumerate() {
        for i in 0..*n {
            out.push(TaskSpec::new(
                EVAL_SEED_BASE + 1000 * t as u64 + i as u64,
                *task_type,
            ));
        }
    }
    out
}

/// Most tasks [`eval_tasks`] gives: 1000 seeds a type.
pub const MAX_EVAL_TASKS: usize = 6000;

/// The first `n` (at most [`MAX_EVAL_TASKS`]) tasks of a held-out evaluation set as large as
/// needed: worlds from the evaluation split's seed ranges (never a training seed), the task
/// types in turn (put, clean, heat, cool, examine, puttwo, put, ...), so that any prefix has
/// every type alike. Its first 134 are not [`eval_split`]'s, which follows ALFWorld's counts.
pub fn eval_tasks(n: usize) -> Vec<TaskSpec> {
    let types = EVAL_COUNTS.len();
    (0..n.min(MAX_EVAL_TASKS))
        .map(|k| {
            let (t, i) = (k % types, k / types);
            TaskSpec::new(
                EVAL_SEED_BASE + 1000 * t as u64 + i as u64,
                EVAL_COUNTS[t].0,
            )
        })
        .collect()
}

/// The first `n` tasks of the training split: seeds from [`TRAIN_SEED_BASE`], task types in
/// turn (put, clean, heat, cool, examine, puttwo, put, ...).
pub fn train_split(n: usize) -> Vec<TaskSpec> {
    (0..n)
        .map(|i| {
            TaskSpec::new(
                TRAIN_SEED_BASE + i as u64,
                TaskType::ALL[i % TaskType::ALL.len()],
            )
        })
        .collect()
}

/// One household task: a world, its goal and the agent in it.
///
/// `step` never panics and allocates only the observation string. `done` becomes true (and
/// stays true) on the step that first reaches the goal, which also gets reward 1.0; every other
/// step gets 0.0. Steps after that still act on the world.
#[derive(Debug, Clone)]
pub struct HouseholdEnv {
    layout: Layout,
    task: Task,
    goal: Goal,
    initial: State,
    state: State,
    intro: String,
    room: Option<Room>,
    won: bool,
}

impl HouseholdEnv {
    /// The generated task of `spec`.
    ///
    /// # Panics
    ///
    /// Never for a generated world: every generated world is valid (the tests build thousands).
    pub fn new(spec: &TaskSpec) -> Self {
        let g = generate(spec);
        let mut env = Self::from_world(&g.world).expect("generated worlds are valid");
        env.room = Some(g.room);
        env
    }

    /// The task of a world described as data.
    pub fn from_world(world: &WorldSpec) -> Result<Self, WorldError> {
        let (layout, state, task) = Layout::build(world)?;
        let goal = layout.goal(&task);
        let intro = layout.intro(&task);
        Ok(HouseholdEnv {
            layout,
            task,
            goal,
            initial: state.clone(),
            state,
            intro,
            room: None,
            won: false,
        })
    }

    /// Puts everything back as at the start and gives the first observation: the room
    /// (`You are in the middle of a room. Looking quickly around you, you see ...`), a newline,
    /// and `Your task is to: ...`.
    pub fn reset(&mut self) -> String {
        self.state.clone_from(&self.initial);
        self.won = false;
        self.intro.clone()
    }

    /// The first observation (what `reset` returns), without resetting.
    pub fn intro(&self) -> &str {
        &self.intro
    }

    /// Acts. Any text is accepted: what is not a valid action in the current state gets
    /// `Nothing happens.`; `think: ...` gets `OK.`.
    pub fn step(&mut self, action: &str) -> StepResult {
        let mut observation = String::with_capacity(128);
        match self.layout.parse(action) {
            Some(a) if self.layout.apply(&mut self.state, a) => {
                self.layout.render(&self.state, a, &mut observation)
            }
            _ => observation.push_str(NOTHING_HAPPENS),
        }
        let reached = !self.won && self.layout.satisfied(&self.state, &self.goal);
        self.won |= reached;
        StepResult {
            observation,
            done: self.won,
            reward: if reached { 1.0 } else { 0.0 },
        }
    }

    /// Whether the goal holds in the current state (ALFWorld's "won", not "episode ended").
    pub fn is_success(&self) -> bool {
        self.layout.satisfied(&self.state, &self.goal)
    }

    /// Whether the goal has been reached at some step since the last reset.
    pub fn is_done(&self) -> bool {
        self.won
    }

    /// Every action valid in the current state, sorted (`think:` is always valid too and is
    /// not listed).
    pub fn admissible_actions(&self) -> Vec<String> {
        self.layout.admissible(&self.state)
    }

    /// The task type.
    pub fn task_type(&self) -> TaskType {
        self.task.task_type
    }

    /// The goal text, as after `Your task is to: ` (without the final period).
    pub fn task_text(&self) -> &str {
        &self.task.text
    }

    /// The task.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// The room, for generated worlds.
    pub fn room(&self) -> Option<Room> {
        self.room
    }

    /// The names of all receptacles, in display order.
    pub fn receptacles(&self) -> impl Iterator<Item = &str> {
        self.layout.receps.iter().map(|r| r.name.as_str())
    }

    /// The names of all objects, in display order.
    pub fn objects(&self) -> impl Iterator<Item = &str> {
        self.layout.objs.iter().map(|o| o.name.as_str())
    }

    pub(crate) fn parts(&self) -> (&Layout, &State, &Goal) {
        (&self.layout, &self.state, &self.goal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eval_split_has_134_tasks_balanced_like_alfworlds_unseen_split() {
        let e = eval_split();
        assert_eq!(e.len(), 134);
        for (t, n) in EVAL_COUNTS {
            assert_eq!(e.iter().filter(|s| s.task_type == t).count(), n, "{t}");
        }
        let mut seeds: Vec<u64> = e.iter().map(|s| s.seed).collect();
        seeds.dedup();
        assert_eq!(seeds.len(), 134);
        let train = train_split(600);
        assert!(train.iter().all(|t| !seeds.contains(&t.seed)));
        assert_eq!(train_split(12)[7].task_type, TaskType::Clean);
    }

    #[test]
    fn the_large_evaluation_set_takes_types_in_turn_from_unseen_seeds_only() {
        let e = eval_tasks(MAX_EVAL_TASKS + 5);
        assert_eq!(e.len(), MAX_EVAL_TASKS);
        let seeds: std::collections::BTreeSet<u64> = e.iter().map(|s| s.seed).collect();
        assert_eq!(seeds.len(), MAX_EVAL_TASKS, "no seed twice");
        let train = train_split(5000);
        assert!(train.iter().all(|t| !seeds.contains(&t.seed)));
        let first: Vec<TaskType> = e[..12].iter().map(|s| s.task_type).collect();
        assert_eq!(first[..6], first[6..]);
        assert_eq!(first[..6], EVAL_COUNTS.map(|(t, _)| t));
        // Each seed range stays its type's: the eval split's worlds are among these.
        for s in eval_split() {
            assert!(e.contains(&s), "{}", s.id());
        }
    }

    #[test]
    fn stepping_to_the_goal_rewards_once_and_reset_starts_over() {
        let mut env = HouseholdEnv::new(&TaskSpec::new(5, TaskType::Put));
        let first = env.reset();
        let p = plan(&env).expect("plan");
        let results: Vec<StepResult> = p.iter().map(|a| env.step(a)).collect();
        let last = results.last().expect("a plan has steps");
        assert!(last.done && last.reward == 1.0);
        assert!(results[..results.len() - 1]
            .iter()
            .all(|r| !r.done && r.reward == 0.0));
        let after = env.step("look");
        assert!(after.done && after.reward == 0.0);
        assert_eq!(env.reset(), first);
        assert!(!env.is_done() && !env.is_success());
    }
}
