//! Worlds generated from a seed.
//!
//! A [`TaskSpec`] (seed and task type) always gives the same [`WorldSpec`]: the only source of
//! randomness is [`SplitMix64`], implemented here, with integer-only arithmetic, and no hash-map
//! iteration order is involved, so a seed means the same world on every platform and version
//! (a golden fixture guards that).
//!
//! Generation picks a room that fits the task type (heat and cool tasks need a kitchen; clean
//! tasks a kitchen or a bathroom; examine tasks a bedroom or a living room; put tasks any room),
//! draws the room's receptacles from its rules (how many cabinets, drawers, ...; which can be
//! opened; which start open), picks the task's object and target among the pairs that the room
//! makes possible, puts 1 to 3 of the object (2 to 4 for `puttwo`) where that kind plausibly lies
//! but never in a receptacle of the target kind (so the goal never holds at the start), adds a
//! lamp where one is needed, and fills the room with other objects where they plausibly lie.
//! Every generated task is solvable by construction; the planner checks that in the tests.

use super::catalog::{
    self, object_kind, ObjectKind, RecepRule, BATHROOM, BATHROOM_RULES, BEDROOM, BEDROOM_RULES,
    FIXED, KITCHEN, KITCHEN_RULES, LIVINGROOM, LIVINGROOM_RULES, OBJECTS, TOGGLEABLE,
};
use super::task::{Task, TaskType};
use super::world::{split_name, ReceptacleSpec, WorldSpec};
use super::TaskSpec;

use serde::{Deserialize, Serialize};

pub use retroformer_core::rng::SplitMix64;

/// The kind of room a generated world is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Room {
    /// Cabinets, countertops, fridge, microwave, sink basin, stove burners...
    Kitchen,
    /// Toilet, sink basins, bathtub, towel holders...
    Bathroom,
    /// Bed, desks, drawers, shelves, dresser...
    Bedroom,
    /// Sofa, armchairs, coffee tables, side tables...
    LivingRoom,
}

impl Room {
    fn bit(self) -> u8 {
        match self {
            Room::Kitchen => KITCHEN,
            Room::Bathroom => BATHROOM,
            Room::Bedroom => BEDROOM,
            Room::LivingRoom => LIVINGROOM,
        }
    }

    fn rules(self) -> &'static [RecepRule] {
        match self {
            Room::Kitchen => KITCHEN_RULES,
            Room::Bathroom => BATHROOM_RULES,
            Room::Bedroom => BEDROOM_RULES,
            Room::LivingRoom => LIVINGROOM_RULES,
        }
    }
}

/// A generated world and the room it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generated {
    /// The room.
    pub room: Room,
    /// The world.
    pub world: WorldSpec,
}

/// The world of a task spec (the same for the same spec, always).
pub fn generate(spec: &TaskSpec) -> Generated {
    let mut rng = SplitMix64::new(salted_seed(spec));
    for _ in 0..256 {
        if let Some(g) = try_generate(&mut rng, spec.task_type) {
            return g;
        }
    }
    fallback(spec.task_type)
}

fn salted_seed(spec: &TaskSpec) -> u64 {
    let index = TaskType::ALL
        .iter()
        .position(|t| *t == spec.task_type)
        .unwrap_or(0) as u64;
    spec.seed ^ (index + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// Puts a new object of `kind` (numbered after the ones of that kind so far) in receptacle `r`.
fn add(
    receps: &mut [RecepDraft],
    counts: &mut Vec<(&'static str, usize)>,
    r: usize,
    kind: &'static str,
) {
    let n = match counts.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, n)) => {
            *n += 1;
            *n
        }
        None => {
            counts.push((kind, 1));
            1
        }
    };
    receps[r].contents.push(format!("{kind} {n}"));
}

struct RecepDraft {
    kind: &'static str,
    num: usize,
    openable: bool,
    open: bool,
    contents: Vec<String>,
}

/// Most clutter objects a receptacle kind gets.
fn clutter_max(kind: &str) -> usize {
    match kind {
        "countertop" | "diningtable" => 6,
        "desk" | "dresser" | "coffeetable" | "sidetable" => 4,
        "microwave" | "toaster" | "coffeemachine" | "stoveburner" | "handtowelholder"
        | "towelholder" | "toiletpaperhanger" => 1,
        _ => 2,
    }
}

/// The most objects of one kind a generated world has.
const MAX_PER_KIND: usize = 5;

