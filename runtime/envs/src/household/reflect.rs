//! The household's reflection prompt, as Reflexion publishes it for ALFWorld
//! (`alfworld_runs/generate_reflections.py`): its instruction, its two real failure logs with
//! their new plans (`reflexion_few_shot_examples.txt`, bundled:
//! [`crate::data::REFLEXION_ALFWORLD_EXAMPLES`]), the failed trajectory (cut to about
//! [`TRAJECTORY_TOKENS`] when very long), `STATUS: FAIL`, the plans of earlier trials, then
//! `New plan:`; all in the reflecting model's chat template. Two examples of different
//! failures (a loop, and a task read the wrong way round), so that no single one is there to
//! copy; 256 tokens; no single-newline stop (a reply opening with a newline was empty).

use retroformer::agent::reflect::{ChatFrame, Failure, ReflectionPrompt};

/// Reflexion's reflection instruction for ALFWorld, word for word (the published query adds
/// ` Here are two examples:` before the examples).
pub const REFLECT_INSTRUCTION: &str = "You will be given the history of a past experience in which you were placed in an environment and given a task to complete. You were unsuccessful in completing the task. Do not summarize your environment, but rather think about the strategy and path you took to attempt to complete the task. Devise a concise, new plan of action that accounts for your mistake with reference to specific actions that you should have taken. For example, if you tried A and B but forgot C, then devise a plan to achieve C with environment-specific actions. You will need this later when you are solving the same task. Give your plan after \"Plan\".";

/// Tokens of a household reflection (Reflexion's: 256).
pub const REFLECTION_TOKENS: u32 = 256;

/// The budget of the failed trajectory in a reflection prompt, in tokens (counted as about
/// four characters each): with the instruction, the examples (~1100 tokens), three earlier
/// plans and the reply, the prompt stays within a household lane.
pub const TRAJECTORY_TOKENS: usize = 1000;

