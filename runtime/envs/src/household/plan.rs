//! A breadth-first planner over world states: the shortest action sequence (among the actions
//! that can matter for the goal) from the environment's current state to one where the goal
//! holds.
//!
//! Transitions are the environment's own (`Layout::apply`), so a plan is valid by
//! construction. The search only considers actions on the *relevant* things: objects of the
//! goal's kind and lamps of the goal's lamp kind, the receptacles that hold them, receptacles
//! of the target kind, and the appliance the task needs (sink basin, microwave, fridge). States
//! are de-duplicated on the parts those actions can change. Plans are shortest among plans made
//! of those actions (closing things, carrying other objects about, or looking are never needed
//! to reach a goal from a state the environment starts in).

use std::collections::{HashSet, VecDeque};

use super::world::{Action, Goal, Layout, State, HELD, NONE};
use super::HouseholdEnv;

/// How many states [`plan`] explores before giving up.
pub const DEFAULT_MAX_STATES: usize = 2_000_000;

/// Why no plan was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Every reachable state was explored and none reaches the goal.
    #[error("no sequence of actions reaches the goal")]
    Unsolvable,
    /// The search gave up after this many states.
    #[error("the search gave up after {0} states")]
    TooLarge(usize),
}

/// The shortest plan from the environment's current state, as action texts the environment
/// accepts (empty when the goal already holds).
pub fn plan(env: &HouseholdEnv) -> Result<Vec<String>, PlanError> {
    plan_with_limit(env, DEFAULT_MAX_STATES)
}

/// [`plan`] with a limit on the number of states explored.
pub fn plan_with_limit(env: &HouseholdEnv, max_states: usize) -> Result<Vec<String>, PlanError> {
    let (layout, state, goal) = env.parts();
    let actions = search(layout, state, goal, max_states)?;
    Ok(actions.into_iter().map(|a| layout.action_text(a)).collect())
}

/// The relevant things and the candidate actions over them.
struct Relevant {
    /// Objects whose place or flags matter.
    objs: Vec<u16>,
    /// Candidate actions that do not depend on the state (they are checked by `apply`).
    fixed: Vec<Action>,
    /// Receptacles the held object may be put in.
    put_into: Vec<u16>,
    /// Receptacles used to treat the held object, with the treatment.
    treat: Vec<Action>,
}

impl Relevant {
    fn new(layout: &Layout, s: &State, goal: &Goal) -> Relevant {
        let (obj_ty, target_ty, lamp_ty, need) = match *goal {
            Goal::Place {
                obj, recep, need, ..
            } => (obj, recep, None, need),
            Goal::Light { obj, lamp } => (obj, None, lamp, 0),
        };
        let mut objs: Vec<u16> = layout.objs_of(obj_ty).map(|o| o as u16).collect();
        let lamps: Vec<u16> = layout.objs_of(lamp_ty).map(|o| o as u16).collect();
        objs.extend(&lamps);
        let mut receps: Vec<u16> = layout.receps_of(target_ty).map(|r| r as u16).collect();
        let put_into = receps.clone();
        for &o in &objs {
            let p = s.place[o as usize];
            if p != HELD {
                receps.push(p);
            }
        }
        let mut treat = Vec::new();
        for (r, recep) in layout.receps.iter().enumerate() {
            use super::world::Appliance;
            let r = r as u16;
            let wanted = match recep.appliance {
                Appliance::Sink if need & super::world::CLEAN != 0 => Some(Action::Clean(0, r)),
                Appliance::Microwave if need & super::world::HOT != 0 => Some(Action::Heat(0, r)),
                Appliance::Fridge if need & super::world::COOL != 0 => Some(Action::Cool(0, r)),
                _ => None,
            };
            if let Some(a) = wanted {
                treat.push(a);
                receps.push(r);
            }
        }
        let mut put_into = put_into;
        // Something irrelevant in hand must be put down first: anywhere it fits.
        if s.held != NONE && !objs.contains(&s.held) {
            for r in 0..layout.receps.len() as u16 {
                if layout.objs[s.held as usize].can_go & (1 << r) != 0 {
                    put_into.push(r);
                    receps.push(r);
                }
            }
        }
        receps.sort_unstable();
        receps.dedup();
        let mut fixed = Vec::new();
        for &r in &receps {
            fixed.push(Action::GoTo(r));
            fixed.push(Action::Open(r));
        }
        for &l in &lamps {
            fixed.push(Action::Use(l));
        }
        Relevant {
            objs,
            fixed,
            put_into,
            treat,
        }
    }

