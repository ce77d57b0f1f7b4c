//! HotPotQA's reflection prompts, as Reflexion publishes them (`hotpotqa_runs/prompts.py`,
//! `fewshots.py`), one per agent: ReAct's (a Docstore API; two example failures, a wrong answer
//! given too soon and a loop on a page that does not exist, their long observations shortened
//! here) and chain of thought's (a wrong answer or a phrasing discrepancy with the answer key;
//! with context, two examples: an answer too verbose and a name given incompletely; without,
//! two wrong guesses). Each shows the failed trial with its scratchpad cut to about 1600
//! tokens (for `cot-context` after the question's context, as published), then what went wrong
//! stated plainly (the answer judged incorrect, or the step limit), all in the reflecting
//! model's chat template. Two examples of different failures, so that no single one is there
//! to copy; the agent's own, so that a chain of thought is not told to search pages.

use retroformer::agent::reflect::{ChatFrame, Failure, ReflectionPrompt};

use super::context::truncate_scratchpad;
use super::parse_action;

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

/// Reflexion's reflection instruction for chain of thought with context (`COT_REFLECT_INSTRUCTION`).
pub const COT_REFLECT_INSTRUCTION: &str = "You are an advanced reasoning agent that can improve based on self reflection. You will be given a previous reasoning trial in which you were given access to relevant context and a question to answer. You were unsuccessful in answering the question either because you guessed the wrong answer with Finish[<answer>] or there is a phrasing discrepancy with your provided answer and the answer key. In a few sentences, Diagnose a possible reason for failure or phrasing discrepancy and devise a new, concise, high level plan that aims to mitigate the same failure. Use complete sentences.";

/// Reflexion's reflection instruction for chain of thought without context
/// (`COT_SIMPLE_REFLECT_INSTRUCTION`).
pub const COT_SIMPLE_REFLECT_INSTRUCTION: &str = "You are an advanced reasoning agent that can improve based on self reflection. You will be given a previous reasoning trial in which you were given a question to answer. You were unsuccessful in answering the question either because you guessed the wrong answer with Finish[<answer>] or there is a phrasing discrepancy with your provided answer and the answer key. In a few sentences, Diagnose a possible reason for failure or phrasing discrepancy and devise a new, concise, high level plan that aims to mitigate the same failure. Use complete sentences.";

/// Reflexion's two example reflections for chain of thought with context (`COT_REFLECT`).
pub const COT_REFLECT_EXAMPLES: &str = "Relevant Context: Ernest Hemingway's novel \"The Old Man and the Sea\" tells the story of Santiago, an aging Cuban fisherman, who struggles to catch a giant marlin in the Gulf Stream. The book won the Pulitzer Prize for Fiction in 1953 and contributed to Hemingway's Nobel Prize for Literature in 1954.
Question: Which literary award did \"The Old Man and the Sea\" contribute to Hemingway winning?
Thought: The question is asking which award \"The Old Man and the Sea\" contributed to Hemingway winning. Based on the context, I know the novel won the Pulitzer Prize for Fiction and contributed to his Nobel Prize for Literature.
Action: Finish[Pulitzer Prize for Fiction]

Reflection: My answer was correct based on the context, but may not be the exact answer stored by the grading environment. Next time, I should try to provide a less verbose answer like \"Pulitzer Prize\" or \"Nobel Prize.\"

Context: On 14 October 1947, Chuck Yeager, a United States Air Force test pilot, became the first person to break the sound barrier by flying the Bell X-1 experimental aircraft at an altitude of 45,000 feet.
Charles Elwood \"Chuck\" Yeager (13 February 1923 - 7 December 2020) was a United States Air Force officer, flying ace, and test pilot. He is best known for becoming the first person to break the sound barrier, which he achieved in the Bell X-1 aircraft named Glamorous Glennis. Yeager was also a distinguished fighter pilot during World War II and was credited with shooting down at least 12 enemy aircraft. In 1973, he was inducted into the National Aviation Hall of Fame for his significant contributions to aviation.
Question: Who is the first person to break the sound barrier?
Thought: The question is asking for the first person to break the sound barrier. From the context, I know that Chuck Yeager, a United States Air Force test pilot, was the first person to break the sound barrier.
Action: Finish[Chuck Yeager]

