//! The benchmarks' reference: llama.cpp driven through llama-cpp-2's safe API alone, with the
//! runtime's settings, so that the runtime's overhead is measured as a ratio in the same run.
//! Runtime code never uses it.

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel as BareModel;
use llama_cpp_2::sampling::LlamaSampler;
use retroformer_llm::LlmError;

/// The bare reference: llama-cpp-2's safe API, one context per run, a plain batch loop and a
/// greedy sampler, with the same threads and batch size as the runtime.
pub struct BareLoop {
    model: BareModel,
}

impl BareLoop {
    /// Loads `path` through llama-cpp-2 alone (CPU, no layers offloaded).
    pub fn load(path: &Path) -> Result<Self, LlmError> {
        let backend = crate::reference_backend()?;
        let model = BareModel::load_from_file(
            backend,
            path,
            &LlamaModelParams::default().with_n_gpu_layers(0),
        )
        .map_err(|e| LlmError::Context(format!("reference loop: {e}")))?;
        Ok(Self { model })
    }

    /// Prefill `prompt`, then greedily decode `n_gen` tokens: (prefill ms, decode ms, prompt
    /// tokens).
    pub fn run(
        &self,
        prompt: &str,
        n_gen: u32,
        threads: u32,
        n_ctx: u32,
        n_batch: u32,
        n_ubatch: u32,
    ) -> Result<(f64, f64, usize), LlmError> {
        let r = |e: &dyn std::fmt::Display| LlmError::Context(format!("reference loop: {e}"));
        let backend = crate::reference_backend()?;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_ubatch)
            .with_n_threads(threads as i32)
            .with_n_threads_batch(threads as i32);
        let mut ctx = self.model.new_context(backend, params).map_err(|e| r(&e))?;
        let tokens = self.model.vocab().tokenize(prompt.as_bytes(), true, false);
        let mut batch = LlamaBatch::new(n_batch as usize, 1);
        let t0 = Instant::now();
        let mut pos = 0i32;
        for chunk in tokens.chunks(n_batch as usize) {
            batch.clear();
            for (i, t) in chunk.iter().enumerate() {
                batch
                    .add(*t, pos, &[0], i + 1 == chunk.len())
                    .map_err(|e| r(&e))?;
                pos += 1;
            }
            ctx.decode(&mut batch).map_err(|e| r(&e))?;
        }
        let prefill = t0.elapsed().as_secs_f64() * 1e3;
        let mut sampler = LlamaSampler::greedy();
        let t1 = Instant::now();
        for i in 0..n_gen {
            let tok = sampler.sample(&ctx, batch.n_tokens() - 1);
            if i + 1 == n_gen {
                break; // like the runtime: the last token is sampled, not evaluated
            }
            batch.clear();
            batch.add(tok, pos, &[0], true).map_err(|e| r(&e))?;
            pos += 1;
            ctx.decode(&mut batch).map_err(|e| r(&e))?;
        }
        let decode = t1.elapsed().as_secs_f64() * 1e3;
        Ok((prefill, decode, tokens.len()))
    }
}