/// Reflexion's two example failures with their new plans: the bundled file (or
/// `$RETROFORMER_DATA/alfworld/reflexion_few_shot_examples.txt`), without trailing space.
pub fn reflexion_examples() -> String {
    let bundled = &crate::data::REFLEXION_ALFWORLD_EXAMPLES;
    let text = crate::data::Source::resolve(None, bundled)
        .read_to_string()
        .or_else(|_| {
            bundled
                .bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .unwrap_or_default();
    text.trim_end().to_string()
}

/// `trajectory` cut to about `budget` tokens (four characters each): its first two lines (the
/// room and the task) kept, then as many of its last lines as fit, whole steps (an action and
/// its observation) at a time, after a line saying how many steps were left out.
pub fn truncate_trajectory(trajectory: &str, budget: usize) -> String {
    let text = trajectory.trim();
    let approx = |s: &str| s.len().div_ceil(4);
    if approx(text) <= budget {
        return text.to_string();
    }
    let lines: Vec<&str> = text.lines().collect();
    let head = lines.len().min(2);
    let mut used = approx(&lines[..head].join("\n"));
    // Start of each step: an action line (`> ...`) after the head.
    let starts: Vec<usize> = (head..lines.len())
        .filter(|&i| lines[i].starts_with('>'))
        .collect();
    let mut keep_from = lines.len();
    for &s in starts.iter().rev() {
        let cost = approx(&lines[s..keep_from].join("\n")) + 1;
        if used + cost > budget {
            break;
        }
        used += cost;
        keep_from = s;
    }
    let left_out = starts.iter().filter(|&&s| s < keep_from).count();
    let mut out = lines[..head].join("\n");
    if left_out > 0 {
        out.push_str(&format!("\n[{left_out} earlier steps left out]"));
    }
    for l in &lines[keep_from..] {
        out.push('\n');
        out.push_str(l);
    }
    out
}

/// The reflection prompt for one failed trajectory, without a chat template: Reflexion's
/// query (`_generate_reflection_query`) with `examples` as its few-shot examples.
pub fn reflection_prompt(examples: &str, trajectory: &str, past_plans: &[String]) -> String {
    let mut s = format!(
        "{REFLECT_INSTRUCTION} Here are two examples:\n\n{}\n\n{}\n\nSTATUS: FAIL",
        examples.trim_end(),
        truncate_trajectory(trajectory, TRAJECTORY_TOKENS)
    );
    if !past_plans.is_empty() {
        s.push_str("\n\nPlans from past attempts:\n");
        for (i, p) in past_plans.iter().enumerate() {
            s.push_str(&format!("Trial #{i}: {}\n", p.trim()));
        }
    }
    s.push_str("\n\nNew plan:");
    s
}

/// Openings of lines that mean a household reflection has gone on to write a trajectory: an
/// action, the world's observations, the prompt's own markers. (`On the ...` and `The ...`
/// observations are left out: a plan may well open a line so.)
pub const TRAJECTORY_LINES: [&str; 17] = [
    ">",
    "think:",
    "STATUS:",
    "Your task is",
    "Here is the task",
    "You are in the middle of a room",
    "Nothing happens.",
    "You pick up the",
    "You put the",
    "You open the",
    "You close the",
    "You are carrying",
    "You are not carrying",
    "You are facing the",
    "You turn on the",
    "Plans from past attempts",
    "Trial #",
];

/// The household's [`ReflectionPrompt`], in the reflecting model's chat template.
pub struct HouseholdReflection {
    /// The reflecting model's chat template (plain text when empty).
    pub frame: ChatFrame,
    /// Reflexion's two example failures ([`reflexion_examples`]).
    pub examples: String,
}

impl HouseholdReflection {
    /// The prompt in `frame`, with the bundled examples.
    pub fn new(frame: ChatFrame) -> Self {
        Self {
            frame,
            examples: reflexion_examples(),
        }
    }
}

impl ReflectionPrompt for HouseholdReflection {
    fn prompt(&self, failure: &Failure<'_>) -> String {
        self.frame.wrap(&reflection_prompt(
            &self.examples,
            failure.trajectory,
            failure.earlier,
        ))
    }

    /// A blank line (the examples' plans are one paragraph), or the start of an invented
    /// action, status or task.
    fn stops(&self) -> &[&str] {
        &[
            "\n\n",
            "\n>",
            "STATUS:",
            "Your task is to:",
            "You are in the middle of a room",
        ]
    }

    fn frame(&self) -> Option<&ChatFrame> {
        Some(&self.frame)
    }

    fn trajectory_lines(&self) -> &[&str] {
        &TRAJECTORY_LINES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use retroformer::agent::reflect::{LlmReflector, Reflector};
    use retroformer_llm::scripted::ScriptedModel;
    use retroformer_llm::{LanguageModel, SamplingParams, SessionOptions};

    const PAD: &str = "You are in the middle of a room. Looking quickly around you, you see a desk 1.\nYour task is to: put a pen in desk.\n> look\nYou are in the middle of a room. Looking quickly around you, you see nothing.";

    #[test]
    fn the_prompt_is_reflexions_instruction_two_real_failures_the_trial_and_new_plan() {
        let ex = reflexion_examples();
        assert_eq!(ex.matches("STATUS: FAIL").count(), 2);
        assert_eq!(ex.matches("New plan:").count(), 2);
        let p = reflection_prompt(&ex, PAD, &[]);
        assert!(p.starts_with(&format!(
            "{REFLECT_INSTRUCTION} Here are two examples:\n\nYou are in the middle of a room."
        )));
        assert!(p.contains("Give your plan after \"Plan\". Here are two examples:"));
        assert!(p.contains("In the next trial, I will go to desk 1, find the lamp, then look for the bowl under the desklamp.\n\nYou are in the middle of a room. Looking quickly around you, you see a desk 1.\n"));
        assert!(
            p.ends_with(&format!("{PAD}\n\nSTATUS: FAIL\n\nNew plan:")),
            "{p}"
        );
        // No copyable egg of our own any more.
        assert!(!p.contains("egg"));
    }

    #[test]
    fn earlier_plans_are_listed_as_reflexion_lists_them() {
        let p = reflection_prompt("EX", PAD, &["a".into(), " b\n".into()]);
        assert!(p.ends_with(
            "STATUS: FAIL\n\nPlans from past attempts:\nTrial #0: a\nTrial #1: b\n\n\nNew plan:"
        ));
    }

    #[test]
    fn a_very_long_trajectory_keeps_its_task_and_its_last_whole_steps() {
        let mut pad = String::from("Room line.\nYour task is to: x.\n");
        for i in 0..400 {
            pad.push_str(&format!(
                "> go to shelf {i}\nOn the shelf {i}, you see nothing.\n"
            ));
        }
        let cut = truncate_trajectory(&pad, 300);
        assert!(cut.len() <= 300 * 4, "{}", cut.len());
        assert!(cut.starts_with("Room line.\nYour task is to: x.\n["));
        assert!(cut.ends_with("> go to shelf 399\nOn the shelf 399, you see nothing."));
        let left_out: usize = cut.lines().nth(2).unwrap()[1..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let kept = cut.matches("> go to").count();
        assert_eq!(left_out + kept, 400);
        let first_kept = cut.lines().nth(3).unwrap();
        assert_eq!(first_kept, format!("> go to shelf {left_out}"));
        // A short one is left as it is.
        assert_eq!(truncate_trajectory(PAD, 300), PAD);
    }

    #[test]
    fn the_reflector_asks_in_its_chat_template_without_a_newline_stop_and_cuts_invented_steps() {
        let model = ScriptedModel::new([
            " I only looked. I should have gone to desk 1 first.\n> go to desk 1\nOn the desk 1",
        ]);
        let session = model.session(&SessionOptions::default()).unwrap();
        let prompt = HouseholdReflection::new(ChatFrame::of(&model));
        let mut r = LlmReflector::new(session, Box::new(prompt), REFLECTION_TOKENS);
        let out = r
            .reflect(&Failure {
                task: "put a pen in desk",
                trajectory: PAD,
                episode_return: 0.0,
                earlier: &[],
            })
            .unwrap();
        assert_eq!(
            out.text,
            "I only looked. I should have gone to desk 1 first."
        );
        let req = &model.requests()[0];
        assert_eq!(req.prompt, out.prompt);
        assert!(req
            .prompt
            .starts_with("<user>You will be given the history of a past experience"));
        assert!(req
            .prompt
            .ends_with("STATUS: FAIL\n\nNew plan:</user>\n<assistant>"));
        assert_eq!(req.max_tokens, 256);
        assert!(!req.stop.contains(&"\n".to_string()));
        assert!(req.stop.contains(&"\n\n".to_string()));
        assert_eq!(req.sampling, SamplingParams::default());
    }

    #[test]
    fn replies_that_run_on_into_a_trajectory_are_cut_where_it_starts() {
        let lines = &TRAJECTORY_LINES;
        let clean = retroformer::agent::reflect::clean;
        assert_eq!(
            clean("I should open drawer 1.\nYou open the drawer 1.", lines),
            "I should open drawer 1."
        );
        assert_eq!(
            clean("Take the mug.\nthink: now heat it", lines),
            "Take the mug."
        );
        assert_eq!(clean("> go to desk 1\nOn the desk 1", lines), "");
        assert_eq!(
            clean(
                "On the next trial I will go to desk 1.\nThen use the desklamp.",
                lines
            ),
            "On the next trial I will go to desk 1.\nThen use the desklamp."
        );
    }
}