Reflection: Upon reflecting on the incorrect answer I provided, I realize that I may not have given the full name of the individual in question. In the context, both the given name and the nickname were mentioned, and I only used the nickname in my response. This could have been the reason my answer was deemed incorrect. Moving forward, when attempting this question again or similar questions, I will make sure to include the complete name of the person, which consists of their given name, any middle names, and their nickname (if applicable). This will help ensure that my answer is more accurate and comprehensive.";

/// Reflexion's two example reflections for chain of thought without context
/// (`COT_SIMPLE_REFLECTION`).
pub const COT_SIMPLE_REFLECT_EXAMPLES: &str = "Question: What is the elevation range for the area that the eastern sector of the Colorado orogeny extends into?
Thought: Let's think step by step. The eastern sector of Colorado orogeny extends into the Rocky Mountains. The Rocky Mountains rise in elevation from around 1,800 to 14,000 ft, so the answer is 1,800 to 14,000 ft.
Action: Finish[1,800 to 14,000 ft]

Reflection: My reasoning for the elevation range of the eastern sector of the Colorado orogeny failed because I incorrectly associated it with the Rocky Mountains instead of the High Plains. In the future, when attempting this question, I should focus on better understanding the geography and geological formations involved in the Colorado orogeny to avoid confusion.

Question: Musician and satirist Allie Goertz wrote a song about the \"The Simpsons\" character Milhouse, who Matt Groening named after who?
Thought: Let's think step by step. Milhouse was named after a prominent cartoon character, Mickey Mouse, so the answer is Mickey Mouse.
Action: Finish[Mickey Mouse]

Reflection: My reasoning for the naming of the character Milhouse in \"The Simpsons\" failed because I incorrectly assumed that the character was named after a prominent cartoon character, Mickey Mouse. In the future, when attempting this question, I should focus on better researching the background of \"The Simpsons\" and Matt Groening's influences in naming characters to avoid making incorrect assumptions.";

/// Which agent failed: each has its own published reflection prompt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReflectionKind {
    /// ReAct (Search, Lookup, Finish in a Docstore).
    #[default]
    React,
    /// Chain of thought, without context (`cot`).
    Cot,
    /// Chain of thought over the question's gold paragraphs (`cot-context`).
    CotContext,
}

impl ReflectionKind {
    /// The kind for an agent name (`react`, `cot`, `cot-context`).
    pub fn of_agent(agent: &str) -> Self {
        match agent {
            "cot" => Self::Cot,
            "cot-context" => Self::CotContext,
            _ => Self::React,
        }
    }
}

/// Reflexion's budget for the failed trial in a reflection prompt, in tokens.
pub const SCRATCHPAD_TOKENS: usize = 1600;

