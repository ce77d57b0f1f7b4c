//! HotPotQA's reflection prompt (our wording): an instruction, one worked example, the failed
//! trial, then `Reflection:`.

use retroformer::agent::reflect::{Failure, ReflectionPrompt};

/// What the reflecting model is asked (our wording).
pub const REFLECT_INSTRUCTION: &str = "You are an advanced reasoning agent that improves by reflecting on its own mistakes. Below is a previous attempt at a question-answering task that used Search, Lookup and Finish actions. The attempt failed: it gave a wrong answer, or ran out of steps before answering. In a few sentences, say why it failed and write a new, concise plan that avoids the same failure.";

/// Our own example of a reflection.
pub const REFLECT_EXAMPLE: &str = "Previous trial:
Question: What year was the university attended by the author of Dracula founded?
Thought 1: I need the author of Dracula, then the university he attended, then its founding year.
Action 1: Search[Dracula]
Observation 1: Dracula is an 1897 Gothic horror novel by Irish author Bram Stoker.
Thought 2: The author is Bram Stoker. I need his university.
Action 2: Search[Bram Stoker university]
Observation 2: Could not find [Bram Stoker university]. Similar: ['Bram Stoker', 'Bram Stoker Award']
Thought 3: I cannot find his university, so I will guess.
Action 3: Finish[1850]
Observation 3: Answer is INCORRECT

Reflection: I searched a phrase that is not a page title and then guessed instead of using the similar titles offered. Next time I will search the exact page, Bram Stoker, look up the word university to find Trinity College Dublin, then search that page for its founding year.";

/// The reflection prompt for one failed attempt.
pub fn reflection_prompt(question: &str, scratchpad: &str) -> String {
    format!(
        "{REFLECT_INSTRUCTION}\nHere is an example:\n\n{REFLECT_EXAMPLE}\n(END OF EXAMPLE)\n\nPrevious trial:\nQuestion: {question}{}\n\nReflection:",
        if scratchpad.starts_with('\n') {
            scratchpad.to_string()
        } else {
            format!("\n{scratchpad}")
        }
    )
}

/// HotPotQA's [`ReflectionPrompt`]. Small models run on into the example's markers: stop there
/// too.
pub struct HotpotqaReflection;

impl ReflectionPrompt for HotpotqaReflection {
    fn prompt(&self, failure: &Failure<'_>) -> String {
        reflection_prompt(failure.task, failure.trajectory)
    }

    fn stops(&self) -> &[&str] {
        &["\n\n", "(END OF EXAMPLE)", "Previous trial:"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use retroformer::agent::reflect::{LlmReflector, Reflector};
    use retroformer_llm::scripted::ScriptedModel;
    use retroformer_llm::{LanguageModel, SamplingParams, SessionOptions};

    #[test]
    fn the_reflector_sends_the_failed_trial_and_keeps_the_text_before_a_blank_line() {
        let model =
            ScriptedModel::new([" I guessed. Next time search the page.\n\nPrevious trial: ..."]);
        let session = model.session(&SessionOptions::default()).unwrap();
        let mut r = LlmReflector::new(session, Box::new(HotpotqaReflection), 100);
        let pad = "\nThought 1: guess\nAction 1: Finish[x]\nObservation 1: Answer is INCORRECT";
        let out = r
            .reflect(&Failure {
                task: "Who?",
                trajectory: pad,
                episode_return: 0.0,
                earlier: &[],
            })
            .unwrap();
        assert_eq!(out.text, "I guessed. Next time search the page.");
        let req = &model.requests()[0];
        assert_eq!(req.prompt, out.prompt);
        assert!(req.prompt.ends_with("Previous trial:\nQuestion: Who?\nThought 1: guess\nAction 1: Finish[x]\nObservation 1: Answer is INCORRECT\n\nReflection:"), "{}", req.prompt);
        assert_eq!(
            req.stop,
            vec!["\n\n", "(END OF EXAMPLE)", "Previous trial:"]
        );
        assert_eq!(req.sampling, SamplingParams::default(), "greedy by default");
    }
}
