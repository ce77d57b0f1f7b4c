//! The LLM layer's conformance suite (`retroformer_llm::conformance`) against the llama.cpp
//! backend with the real SmolLM2-135M and a small LoRA adapter. The same suite runs against the
//! scripted model in `retroformer-llm`'s own tests.

use retroformer_e2e::{opts, smollm2};
use retroformer_gguf::GgufWriter;
use retroformer_llm::conformance::{checks, run, Backend};

#[test]
fn the_llama_backend_keeps_every_session_invariant_of_the_conformance_suite() {
    let model = smollm2();
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("a.gguf");
    let mut w = GgufWriter::lora_adapter("llama", 2.0);
    let base = model.sha256().unwrap();
    w.kv(retroformer::core::records::keys::BASE_SHA256, base)
        .tensor_f32("blk.0.attn_q.weight.lora_a", &[576, 2], &[0.02; 1152])
        .tensor_f32("blk.0.attn_q.weight.lora_b", &[2, 576], &[0.02; 1152]);
    w.write(&adapter).unwrap();
    let failures = run(&Backend {
        model: &model,
        opts: opts(),
        adapter: Some(adapter),
    });
    assert!(
        failures.is_empty(),
        "{} of {} checks failed:\n{}",
        failures.len(),
        checks().len(),
        failures.join("\n")
    );
}
