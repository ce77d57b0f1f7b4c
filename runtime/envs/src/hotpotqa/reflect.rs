//! HotPotQA's reflection prompt, as Reflexion publishes it (`hotpotqa_runs/prompts.py`,
//! `fewshots.py`): its instruction, its two example failures (a wrong answer given too soon,
//! and a loop on a page that does not exist; their long observations shortened here), the
//! failed trial with its scratchpad cut to about 1600 tokens, then what went wrong stated
//! plainly (the answer judged incorrect, or the step limit), all in the reflecting model's chat
//! template. Two examples of different failures, so that no single one is there to copy.

use retroformer::agent::reflect::{ChatFrame, Failure, ReflectionPrompt};

use super::context::truncate_scratchpad;

/// Reflexion's reflection instruction for HotPotQA.
pub const REFLECT_INSTRUCTION: &str = "You are an advanced reasoning agent that can improve based on self refection. You will be given a previous reasoning trial in which you were given access to an Docstore API environment and a question to answer. You were unsuccessful in answering the question either because you guessed the wrong answer with Finish[<answer>], or you used up your set number of reasoning steps. In a few sentences, Diagnose a possible reason for failure and devise a new, concise, high level plan that aims to mitigate the same failure. Use complete sentences.";

/// Reflexion's two example reflections (`REFLECTIONS`), their observations shortened.
pub const REFLECT_EXAMPLES: &str = "Previous Trial:
Question: The Rome Protocols were signed by three Prime Ministers one of which was assassinated as part of what?
Thought 1: I need to search Rome Protocols, find the three Prime Ministers, then find what they were assassinated as part of.
Action 1: Search[Rome Protocols]
Observation 1: The Rome Protocols were a series of three international agreements concluded in Rome on 17 March 1934 between the governments of Austria, Hungary and Italy. They were signed by Italian Prime Minister Benito Mussolini, Austrian Chancellor Engelbert Dollfuss and Hungarian Prime Minister Gyula Gömbös.
Thought 2: The three Prime Ministers were Benito Mussolini, Engelbert Dollfuss, and Gyula Gömbös. I need to search Benito Mussolini and find what he was assassinated as part of.
Action 2: Search[Benito Mussolini]
Observation 2: Benito Amilcare Andrea Mussolini (29 July 1883 – 28 April 1945) was an Italian politician and journalist who founded and led the National Fascist Party (PNF). [...]
Thought 3: Benito Mussolini was assassinated as part of the collapse of the Axis powers during World War II. So the Rome Protocols were signed by three Prime Ministers one of which was assassinated as part of World War II.
Action 3: Finish[World War II]

Reflection: I searched one of the prime ministers involved in the signing, then attemted to answer right away. I should have searched each of the prime ministers, then looked up 'death' on each of their pages in order to get more information before answering.

Previous Trial:
Question: Kam Heskin plays Paige Morgan in a 2004 film directed by who?
Thought 1: I need to search Kam Heskin and Paige Morgan, find the 2004 film they are in, then find the director of the film.
Action 1: Search[Kam Heskin]
Observation 1: Kam Erika Heskin (born May 8, 1973) is an American actress. [...] Heskin went on in 2003 to play Elizabeth Bennet in an independent film Pride & Prejudice: A Latter-Day Comedy, Robin in Charmed (2004), and Paige Morgan in The Prince and Me film franchise (2006–2010).
Thought 2: Kam Heskin plays Paige Morgan in The Prince and Me film franchise. I need to search The Prince and Me film franchise and find the director of the 2004 film.
Action 2: Search[The Prince and Me film franchise]
Observation 2: Could not find [The Prince and Me film franchise]. Similar: ['Kam Heskin', 'Prince of Persia', 'Harry Potter and the Half-Blood Prince (film)']
Thought 3: I need to search The Prince & Me (2004 film).
Action 3: Search[The Prince & Me (2004 film)]
Observation 3: Could not find [The Prince & Me (2004 film)]. Similar: ['The Prince & Me', 'The Prince & Me 2: The Royal Wedding', 'Kam Heskin']
Thought 4: I need to search The Prince & Me (2004 film) instead.
Action 4: Search[The Prince & Me (2004 film)]
Observation 4: Could not find [The Prince & Me (2004 film)]. Similar: ['The Prince & Me', 'The Prince & Me 2: The Royal Wedding', 'Kam Heskin']

Reflection: I got stuck in a loop where I kept trying to search 'The Prince & Me (2004 film)' but the page could not be found. Instead I should have tried to search the similar results that had a similar name to see and they were made in 2004.";

/// Reflexion's budget for the failed trial in a reflection prompt, in tokens.
pub const SCRATCHPAD_TOKENS: usize = 1600;