/// One attempt; `None` when the drawn room cannot host the task (the caller draws again).
// long: world generation is one recipe (rooms, receptacles, the task's objects, distractors) whose steps share the generator's state; split, the order of draws (and so every seed's world) would be harder to keep.
pub(crate) fn try_generate(rng: &mut SplitMix64, task_type: TaskType) -> Option<Generated> {
    let room = match task_type {
        TaskType::Put | TaskType::PutTwo => [
            Room::Kitchen,
            Room::Bathroom,
            Room::Bedroom,
            Room::LivingRoom,
        ][rng.below(4)],
        TaskType::Clean => {
            if rng.percent(70) {
                Room::Kitchen
            } else {
                Room::Bathroom
            }
        }
        TaskType::Heat | TaskType::Cool => Room::Kitchen,
        TaskType::Examine => {
            if rng.percent(60) {
                Room::Bedroom
            } else {
                Room::LivingRoom
            }
        }
    };
    let mut receps = Vec::new();
    for rule in room.rules() {
        for num in 1..=rng.between(usize::from(rule.min), usize::from(rule.max)) {
            let openable = rng.percent(rule.openable);
            let open = openable && rng.percent(rule.starts_open);
            receps.push(RecepDraft {
                kind: rule.kind,
                num,
                openable,
                open,
                contents: Vec::new(),
            });
        }
    }
    let present = |kind: &str| receps.iter().any(|r| r.kind == kind);
    let bit = room.bit();
    let (need, excluded) = match task_type {
        TaskType::Clean => (catalog::CLEANABLE, "sinkbasin"),
        TaskType::Heat => (catalog::HEATABLE, "microwave"),
        TaskType::Cool => (catalog::COOLABLE, "fridge"),
        _ => (0, ""),
    };
    let candidates: Vec<&ObjectKind> = OBJECTS
        .iter()
        .filter(|k| {
            k.rooms & bit != 0 && k.props & (FIXED | TOGGLEABLE) == 0 && k.props & need == need
        })
        .collect();

    // The task's object and target, and the lamp kind for examine tasks.
    let (object, target, lamp) = if task_type == TaskType::Examine {
        let lamp = if room == Room::LivingRoom && rng.percent(50) {
            "floorlamp"
        } else {
            "desklamp"
        };
        let objects: Vec<&ObjectKind> = candidates
            .iter()
            .copied()
            .filter(|k| k.places.iter().any(|p| present(p)))
            .collect();
        if objects.is_empty() {
            return None;
        }
        (objects[rng.below(objects.len())], lamp, Some(lamp))
    } else {
        let mut pairs = Vec::new();
        for k in &candidates {
            for y in k.places {
                // The appliance is never the target; nor is a sink basin for heated, cooled or
                // cleaned things (ALFWorld's goals put them away, not back in the sink).
                let odd = *y == excluded || (!excluded.is_empty() && *y == "sinkbasin");
                if !odd && present(y) && k.places.iter().any(|p| p != y && present(p)) {
                    pairs.push((*k, *y));
                }
            }
        }
        if pairs.is_empty() {
            return None;
        }
        let (k, y) = pairs[rng.below(pairs.len())];
        let lamp = match room {
            Room::Bedroom | Room::LivingRoom if rng.percent(60) => Some("desklamp"),
            _ => None,
        };
        (k, y, lamp)
    };

    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    // The task's objects, never in a receptacle of the target kind.
    let spawn: Vec<usize> = (0..receps.len())
        .filter(|&r| object.places.contains(&receps[r].kind) && receps[r].kind != target)
        .collect();
    if spawn.is_empty() {
        return None;
    }
    let n_objects = if task_type == TaskType::PutTwo {
        rng.between(2, 4)
    } else {
        [1, 1, 1, 2, 2, 3][rng.below(6)]
    };
    for _ in 0..n_objects {
        let r = spawn[rng.below(spawn.len())];
        add(&mut receps, &mut counts, r, object.name);
    }

    // The lamp(s), on receptacles that are not closed away.
    if let Some(lamp) = lamp {
        let places = object_kind(lamp).map_or(&[][..], |k| k.places);
        let holders: Vec<usize> = (0..receps.len())
            .filter(|&r| places.contains(&receps[r].kind) && !receps[r].openable)
            .collect();
        if holders.is_empty() {
            if task_type == TaskType::Examine {
                return None;
            }
        } else {
            let n = if task_type == TaskType::Examine && rng.percent(15) {
                2
            } else {
                1
            };
            for _ in 0..n {
                let r = holders[rng.below(holders.len())];
                add(&mut receps, &mut counts, r, lamp);
            }
        }
    }

    // Clutter: other objects where they plausibly lie.
    for r in 0..receps.len() {
        let kind = receps[r].kind;
        if (kind == "cabinet" || kind == "drawer") && rng.percent(50) {
            continue;
        }
        let options: Vec<&ObjectKind> = OBJECTS
            .iter()
            .filter(|k| {
                k.rooms & bit != 0
                    && k.places.contains(&kind)
                    && k.name != object.name
                    && k.props & TOGGLEABLE == 0
            })
            .collect();
        if options.is_empty() {
            continue;
        }
        for _ in 0..rng.below(clutter_max(kind) + 1) {
            let k = options[rng.below(options.len())];
            let have = counts
                .iter()
                .find(|(n, _)| *n == k.name)
                .map_or(0, |(_, c)| *c);
            if have < MAX_PER_KIND {
                add(&mut receps, &mut counts, r, k.name);
            }
        }
    }

    let task = Task::new(
        task_type,
        object.name,
        target,
        rng.below(task_type.templates().len()),
    )?;
    let receptacles = receps
        .into_iter()
        .map(|mut r| {
            r.contents.sort_by(|a, b| {
                let (ka, na) = split_name(a).unwrap_or((a, 0));
                let (kb, nb) = split_name(b).unwrap_or((b, 0));
                ka.cmp(kb).then(nb.cmp(&na))
            });
            ReceptacleSpec {
                name: format!("{} {}", r.kind, r.num),
                openable: r.openable,
                open: r.open,
                contents: r.contents,
                with: None,
            }
        })
        .collect();
    Some(Generated {
        room,
        world: WorldSpec {
            receptacles,
            task: task.text,
        },
    })
}

