//! A session's llama.cpp context from its options: each option checked (context size,
//! threads, sequences, and that the KV cache fits in memory) before llama.cpp sees it.

use llama_cpp_sys_2 as sys;
use retroformer_gguf::GgufFile;
use retroformer_llm::target::{FlashAttention, KvType, TargetProfile};
use retroformer_llm::{LlmError, SessionOptions};

/// Largest context accepted (tokens); larger requests are a clear error, not an allocation
/// failure inside llama.cpp.
pub const MAX_CONTEXT: u32 = 1 << 20;

/// What a session's llama.cpp context is opened with.
pub(crate) struct ContextConfig {
    /// The KV cache's ggml type (keys and values).
    pub kv: sys::ggml_type,
    pub n_ctx: u32,
    pub n_batch: u32,
    pub n_ubatch: u32,
    pub threads: u32,
    pub flash: sys::llama_flash_attn_type,
    /// ggml's reference CPU kernels: batch-invariant logits ([`crate::use_reference_kernels`]).
    pub reference_kernels: bool,
    /// Sequences the context holds at once, each with `n_ctx` cells of its own: 1, or 1 + the
    /// lanes of [`Session::generate_stream`].
    pub n_seq_max: u32,
    /// The profile's [`TargetProfile::numerics`](retroformer_llm::target::TargetProfile::numerics).
    pub numerics: String,
}

/// The context a model of `header`, whose KV cache takes `kv_per_token` bytes a token, opens
/// under `profile` for `opts`, or the option that cannot be.
pub(crate) fn config(
    profile: &TargetProfile,
    header: &GgufFile,
    kv_per_token: Option<u64>,
    opts: &SessionOptions,
) -> Result<ContextConfig, LlmError> {
    let n_ctx = opts.context_size.unwrap_or(profile.context_size);
    if !(16..=MAX_CONTEXT).contains(&n_ctx) {
        return Err(LlmError::InvalidParam {
            field: "context_size",
            message: format!("{n_ctx} is not in [16, {MAX_CONTEXT}]"),
        });
    }
    let threads = threads(opts.threads.unwrap_or_else(|| profile.resolve_threads()))?;
    let sequences = opts.sequences.unwrap_or(1);
    if !(1..=retroformer_llm::MAX_SEQUENCES).contains(&sequences) {
        return Err(LlmError::InvalidParam {
            field: "sequences",
            message: format!(
                "{sequences} is not in [1, {}]",
                retroformer_llm::MAX_SEQUENCES
            ),
        });
    }
    let flash = match profile.flash_attention {
        FlashAttention::Auto => sys::LLAMA_FLASH_ATTN_TYPE_AUTO,
        FlashAttention::On => sys::LLAMA_FLASH_ATTN_TYPE_ENABLED,
        FlashAttention::Off => sys::LLAMA_FLASH_ATTN_TYPE_DISABLED,
    };
    let kv = kv_ggml_type(header, profile.kv_type)?;
    // Sequence 0 holds the shared prefix; one more per batched request.
    let n_seq_max = if sequences > 1 { sequences + 1 } else { 1 };
    if profile.gpu_layers == 0 {
        check_kv_fits(kv_per_token, n_ctx, n_seq_max)?;
    }
    Ok(ContextConfig {
        kv,
        n_ctx,
        n_batch: profile.batch_size.min(n_ctx),
        n_ubatch: profile.ubatch_size.min(profile.batch_size).min(n_ctx),
        threads,
        flash,
        reference_kernels: profile.batch_invariant,
        n_seq_max,
        numerics: profile.numerics(),
    })
}

/// `wanted` threads, at most one per logical core.
fn threads(wanted: u32) -> Result<u32, LlmError> {
    if wanted == 0 {
        return Err(LlmError::InvalidParam {
            field: "threads",
            message: "must be at least 1".into(),
        });
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let threads = wanted.min(cores.clamp(1, 512));
    if threads < wanted {
        tracing::warn!(
            wanted,
            threads,
            "more threads than logical cores requested; using {threads}"
        );
    }
    Ok(threads)
}

/// Refuses a session whose KV cache alone (`n_ctx` cells for each of `n_seq_max` sequences)
/// passes the memory available, on the CPU: llama.cpp would allocate and clear it, and the
/// kernel end the process. (On a GPU the cache is in its memory, unchecked here.)
fn check_kv_fits(per_token: Option<u64>, n_ctx: u32, n_seq_max: u32) -> Result<(), LlmError> {
    let (Some(per_token), Some(free)) = (per_token, retroformer_core::rss::available_bytes())
    else {
        return Ok(());
    };
    let need = per_token.saturating_mul(u64::from(n_ctx) * u64::from(n_seq_max));
    if need <= free {
        return Ok(());
    }
    Err(LlmError::InvalidParam {
        field: "context_size",
        message: format!(
            "{n_ctx} tokens for each of {n_seq_max} sequences need {} MiB of KV cache; {} MiB of memory are available",
            need >> 20,
            free >> 20
        ),
    })
}

/// The ggml type of a `kv_type` cache for the model in `header`, refused (before llama.cpp
/// sees it) when a head size is not a multiple of the type's block.
fn kv_ggml_type(header: &GgufFile, kv: KvType) -> Result<sys::ggml_type, LlmError> {
    let (k, v) = header.head_sizes();
    if let Some(bad) = [k, v].into_iter().find(|d| d % kv.block() != 0) {
        return Err(LlmError::InvalidParam {
            field: "kv_type",
            message: format!(
                "{kv} stores blocks of {} values, which do not divide this model's head size {bad}; use f16",
                kv.block()
            ),
        });
    }
    Ok(match kv {
        KvType::F16 => sys::GGML_TYPE_F16,
        KvType::Q8_0 => sys::GGML_TYPE_Q8_0,
        KvType::Q4_0 => sys::GGML_TYPE_Q4_0,
    })
}
