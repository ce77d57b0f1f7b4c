//! End-to-end tests across crates live in `tests/`; fixtures in `data/`. The helpers here are
//! theirs: the fixtures folder and the real SmolLM2 model.

use std::path::PathBuf;
use std::sync::OnceLock;

use retroformer::fetch::{self, FetchOptions};
use retroformer::manifest::{home_dir, Manifest};
use retroformer_llama::{LlamaModel, LoadOptions};
use retroformer_llm::target::TargetProfile;
use retroformer_llm::{
    ChatMessage, GenerateRequest, Generation, LanguageModel, Session, SessionOptions,
};

/// The fixtures folder.
pub fn data_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// The SmolLM2 file, fetched into the cache if missing (CI fetches it first).
pub fn smollm2_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let m = Manifest::find("smollm2-135m-instruct").unwrap();
        fetch::fetch(&m, &home_dir(), FetchOptions::default())
            .unwrap_or_else(|e| panic!("the test model is needed and could not be fetched: {e}"))
    })
    .clone()
}

/// A binary of the workspace, next to the running test's `deps/` folder. `cargo test
/// --workspace` builds every binary before any test runs; run alone, build them first with
/// `cargo build --bins`.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        p.is_file(),
        "{} is not built: run `cargo build --bins` (cargo test --workspace builds it)",
        p.display()
    );
    p
}

/// The model, loaded once per test binary.
pub fn smollm2() -> LlamaModel {
    static MODEL: OnceLock<LlamaModel> = OnceLock::new();
    MODEL.get_or_init(|| load(&smollm2_path())).clone()
}

/// Loads a model file with the CPU profile.
pub fn load(path: &std::path::Path) -> LlamaModel {
    LlamaModel::load(path, LoadOptions::new(TargetProfile::load("cpu").unwrap())).unwrap()
}

/// One thread per session: tests run two at a time on CI's two cores.
pub fn opts() -> SessionOptions {
    SessionOptions {
        context_size: Some(2048),
        threads: Some(1),
        ..Default::default()
    }
}

/// `user`'s message in `model`'s chat template, ready for the assistant's reply.
pub fn chat(model: &dyn LanguageModel, user: &str) -> String {
    model
        .chat_prompt(&[ChatMessage::new("user", user)], true)
        .unwrap()
}

/// Generates `req` on `session` to its end.
pub fn run(session: &mut dyn Session, req: &GenerateRequest) -> Generation {
    session.generate(req, &mut |_| true).unwrap()
}

pub mod serve;

/// A rank-4 LoRA for `model` on every layer's FFN down projection, with weights from a fixed
/// xorshift, written as `dir/adapter.gguf`.
pub fn write_adapter(
    dir: &std::path::Path,
    model: &retroformer_llama::LlamaModel,
    magnitude: f32,
) -> std::path::PathBuf {
    let header = model.header();
    let mut w = retroformer_gguf::GgufWriter::lora_adapter("llama", 4.0);
    w.kv(
        retroformer::core::records::keys::BASE_SHA256,
        model.sha256().unwrap(),
    );
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
    };
    let rank = 4u64;
    for t in header
        .tensors
        .iter()
        .filter(|t| t.name.ends_with("ffn_down.weight"))
    {
        let (n_in, n_out) = (t.dims[0], t.dims[1]);
        let a: Vec<f32> = (0..n_in * rank).map(|_| rnd() * magnitude).collect();
        let b: Vec<f32> = (0..rank * n_out).map(|_| rnd() * magnitude).collect();
        w.tensor_f32(&format!("{}.lora_a", t.name), &[n_in, rank], &a)
            .tensor_f32(&format!("{}.lora_b", t.name), &[rank, n_out], &b);
    }
    let p = dir.join("adapter.gguf");
    w.write(&p).unwrap();
    p
}
