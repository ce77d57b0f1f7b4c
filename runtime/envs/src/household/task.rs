//! The six ALFWorld task types, their goal texts and the goal predicates.
//!
//! The texts are ALFWorld's templates (`alfworld/gen/goal_library.py`) as they appear in the
//! ReAct/Reflexion few-shot prompts, e.g. `put some spraybottle on toilet`, `put a clean lettuce
//! in diningtable`, `look at bowl under the desklamp`, `put two creditcard in dresser`; the
//! prompt file also has `find some apple and put it in sidetable`, which we keep as a third
//! template for the simple put task. The goal predicates are ALFWorld's PDDL goals: an object of
//! the named kind in (or on) a receptacle of the named kind, clean/hot/cool where the task says
//! so; two distinct objects of the kind in the same receptacle; or an object of the kind held
//! while a lamp of the named kind that has been switched on stands at the agent's location.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One of ALFWorld's six task types. The names (`put`, `clean`, `heat`, `cool`, `examine`,
/// `puttwo`) are the ones the ReAct prompt keys use (`react_put_0`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskType {
    /// `put a X in Y` / `put some X on Y` (ALFWorld's `pick_and_place_simple`).
    Put,
    /// `put a clean X in Y` / `clean some X and put it in Y` (`pick_clean_then_place_in_recep`).
    Clean,
    /// `put a hot X in Y` / `heat some X and put it in Y` (`pick_heat_then_place_in_recep`).
    Heat,
    /// `put a cool X in Y` / `cool some X and put it in Y` (`pick_cool_then_place_in_recep`).
    Cool,
    /// `look at X under the desklamp` / `examine the X with the desklamp`
    /// (`look_at_obj_in_light`).
    Examine,
    /// `put two X in Y` / `find two X and put them in Y` (`pick_two_obj_and_place`).
    PutTwo,
}

impl TaskType {
    /// All six, in the order of the ReAct prompt keys' usual listing.
    pub const ALL: [TaskType; 6] = [
        TaskType::Put,
        TaskType::Clean,
        TaskType::Heat,
        TaskType::Cool,
        TaskType::Examine,
        TaskType::PutTwo,
    ];

    /// The short name used by the prompt keys (`react_{name}_{i}`).
    pub fn name(self) -> &'static str {
        match self {
            TaskType::Put => "put",
            TaskType::Clean => "clean",
            TaskType::Heat => "heat",
            TaskType::Cool => "cool",
            TaskType::Examine => "examine",
            TaskType::PutTwo => "puttwo",
        }
    }

    /// ALFWorld's own name for the task type (the prefix of its game folders).
    pub fn alfworld_name(self) -> &'static str {
        match self {
            TaskType::Put => "pick_and_place_simple",
            TaskType::Clean => "pick_clean_then_place_in_recep",
            TaskType::Heat => "pick_heat_then_place_in_recep",
            TaskType::Cool => "pick_cool_then_place_in_recep",
            TaskType::Examine => "look_at_obj_in_light",
            TaskType::PutTwo => "pick_two_obj_and_place",
        }
    }

    /// The type with this short name or ALFWorld name.
    pub fn from_name(name: &str) -> Option<TaskType> {
        TaskType::ALL
            .into_iter()
            .find(|t| t.name() == name || t.alfworld_name() == name)
    }

    /// The goal-text templates of this type, as (text before the object, text between the object
    /// and the target); the target ends the text.
    pub fn templates(self) -> &'static [(&'static str, &'static str)] {
        match self {
            TaskType::Put => &[
                ("put a ", " in "),
                ("put some ", " on "),
                ("find some ", " and put it in "),
            ],
            TaskType::Clean => &[("put a clean ", " in "), ("clean some ", " and put it in ")],
            TaskType::Heat => &[("put a hot ", " in "), ("heat some ", " and put it in ")],
            TaskType::Cool => &[("put a cool ", " in "), ("cool some ", " and put it in ")],
            TaskType::Examine => &[("look at ", " under the "), ("examine the ", " with the ")],
            TaskType::PutTwo => &[("put two ", " in "), ("find two ", " and put them in ")],
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A task: its type, the object kind, the target (a receptacle kind, or for
/// [`TaskType::Examine`] the lamp kind) and the goal text (without the final period).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Task {
    /// The task type.
    pub task_type: TaskType,
    /// The object kind (`apple`).
    pub object: String,
    /// The receptacle kind (`sidetable`), or the lamp kind (`desklamp`) for examine tasks.
    pub target: String,
    /// The goal text as the agent reads it after `Your task is to: ` (no final period).
    pub text: String,
}

/// A lowercase ASCII word (what ALFWorld kinds are).
pub(crate) fn is_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase())
}