/// What went wrong, stated plainly from the scratchpad: the answer judged incorrect, or the
/// step limit reached without one.
pub fn failure_fact(scratchpad: &str) -> String {
    let answer = scratchpad
        .lines()
        .rev()
        .filter_map(|l| l.split_once(": ").map(|(_, a)| a.trim()))
        .find_map(|a| parse_action(a).filter(|(name, _)| *name == "Finish"))
        .map(|(_, answer)| answer);
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

/// Chain of thought's reflection prompt for one failed attempt, without a chat template:
/// `task` is the question, preceded by its context for `cot-context` ([`cot_task`]).
pub fn cot_reflection_prompt(kind: ReflectionKind, task: &str, scratchpad: &str) -> String {
    let approx_tokens = |s: &str| s.len().div_ceil(4);
    let pad = truncate_scratchpad(scratchpad.trim(), &approx_tokens, SCRATCHPAD_TOKENS);
    let (instruction, examples) = match kind {
        ReflectionKind::CotContext => (COT_REFLECT_INSTRUCTION, COT_REFLECT_EXAMPLES),
        _ => (COT_SIMPLE_REFLECT_INSTRUCTION, COT_SIMPLE_REFLECT_EXAMPLES),
    };
    format!(
        "{instruction}\nHere are some examples:\n\n{examples}\n(END OF EXAMPLES)\n\nPrevious trial:\n{task}\n{pad}\n\n{}\n\nReflection:",
        failure_fact(scratchpad)
    )
}

/// The task a chain-of-thought reflection is shown: the question, after its context where the
/// agent had one (`context`: the gold paragraphs), as the published prompt shows it.
pub fn cot_task(context: Option<&str>, question: &str) -> String {
    match context {
        Some(c) => format!("Relevant Context: {c}\nQuestion: {question}"),
        None => format!("Question: {question}"),
    }
}

/// HotPotQA's [`ReflectionPrompt`], in the reflecting model's chat template. For the chain of
/// thought kinds the failure's `task` is [`cot_task`]'s text; for ReAct, the question.
#[derive(Default)]
pub struct HotpotqaReflection {
    /// The reflecting model's chat template (plain text when empty).
    pub frame: ChatFrame,
    /// The agent whose failures are reflected on.
    pub kind: ReflectionKind,
}

impl ReflectionPrompt for HotpotqaReflection {
    fn prompt(&self, failure: &Failure<'_>) -> String {
        self.frame.wrap(&match self.kind {
            ReflectionKind::React => reflection_prompt(failure.task, failure.trajectory),
            kind => cot_reflection_prompt(kind, failure.task, failure.trajectory),
        })
    }

    /// Small models run on into the examples' markers: stop there.
    fn stops(&self) -> &[&str] {
        &["(END OF EXAMPLES)", "Previous trial:", "Previous Trial:"]
    }

    fn frame(&self) -> Option<&ChatFrame> {
        Some(&self.frame)
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
            kind: ReflectionKind::React,
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
    fn the_fact_names_an_answer_followed_by_other_words() {
        let pad = "Thought: t\nAction: Finish[VIVA Media AG] END\nObservation: Answer is INCORRECT";
        assert_eq!(
            failure_fact(pad),
            "Your answer \"VIVA Media AG\" was judged incorrect."
        );
    }

    #[test]
    fn a_chain_of_thought_reflects_with_its_own_instruction_examples_and_context() {
        let pad = "\nThought: It is 1972.\nAction: Finish[1972]\nObservation: Answer is INCORRECT";
        let task = cot_task(Some("He was born on 2 March 1972."), "When was he born?");
        let p = cot_reflection_prompt(ReflectionKind::CotContext, &task, pad);
        assert!(p.starts_with(COT_REFLECT_INSTRUCTION));
        assert!(p.contains("Pulitzer Prize") && p.contains("Chuck Yeager"));
        assert!(
            !p.contains("Docstore") && !p.contains("Rome Protocols"),
            "{p}"
        );
        assert!(p.ends_with("Previous trial:\nRelevant Context: He was born on 2 March 1972.\nQuestion: When was he born?\nThought: It is 1972.\nAction: Finish[1972]\nObservation: Answer is INCORRECT\n\nYour answer \"1972\" was judged incorrect.\n\nReflection:"), "{p}");
        let p = cot_reflection_prompt(ReflectionKind::Cot, &cot_task(None, "Q?"), pad);
        assert!(p.starts_with(COT_SIMPLE_REFLECT_INSTRUCTION));
        assert!(p.contains("Colorado orogeny") && !p.contains("Relevant Context"));
        assert_eq!(
            ReflectionKind::of_agent("cot-context"),
            ReflectionKind::CotContext
        );
        assert_eq!(ReflectionKind::of_agent("react"), ReflectionKind::React);
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