/// What went wrong, stated plainly from the scratchpad: the answer judged incorrect, or the
/// step limit reached without one.
pub fn failure_fact(scratchpad: &str) -> String {
    let answer = scratchpad
        .lines()
        .rev()
        .filter_map(|l| l.split_once(": ").map(|(_, a)| a.trim()))
        .find_map(|a| a.strip_prefix("Finish[")?.strip_suffix(']'));
    match answer {
        Some(a) => format!("Your answer \"{a}\" was judged incorrect."),
        None => "You ran out of steps before giving an answer.".into(),
    }
}

/// The reflection prompt for one failed attempt, without a chat template. Tokens are counted
/// as about four characters each (the prompt is built without the model's tokenizer).
pub fn reflection_prompt(question: &str, scratchpad: &str) -> String {
    let approx_tokens = |s: &str| s.len().div_ceil(4);
    let pad = truncate_scratchpad(scratchpad.trim(), &approx_tokens, SCRATCHPAD_TOKENS);
    format!(
        "{REFLECT_INSTRUCTION}\nHere are some examples:\n\n{REFLECT_EXAMPLES}\n(END OF EXAMPLES)\n\nPrevious trial:\nQuestion: {question}\n{pad}\n\n{}\n\nReflection:",
        failure_fact(scratchpad)
    )
}

/// HotPotQA's [`ReflectionPrompt`], in the reflecting model's chat template.
#[derive(Default)]
pub struct HotpotqaReflection {
    /// The reflecting model's chat template (plain text when empty).
    pub frame: ChatFrame,
}

impl ReflectionPrompt for HotpotqaReflection {
    fn prompt(&self, failure: &Failure<'_>) -> String {
        self.frame
            .wrap(&reflection_prompt(failure.task, failure.trajectory))
    }

    /// Small models run on into the examples' markers: stop there.
    fn stops(&self) -> &[&str] {
        &["(END OF EXAMPLES)", "Previous trial:", "Previous Trial:"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use retroformer::agent::reflect::{LlmReflector, Reflector};
    use retroformer_llm::scripted::ScriptedModel;
    use retroformer_llm::{LanguageModel, SamplingParams, SessionOptions};

    #[test]
    fn the_reflector_gets_the_failed_trial_and_the_fact_in_the_chat_template() {
        let model =
            ScriptedModel::new([" I guessed. Next time search the page.\nThought 4: Search[x]"]);
        let session = model.session(&SessionOptions::default()).unwrap();
        let prompt = HotpotqaReflection {
            frame: ChatFrame::of(&model),
        };
        let mut r = LlmReflector::new(session, Box::new(prompt), 100);
        let pad = "\nThought 1: guess\nAction 1: Finish[x]\nObservation 1: Answer is INCORRECT";
        let out = r
            .reflect(&Failure {
                task: "Who?",
                trajectory: pad,
                episode_return: 0.0,
                earlier: &[],
            })
            .unwrap();
        // The invented trajectory line is cut.
        assert_eq!(out.text, "I guessed. Next time search the page.");
        let req = &model.requests()[0];
        assert_eq!(req.prompt, out.prompt);
        assert!(req
            .prompt
            .starts_with("<user>You are an advanced reasoning agent"));
        assert!(req.prompt.ends_with("Previous trial:\nQuestion: Who?\nThought 1: guess\nAction 1: Finish[x]\nObservation 1: Answer is INCORRECT\n\nYour answer \"x\" was judged incorrect.\n\nReflection:</user>\n<assistant>"), "{}", req.prompt);
        assert_eq!(req.sampling, SamplingParams::default(), "greedy by default");
        assert!(!req.stop.contains(&"\n".to_string()));
    }

    #[test]
    fn the_fact_says_which_answer_was_wrong_or_that_the_steps_ran_out() {
        let answered = "Thought 1: t\nAction 1: Search[A]\nObservation 1: o\nThought 2: t\nAction 2: Finish[Paris, France]\nObservation 2: Answer is INCORRECT";
        assert_eq!(
            failure_fact(answered),
            "Your answer \"Paris, France\" was judged incorrect."
        );
        let halted = "Thought 1: t\nAction 1: Search[A]\nObservation 1: o";
        assert_eq!(
            failure_fact(halted),
            "You ran out of steps before giving an answer."
        );
    }

    #[test]
    fn a_long_trial_is_cut_to_the_published_budget() {
        let long_obs = "word ".repeat(3000);
        let pad = format!(
            "Thought 1: t\nAction 1: Search[A]\nObservation 1: {long_obs}\nThought 2: t\nAction 2: Finish[b]\nObservation 2: Answer is INCORRECT"
        );
        let p = reflection_prompt("Q?", &pad);
        assert!(p.len() < REFLECT_EXAMPLES.len() + 8000, "{}", p.len());
        assert!(p.contains("Observation 1: [observation shortened]"));
        assert!(p.contains("Action 2: Finish[b]"));
    }
}