    fn key(&self, s: &State) -> (u16, u16, u128, Vec<u32>) {
        let objs = self
            .objs
            .iter()
            .map(|&o| u32::from(s.place[o as usize]) << 8 | u32::from(s.flags[o as usize]))
            .collect();
        (s.agent, s.held, s.open, objs)
    }

    fn candidates(&self, s: &State, out: &mut Vec<Action>) {
        out.clear();
        out.extend_from_slice(&self.fixed);
        if s.held == NONE {
            for &o in &self.objs {
                let p = s.place[o as usize];
                if p != HELD {
                    out.push(Action::Take(o, p));
                }
            }
        } else {
            let h = s.held;
            out.extend(self.put_into.iter().map(|&r| Action::Put(h, r)));
            out.extend(self.treat.iter().map(|a| match *a {
                Action::Clean(_, r) => Action::Clean(h, r),
                Action::Heat(_, r) => Action::Heat(h, r),
                Action::Cool(_, r) => Action::Cool(h, r),
                other => other,
            }));
        }
    }
}

/// Breadth-first search; the actions of a shortest plan.
pub(crate) fn search(
    layout: &Layout,
    start: &State,
    goal: &Goal,
    max_states: usize,
) -> Result<Vec<Action>, PlanError> {
    if layout.satisfied(start, goal) {
        return Ok(Vec::new());
    }
    let rel = Relevant::new(layout, start, goal);
    // Node i: (parent node, action that led here); node 0 is the start.
    let mut nodes: Vec<(u32, Action)> = vec![(0, Action::Look)];
    let mut seen = HashSet::new();
    seen.insert(rel.key(start));
    let mut queue = VecDeque::from([(start.clone(), 0u32)]);
    let mut cands = Vec::new();
    while let Some((s, node)) = queue.pop_front() {
        rel.candidates(&s, &mut cands);
        for &a in &cands {
            let mut next = s.clone();
            if !layout.apply(&mut next, a) || !seen.insert(rel.key(&next)) {
                continue;
            }
            nodes.push((node, a));
            let id = (nodes.len() - 1) as u32;
            if layout.satisfied(&next, goal) {
                let mut path = Vec::new();
                let mut i = id;
                while i != 0 {
                    let (parent, action) = nodes[i as usize];
                    path.push(action);
                    i = parent;
                }
                path.reverse();
                return Ok(path);
            }
            if seen.len() >= max_states {
                return Err(PlanError::TooLarge(seen.len()));
            }
            queue.push_back((next, id));
        }
    }
    Err(PlanError::Unsolvable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::household::WorldSpec;

    fn env(json: &str) -> HouseholdEnv {
        HouseholdEnv::from_world(&serde_json::from_str::<WorldSpec>(json).expect("json"))
            .expect("world")
    }

    #[test]
    fn the_planner_finds_the_shortest_plan_and_it_reaches_the_goal() {
        let mut e = env(r#"{"receptacles": [
                {"name": "cabinet 1", "openable": true, "contents": ["mug 1"]},
                {"name": "countertop 1", "contents": ["mug 2"]},
                {"name": "fridge 1", "openable": true},
                {"name": "shelf 1"}
            ], "task": "put a cool mug in shelf"}"#);
        let p = plan(&e).expect("plan");
        assert_eq!(
            p,
            [
                "go to countertop 1",
                "take mug 2 from countertop 1",
                "go to fridge 1",
                "cool mug 2 with fridge 1",
                "go to shelf 1",
                "put mug 2 in/on shelf 1"
            ]
        );
        e.reset();
        let last = p.iter().map(|a| e.step(a)).last().expect("steps");
        assert!(last.done && last.reward == 1.0 && e.is_success());
    }

    #[test]
    fn an_impossible_goal_is_unsolvable_and_a_tiny_limit_gives_up() {
        let e = env(
            r#"{"receptacles": [{"name": "countertop 1", "contents": ["apple 1"]}, {"name": "shelf 1"}], "task": "put a hot apple in shelf"}"#,
        );
        assert_eq!(plan(&e), Err(PlanError::Unsolvable));
        let e = env(
            r#"{"receptacles": [{"name": "countertop 1", "contents": ["apple 1", "apple 2"]}, {"name": "shelf 1"}, {"name": "shelf 2"}], "task": "put two apple in shelf"}"#,
        );
        assert!(matches!(
            plan_with_limit(&e, 2),
            Err(PlanError::TooLarge(_))
        ));
        assert_eq!(plan(&e).map(|p| p.len()), Ok(8));
    }
}