impl Task {
    /// The task of this type with the object and target words, phrased with the type's
    /// `template`-th template (taken modulo the number of templates). `None` when the object or
    /// target is not a lowercase word.
    pub fn new(task_type: TaskType, object: &str, target: &str, template: usize) -> Option<Task> {
        if !is_word(object) || !is_word(target) {
            return None;
        }
        let templates = task_type.templates();
        let (before, between) = templates[template % templates.len()];
        Some(Task {
            task_type,
            object: object.to_string(),
            target: target.to_string(),
            text: format!("{before}{object}{between}{target}"),
        })
    }

    /// Reads a goal text in any template of any type (a final period and surrounding white
    /// space are ignored). `None` when no template matches with single-word object and target.
    pub fn parse(text: &str) -> Option<Task> {
        let t = text.trim();
        let t = t.strip_suffix('.').unwrap_or(t);
        for task_type in TaskType::ALL {
            for (before, between) in task_type.templates() {
                let Some(rest) = t.strip_prefix(before) else {
                    continue;
                };
                let Some((object, target)) = rest.split_once(between) else {
                    continue;
                };
                if is_word(object) && is_word(target) {
                    return Some(Task {
                        task_type,
                        object: object.to_string(),
                        target: target.to_string(),
                        text: t.to_string(),
                    });
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_text_of_the_prompt_file_parses_to_its_type() {
        let cases = [
            (
                "put some spraybottle on toilet.",
                TaskType::Put,
                "spraybottle",
                "toilet",
            ),
            (
                "find some apple and put it in sidetable.",
                TaskType::Put,
                "apple",
                "sidetable",
            ),
            (
                "put a soapbottle in garbagecan.",
                TaskType::Put,
                "soapbottle",
                "garbagecan",
            ),
            (
                "put a clean lettuce in diningtable.",
                TaskType::Clean,
                "lettuce",
                "diningtable",
            ),
            (
                "clean some apple and put it in sidetable.",
                TaskType::Clean,
                "apple",
                "sidetable",
            ),
            (
                "heat some egg and put it in diningtable.",
                TaskType::Heat,
                "egg",
                "diningtable",
            ),
            (
                "put a hot apple in fridge.",
                TaskType::Heat,
                "apple",
                "fridge",
            ),
            (
                "cool some pan and put it in stoveburner.",
                TaskType::Cool,
                "pan",
                "stoveburner",
            ),
            ("put a cool mug in shelf.", TaskType::Cool, "mug", "shelf"),
            (
                "look at bowl under the desklamp.",
                TaskType::Examine,
                "bowl",
                "desklamp",
            ),
            (
                "examine the pen with the desklamp.",
                TaskType::Examine,
                "pen",
                "desklamp",
            ),
            (
                "put two creditcard in dresser.",
                TaskType::PutTwo,
                "creditcard",
                "dresser",
            ),
            (
                "find two cellphone and put them in sofa",
                TaskType::PutTwo,
                "cellphone",
                "sofa",
            ),
        ];
        for (text, ty, obj, target) in cases {
            let t = Task::parse(text).unwrap_or_else(|| panic!("{text} does not parse"));
            assert_eq!(
                (t.task_type, t.object.as_str(), t.target.as_str()),
                (ty, obj, target)
            );
            assert_eq!(t.text, text.trim_end_matches('.'));
        }
    }

    #[test]
    fn texts_that_fit_no_template_do_not_parse() {
        for text in [
            "",
            "put",
            "put a  in fridge",
            "put a red apple in fridge",
            "heat the egg",
            "put two X in Y",
        ] {
            assert_eq!(Task::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_new_task_reads_back_as_itself_in_every_template() {
        for ty in TaskType::ALL {
            for i in 0..ty.templates().len() {
                let t = Task::new(ty, "mug", "shelf", i).expect("words");
                assert_eq!(Task::parse(&t.text), Some(t.clone()));
            }
            assert_eq!(TaskType::from_name(ty.name()), Some(ty));
            assert_eq!(TaskType::from_name(ty.alfworld_name()), Some(ty));
        }
        assert_eq!(Task::new(TaskType::Put, "Mug", "shelf", 0), None);
    }
}
