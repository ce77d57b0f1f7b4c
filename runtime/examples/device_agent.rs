//! A device agent with the device runtime alone (no environments, no lab, no command line):
//! a model answers questions; a wrong answer gets a reflection from the same model, in a
//! session of its own, and the next trial sees it (Reflexion, through the agent core).
//!
//! ```sh
//! cargo run --release -p retroformer --no-default-features --features llama \
//!     --example device_agent -- [MODEL] [OUT]
//! ```
//!
//! MODEL is an installed manifest name or a GGUF path (default: SmolLM2-135M, installed by
//! `retroformer models fetch smollm2-135m-instruct`); OUT the run folder (default: a folder
//! under the system's temporary folder). This build cannot download models.

use std::path::PathBuf;

use retroformer::agent::reflect::{Failure, LlmReflector, Reflection, ReflectionPrompt, Reflector};
use retroformer::agent::runner::{
    run_trials, Attempt, RunConfig, RunError, TaskInfo, TaskResult, TrialAgent,
};
use retroformer::backend;
use retroformer::llm::target::TargetProfile;
use retroformer::llm::{ChatMessage, GenerateRequest, LanguageModel, Session, SessionOptions};

const QUESTIONS: [(&str, &str); 4] = [
    ("What is 7 times 8? Answer with the number.", "56"),
    (
        "What is the capital of France? Answer with one word.",
        "Paris",
    ),
    (
        "How many legs does a spider have? Answer with the number.",
        "8",
    ),
    ("What is 15 plus 27? Answer with the number.", "42"),
];

/// The reflection prompt: the question, the wrong answer, a request for a short plan.
struct Plan;

impl ReflectionPrompt for Plan {
    fn prompt(&self, f: &Failure<'_>) -> String {
        format!(
            "Question: {}\nA previous answer was judged wrong: {}\nIn one sentence, say how to get it right.\nAdvice:",
            f.task,
            f.trajectory.trim()
        )
    }

    fn stops(&self) -> &[&str] {
        &["\n"]
    }
}

struct Agent<'a> {
    model: &'a dyn LanguageModel,
    session: Box<dyn Session>,
    reflector: LlmReflector,
}

impl TrialAgent for Agent<'_> {
    fn attempt(
        &mut self,
        i: usize,
        earlier: &[TaskResult],
        _trial: u32,
    ) -> Result<Attempt, RunError> {
        let (q, gold) = QUESTIONS[i];
        let notes: Vec<String> = earlier
            .iter()
            .filter_map(|r| r.reflection.as_ref().map(|x| format!("Advice: {}", x.text)))
            .collect();
        let user = format!(
            "{}{q}",
            notes.iter().map(|n| format!("{n}\n")).collect::<String>()
        );
        let prompt = self
            .model
            .chat_prompt(&[ChatMessage::new("user", user)], true)
            .map_err(retroformer::agent::AgentError::from)?;
        let g = self
            .session
            .generate(&GenerateRequest::new(prompt, 24), &mut |_| true)
            .map_err(retroformer::agent::AgentError::from)?;
        let success = g.text.contains(gold);
        Ok(Attempt {
            answer: Some(g.text.trim().to_string()),
            success,
            halted: false,
            episode_return: f32::from(u8::from(success)),
            steps: Vec::new(),
            scratchpad: g.text,
        })
    }

    fn reflect(&mut self, i: usize, a: &Attempt, _: &[TaskResult]) -> Result<Reflection, RunError> {
        Ok(self.reflector.reflect(&Failure {
            task: QUESTIONS[i].0,
            trajectory: &a.scratchpad,
            episode_return: a.episode_return,
            earlier: &[],
        })?)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args
        .next()
        .unwrap_or_else(|| "smollm2-135m-instruct".into());
    let out = args.next().map(PathBuf::from).unwrap_or_else(|| {
        std::env::temp_dir().join(format!("device-agent-{}", std::process::id()))
    });
    let profile = TargetProfile::load("cpu")?;
    let model = backend::load_named(&name, &profile, None)?;
    let opts = SessionOptions {
        context_size: Some(1024),
        ..Default::default()
    };
    let mut agent = Agent {
        model: model.as_ref(),
        session: model.session(&opts)?,
        reflector: LlmReflector::new(model.session(&opts)?, Box::new(Plan), 48),
    };
    let tasks: Vec<TaskInfo> = QUESTIONS
        .iter()
        .enumerate()
        .map(|(i, (q, gold))| TaskInfo {
            id: format!("q{i}"),
            question: (*q).into(),
            gold: (*gold).into(),
        })
        .collect();
    let cfg = RunConfig {
        agent: "device".into(),
        trials: 3,
        strategy: "reflexion".into(),
        memory: 1,
        max_steps: 1,
        actor: name.clone(),
        reflector: "actor".into(),
        reflector_adapter: None,
        reflector_temperature: 0.0,
        reflector_seed: 0,
        env: Default::default(),
        ..Default::default()
    };
    let summaries = run_trials(&tasks, &mut agent, &cfg, &out, &mut |r| {
        println!(
            "trial {} {}: {}",
            r.trial + 1,
            r.task_id,
            if r.success { "right" } else { "wrong" }
        );
    })?;
    let rates: Vec<String> = summaries
        .iter()
        .map(|s| format!("{:.2}", s.success_rate))
        .collect();
    println!(
        "success by trial: {} (results in {})",
        rates.join(" "),
        out.display()
    );
    Ok(())
}