/// A fixed small kitchen for each task type, used only if 256 draws in a row fail (the tests
/// show that never happens).
fn fallback(task_type: TaskType) -> Generated {
    let r = |name: &str, openable: bool, contents: &[&str]| ReceptacleSpec {
        name: name.to_string(),
        openable,
        open: false,
        contents: contents.iter().map(|s| s.to_string()).collect(),
        with: None,
    };
    let apples: &[&str] = if task_type == TaskType::PutTwo {
        &["apple 2", "apple 1"]
    } else {
        &["apple 1"]
    };
    let task = match task_type {
        TaskType::Examine => "look at apple under the desklamp",
        TaskType::Put => "put a apple in diningtable",
        TaskType::Clean => "put a clean apple in diningtable",
        TaskType::Heat => "put a hot apple in diningtable",
        TaskType::Cool => "put a cool apple in diningtable",
        TaskType::PutTwo => "put two apple in diningtable",
    };
    Generated {
        room: Room::Kitchen,
        world: WorldSpec {
            receptacles: vec![
                r("countertop 1", false, apples),
                r("diningtable 1", false, &[]),
                r("fridge 1", true, &[]),
                r("microwave 1", true, &[]),
                r("sidetable 1", false, &["desklamp 1"]),
                r("sinkbasin 1", false, &[]),
            ],
            task: task.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::household::world::Layout;

    #[test]
    fn splitmix64_gives_the_reference_sequence() {
        // Vigna's splitmix64.c from seed 1234567 (also computed independently in Python).
        let mut r = SplitMix64::new(1_234_567);
        let got: Vec<u64> = (0..5).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [
                6457827717110365317,
                3203168211198807973,
                9817491932198370423,
                4593380528125082431,
                16408922859458223821
            ]
        );
        let mut r = SplitMix64::new(7);
        for n in [1usize, 2, 3, 10, 1000] {
            for _ in 0..100 {
                assert!(r.below(n) < n);
            }
        }
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn generation_never_needs_the_fallback_and_always_builds() {
        for task_type in TaskType::ALL {
            for seed in 0..300u64 {
                let spec = TaskSpec { seed, task_type };
                let mut rng = SplitMix64::new(salted_seed(&spec));
                let g = (0..256).find_map(|_| try_generate(&mut rng, task_type));
                let g = g.unwrap_or_else(|| panic!("{spec:?} needed the fallback"));
                let (_, _, task) =
                    Layout::build(&g.world).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
                assert_eq!(task.task_type, task_type);
            }
            let f = fallback(task_type);
            Layout::build(&f.world).expect("fallback builds");
        }
    }

    #[test]
    fn rooms_fit_their_task_types() {
        for seed in 0..100 {
            let room = |task_type| generate(&TaskSpec { seed, task_type }).room;
            assert_eq!(room(TaskType::Heat), Room::Kitchen);
            assert_eq!(room(TaskType::Cool), Room::Kitchen);
            assert!(matches!(
                room(TaskType::Clean),
                Room::Kitchen | Room::Bathroom
            ));
            assert!(matches!(
                room(TaskType::Examine),
                Room::Bedroom | Room::LivingRoom
            ));
        }
    }
}
