//! Hostile inputs, by class, through the real binary: truncated and mutated model files, values
//! llama.cpp would abort on, broken adapters, things that are not files, odd flag values.
//! None may end the process by a signal or a panic: each is refused with exit 1 and an error
//! naming the file (or, where a mutation leaves a model llama.cpp can run, it runs). Each class
//! prints how many inputs it tried and how many were refused (`--nocapture` shows them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use retroformer_core::rng::SplitMix64;
use retroformer_gguf::{GgmlType, GgufWriter, TinyModel, WriteValue};

fn run(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_retroformer"))
        .args(args)
        .env("RETROFORMER_HOME", home)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run retroformer")
}

/// One token from `model` (with `adapter`): the whole path a model file takes.
fn generate(home: &Path, model: &Path, adapter: Option<&Path>) -> Output {
    let mut args = vec![
        "generate".to_string(),
        "--model".into(),
        model.display().to_string(),
        "--no-fetch".into(),
        "--raw".into(),
        "--prompt".into(),
        "a b".into(),
        "--max-tokens".into(),
        "2".into(),
        "--ctx-size".into(),
        "64".into(),
    ];
    if let Some(a) = adapter {
        args.extend(["--adapter".into(), a.display().to_string()]);
    }
    run(home, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Whether `o` was refused cleanly (exit 1, `error:` naming `file`); panics on a signal, a
/// panic, another exit code, or a refusal that does not name the file.
fn refused(o: &Output, file: &Path, what: &str) -> bool {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code().is_some(),
        "{what}: ended by a signal ({:?}); stderr: {err}",
        o.status
    );
    assert!(!err.contains("panicked"), "{what}: panic: {err}");
    if o.status.success() {
        return false;
    }
    assert_eq!(o.status.code(), Some(1), "{what}: {err}");
    let name = file.file_name().unwrap().to_string_lossy();
    assert!(
        err.contains("error:") && err.contains(name.as_ref()),
        "{what}: the error does not name {name}: {err}"
    );
    true
}

fn tally(class: &str, tried: usize, refused: usize) {
    eprintln!(
        "class {class}: {tried} inputs, {refused} refused, {} ran",
        tried - refused
    );
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn truncated_model_files_are_refused_at_every_length() {
    let home = tempfile::tempdir().unwrap();
    let bytes = TinyModel::llama().writer().to_bytes();
    let cuts: Vec<usize> = (0..24).map(|i| i * bytes.len() / 24).collect();
    for &cut in &cuts {
        let p = write(home.path(), &format!("cut-{cut}.gguf"), &bytes[..cut]);
        let what = format!("truncated at {cut}");
        assert!(refused(
            &run(home.path(), &["models", "info", p.to_str().unwrap()]),
            &p,
            &what
        ));
        assert!(refused(&generate(home.path(), &p, None), &p, &what));
    }
    tally("truncated", cuts.len(), cuts.len());
}

#[test]
fn mutated_bytes_never_take_the_process_down() {
    let home = tempfile::tempdir().unwrap();
    let bytes = TinyModel::llama().writer().to_bytes();
    // The metadata and tensor table are the first few kilobytes; most mutations go there.
    let header_end = bytes.len().min(12_000);
    let mut rng = SplitMix64::new(22);
    let mut n_refused = 0;
    let tries = 64;
    for i in 0..tries {
        let mut b = bytes.clone();
        let at = if i % 4 == 3 {
            header_end + (rng.next_u64() as usize) % (b.len() - header_end)
        } else {
            (rng.next_u64() as usize) % header_end
        };
        b[at] = match i % 3 {
            0 => b[at] ^ (1 << (rng.next_u64() % 8)),
            1 => 0xff,
            _ => 0,
        };
        let p = write(home.path(), &format!("mut-{i}-{at}.gguf"), &b);
        let o = generate(home.path(), &p, None);
        n_refused += usize::from(refused(&o, &p, &format!("byte {at} of mutation {i}")));
    }
    tally("byte mutations", tries, n_refused);
    assert!(
        n_refused > 0,
        "no mutation was refused: the test did not reach the validators"
    );
}

/// Model files with one value changed to what llama.cpp asserts against.
fn semantic_cases() -> Vec<(&'static str, GgufWriter)> {
    let base = || TinyModel::llama().writer();
    let mut cases = Vec::new();
    let mut kv = |name: &'static str, key: &str, v: WriteValue| {
        let mut w = base();
        w.kv(key, v);
        cases.push((name, w));
    };
    kv("no layers", "llama.block_count", WriteValue::U32(0));
    kv(
        "too many layers",
        "llama.block_count",
        WriteValue::U32(4096),
    );
    kv("no heads", "llama.attention.head_count", WriteValue::U32(0));
    kv(
        "kv heads not dividing",
        "llama.attention.head_count_kv",
        WriteValue::U32(3),
    );
    kv(
        "odd rope dims",
        "llama.rope.dimension_count",
        WriteValue::U32(7),
    );
    kv("zero context", "llama.context_length", WriteValue::U32(0));
    kv(
        "nan epsilon",
        "llama.attention.layer_norm_rms_epsilon",
        WriteValue::F32(f32::NAN),
    );
    kv(
        "negative rope base",
        "llama.rope.freq_base",
        WriteValue::F32(-1.0),
    );
    kv(
        "experts without tensors",
        "llama.expert_count",
        WriteValue::U32(8),
    );
    kv(
        "unknown tokenizer",
        "tokenizer.ggml.model",
        WriteValue::Str("bert".into()),
    );
    kv(
        "bos out of range",
        "tokenizer.ggml.bos_token_id",
        WriteValue::U32(1 << 30),
    );
    kv(
        "no tokens",
        "tokenizer.ggml.tokens",
        WriteValue::StrArray(Vec::new()),
    );
    kv("split file", "split.count", WriteValue::U32(3));
    let mut w = base();
    w.remove_tensor("blk.1.ffn_down.weight").tensor_raw(
        "blk.1.ffn_down.weight",
        &[128, 64],
        GgmlType::I32,
        vec![0; 128 * 64 * 4],
    );
    cases.push(("integer weights", w));
    let mut w = base();
    w.remove_tensor("token_embd.weight")
        .tensor_f32("token_embd.weight", &[64, 8], &[0.0; 512]);
    cases.push(("embedding of the wrong vocabulary", w));
    let mut w = base();
    w.remove_tensor("blk.0.attn_k.weight");
    cases.push(("missing tensor", w));
    let mut w = base();
    w.remove_tensor("blk.0.attn_q.weight").tensor_f32(
        "blk.0.attn_q.weight",
        &[64, 32],
        &[0.0; 2048],
    );
    cases.push(("wrong tensor shape", w));
    cases
}

#[test]
fn values_llama_cpp_would_abort_on_are_refused_naming_the_file() {
    let home = tempfile::tempdir().unwrap();
    let cases = semantic_cases();
    for (i, (name, w)) in cases.iter().enumerate() {
        let p = home.path().join(format!("semantic-{i}.gguf"));
        w.write(&p).unwrap();
        let o = generate(home.path(), &p, None);
        assert!(refused(&o, &p, name), "{name}: it ran");
        let err = String::from_utf8_lossy(&o.stderr);
        eprintln!("  {name}: {}", err.lines().last().unwrap_or_default());
    }
    tally("semantic", cases.len(), cases.len());
}

#[test]
fn broken_adapters_are_refused_naming_the_adapter() {
    let home = tempfile::tempdir().unwrap();
    let base = home.path().join("base.gguf");
    TinyModel::llama().writer().write(&base).unwrap();
    let lora = |alpha: f32, arch: &str, target: &str, a: [u64; 2], b: [u64; 2]| {
        let mut w = GgufWriter::lora_adapter(arch, alpha);
        let n = |d: [u64; 2]| (d[0] * d[1]) as usize;
        w.tensor_f32(&format!("{target}.lora_a"), &a, &vec![0.01; n(a)])
            .tensor_f32(&format!("{target}.lora_b"), &b, &vec![0.01; n(b)]);
        w
    };
    let q = "blk.0.attn_q.weight";
    let mut cases = vec![
        ("negative alpha", lora(-1.0, "llama", q, [64, 2], [2, 64])),
        ("nan alpha", lora(f32::NAN, "llama", q, [64, 2], [2, 64])),
        (
            "another architecture",
            lora(4.0, "qwen2", q, [64, 2], [2, 64]),
        ),
        ("wrong shapes", lora(4.0, "llama", q, [32, 2], [2, 64])),
        (
            "a tensor the base lacks",
            lora(4.0, "llama", "blk.9.attn_q.weight", [64, 2], [2, 64]),
        ),
        (
            "the embedding",
            lora(4.0, "llama", "token_embd.weight", [64, 2], [2, 300]),
        ),
    ];
    let mut lone = GgufWriter::lora_adapter("llama", 4.0);
    lone.tensor_f32(&format!("{q}.lora_a"), &[64, 2], &[0.01; 128]);
    cases.push(("lora_a without lora_b", lone));
    let mut model_as_adapter = TinyModel::llama().writer();
    model_as_adapter.kv("general.name", "not an adapter");
    cases.push(("a model given as the adapter", model_as_adapter));
    let good = lora(4.0, "llama", q, [64, 2], [2, 64]).to_bytes();
    let mut n = 0;
    for (i, (name, w)) in cases.iter().enumerate() {
        let p = home.path().join(format!("adapter-{i}.gguf"));
        w.write(&p).unwrap();
        assert!(
            refused(&generate(home.path(), &base, Some(&p)), &p, name),
            "{name}: it ran"
        );
        n += 1;
    }
    for cut in [0, 16, good.len() / 2, good.len() - 1] {
        let p = write(
            home.path(),
            &format!("adapter-cut-{cut}.gguf"),
            &good[..cut],
        );
        assert!(refused(
            &generate(home.path(), &base, Some(&p)),
            &p,
            "truncated adapter"
        ));
        n += 1;
    }
    let p = write(home.path(), "adapter-good.gguf", &good);
    let o = generate(home.path(), &base, Some(&p));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    tally("adapters", n, n);
}

#[test]
fn things_that_are_not_regular_files_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("a-folder.gguf");
    std::fs::create_dir(&dir).unwrap();
    let empty = write(home.path(), "empty.gguf", b"");
    let fifo = home.path().join("fifo.gguf");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let looped = home.path().join("loop.gguf");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let mut n = 0;
    let said = [
        "it is a folder",
        "",
        "it is a named pipe (FIFO)",
        "symbolic links",
    ];
    for (p, said) in [&dir, &empty, &fifo, &looped].into_iter().zip(said) {
        // A FIFO would block a reader forever: being refused at all proves it is not opened.
        let o = generate(home.path(), p, None);
        assert!(refused(&o, p, "not a file"));
        // What the path is, not "no such file".
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(said) && !err.contains("no such file"), "{err}");
        assert!(refused(
            &run(home.path(), &["models", "info", p.to_str().unwrap()]),
            p,
            "info"
        ));
        n += 1;
    }
    let zero = Path::new("/dev/zero");
    let o = generate(home.path(), zero, None);
    assert!(refused(&o, zero, "/dev/zero"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("it is a character device"), "{err}");
    tally("not regular files", n + 1, n + 1);
}

#[test]
fn odd_flag_values_and_profiles_are_refused_with_the_flag_named() {
    let home = tempfile::tempdir().unwrap();
    let base = home.path().join("base.gguf");
    TinyModel::llama().writer().write(&base).unwrap();
    // (A prompt past the tokenizer's cap cannot be one argument: tests/llama_smollm2.rs has it.)
    let profile = write(home.path(), "target.toml", b"name = 3\n[[[");
    let o = run(
        home.path(),
        &[
            "--target",
            profile.to_str().unwrap(),
            "generate",
            "--model",
            base.to_str().unwrap(),
            "--prompt",
            "x",
        ],
    );
    common::assert_clean_failure(&o, &["target.toml"]);
    let o = run(
        home.path(),
        &[
            "generate",
            "--model",
            base.to_str().unwrap(),
            "--raw",
            "--prompt",
            "x",
            "--temperature",
            "nan",
        ],
    );
    common::assert_clean_failure(&o, &["temperature"]);
    tally("odd fields", 2, 2);
}
