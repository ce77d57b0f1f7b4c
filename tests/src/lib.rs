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
