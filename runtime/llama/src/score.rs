//! Teacher-forced scoring: llama.cpp's logits after every token of a sequence.
//!
//! Generation only needs the last position's logits; the trainer needs all of them, to check
//! its own forward pass against llama.cpp's (model and adapter parity) and to compare
//! log-probabilities. Each call makes a short-lived context sized to the sequence, with an F32
//! KV cache and without flash attention.

use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

use super::{decode, LlamaModel};
use retroformer_llm::{AdapterHandle, LlmError, Token};

/// Longest sequence [`LlamaModel::logits`] scores in one call.
pub const MAX_SCORE_TOKENS: usize = 8192;

struct Ctx(NonNull<sys::llama_context>);

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: created by llama_init_from_model and freed once.
        unsafe { sys::llama_free(self.0.as_ptr()) }
    }
}

struct RawBatch(sys::llama_batch);

impl Drop for RawBatch {
    fn drop(&mut self) {
        // SAFETY: allocated by llama_batch_init.
        unsafe { sys::llama_batch_free(self.0) }
    }
}

impl LlamaModel {
    /// The logits after each of `tokens`, evaluated from position 0 in a fresh context:
    /// `tokens.len()` rows of `n_vocab` floats, row-major. With `adapter`, that LoRA adapter is
    /// applied at `scale` (1.0 is the adapter's own alpha / rank).
    pub fn logits(
        &self,
        tokens: &[Token],
        adapter: Option<(&AdapterHandle, f32)>,
        threads: u32,
    ) -> Result<Vec<f32>, LlmError> {
        let n = tokens.len();
        if n == 0 {
            return Err(LlmError::EmptyPrompt);
        }
        if n > MAX_SCORE_TOKENS {
            return Err(LlmError::InvalidParam {
                field: "tokens",
                message: format!("{n} tokens; at most {MAX_SCORE_TOKENS} are scored at once"),
            });
        }
        if !(1..=256).contains(&threads) {
            return Err(LlmError::InvalidParam {
                field: "threads",
                message: format!("{threads}; expected 1 to 256"),
            });
        }
        let n_vocab = self.inner.n_vocab;
        if let Some(&bad) = tokens.iter().find(|&&t| t < 0 || t >= n_vocab) {
            return Err(LlmError::Tokenize(format!(
                "token {bad} is outside the vocabulary (0..{n_vocab})"
            )));
        }
        let adapter = match adapter {
            None => None,
            Some((h, scale)) => Some((super::resolve_adapter(&self.inner, h, scale)?, scale)),
        };
        let n_ctx = (n as u32).next_multiple_of(256);
        // SAFETY: plain struct of defaults.
        let mut cp = unsafe { sys::llama_context_default_params() };
        cp.n_ctx = n_ctx;
        cp.n_batch = n_ctx;
        cp.n_ubatch = n_ctx.min(512);
        cp.n_seq_max = 1;
        cp.n_threads = threads as i32;
        cp.n_threads_batch = threads as i32;
        cp.no_perf = true;
        // Exact rather than fast: an F32 KV cache (the default is F16) and no flash attention,
        // so that parity checks against an F32 model measure the model, not the cache.
        cp.type_k = sys::GGML_TYPE_F32;
        cp.type_v = sys::GGML_TYPE_F32;
        cp.flash_attn_type = sys::LLAMA_FLASH_ATTN_TYPE_DISABLED;
        cp.swa_full = true;
        let raw = {
            let _w = self.inner.lock.write().unwrap_or_else(|e| e.into_inner());
            // SAFETY: the model is alive; context creation mutates it, hence the write lock.
            unsafe { sys::llama_init_from_model(self.inner.raw(), cp) }
        };
        let ctx = Ctx(NonNull::new(raw).ok_or_else(|| {
            LlmError::Context(format!(
                "llama_init_from_model returned NULL for n_ctx={n_ctx}"
            ))
        })?);
        if let Some((a, scale)) = &adapter {
            let mut ptrs = [a.raw()];
            let mut scales = [*scale];
            // SAFETY: the adapter belongs to this model (checked) and outlives the context
            // (we hold its Arc until the end of this function, after `ctx` is dropped).
            let rc = unsafe {
                sys::llama_set_adapters_lora(
                    ctx.0.as_ptr(),
                    ptrs.as_mut_ptr(),
                    1,
                    scales.as_mut_ptr(),
                )
            };
            if rc != 0 {
                return Err(LlmError::Context(format!(
                    "llama_set_adapters_lora failed with code {rc}"
                )));
            }
        }
        // SAFETY: allocates arrays for `n` tokens with one sequence id each.
        let batch = RawBatch(unsafe { sys::llama_batch_init(n as i32, 0, 1) });
        let mut b = batch.0;
        // SAFETY: the arrays were allocated for `n` entries.
        unsafe {
            for (i, &t) in tokens.iter().enumerate() {
                *b.token.add(i) = t;
                *b.pos.add(i) = i as i32;
                *b.n_seq_id.add(i) = 1;
                *(*b.seq_id.add(i)) = 0;
                *b.logits.add(i) = 1;
            }
        }
        b.n_tokens = n as i32;
        let rc = {
            let _r = self.inner.lock.read().unwrap_or_else(|e| e.into_inner());
            // SAFETY: ctx is live; tokens are in the vocabulary and positions 0..n fit n_ctx.
            unsafe { decode(ctx.0.as_ptr(), b) }
        };
        let rc = rc.map_err(|e| LlmError::Context(format!("llama_decode threw: {e}")))?;
        if rc != 0 {
            return Err(LlmError::Decode(rc));
        }
        let nv = n_vocab as usize;
        let mut out = Vec::with_capacity(n * nv);
        for i in 0..n {
            // SAFETY: logits were requested for every position; the pointer is valid for
            // n_vocab floats until the next decode on this context.
            let row = unsafe { sys::llama_get_logits_ith(ctx.0.as_ptr(), i as i32) };
            if row.is_null() {
                return Err(LlmError::Context(format!("no logits for position {i}")));
            }
            // SAFETY: as above.
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(row, nv) });
        }
        drop(ctx);
        drop(adapter);
        Ok(out)
    }
}
