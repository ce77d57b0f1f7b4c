//! The agent-level suite of `retroformer bench`: a fixed small set of tasks from each
//! environment of the registry, greedy decoding, no reflections, so that two machines or two
//! commits can be compared on the same work (success, tokens, wall time per task). Each
//! environment chooses its tasks ([`retroformer_envs::Environment::bench`]); with the data
//! bundled, every machine runs the same ones.

use super::{AgentTask, BenchError};
use retroformer_envs::Registry;
use retroformer_llm::{LanguageModel, SessionOptions};

/// Runs the suite with `model` (called `name`) as the actor: every environment's bench
/// episodes (`quick`: the short suite).
pub fn run(
    registry: &Registry,
    model: &dyn LanguageModel,
    name: &str,
    threads: u32,
    quick: bool,
    progress: &dyn Fn(&str),
) -> Result<Vec<AgentTask>, BenchError> {
    let opts = SessionOptions {
        context_size: Some(4096),
        threads: Some(threads),
        ..Default::default()
    };
    let mut out = Vec::new();
    for env in registry.all() {
        for e in env.bench(model, &opts, quick, progress)? {
            out.push(AgentTask {
                env: env.name().into(),
                task: e.task,
                model: name.into(),
                success: e.success,
                calls: e.calls,
                evaluated_tokens: e.evaluated_tokens,
                reused_tokens: e.reused_tokens,
                generated_tokens: e.generated_tokens,
                wall_ms: e.wall_ms,
            });
        }
    }
    Ok(out)
}
