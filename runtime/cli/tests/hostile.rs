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
    let tiny_sha256 = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(std::fs::read(&base).unwrap());
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    // Each records the base, so that each is refused for what is wrong with it.
    let lora = |alpha: f32, arch: &str, target: &str, a: [u64; 2], b: [u64; 2]| {
        let mut w = GgufWriter::lora_adapter(arch, alpha);
        w.kv(
            retroformer_core::records::keys::BASE_SHA256,
            tiny_sha256.as_str(),
        );
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
    // The base rule: another recorded base is refused, with or without --any-base; none
    // recorded only with it.
    for (recorded, any_base, runs) in [
        (Some("0".repeat(64)), false, false),
        (Some("0".repeat(64)), true, false),
        (None, false, false),
        (None, true, true),
    ] {
        let mut w = GgufWriter::lora_adapter("llama", 4.0);
        if let Some(r) = &recorded {
            w.kv(retroformer_core::records::keys::BASE_SHA256, r.as_str());
        }
        w.tensor_f32(&format!("{q}.lora_a"), &[64, 2], &[0.01; 128])
            .tensor_f32(&format!("{q}.lora_b"), &[2, 64], &[0.01; 128]);
        let p = home
            .path()
            .join(format!("base-{recorded:?}-{any_base}.gguf"));
        w.write(&p).unwrap();
        let mut args = vec!["generate", "--model", base.to_str().unwrap(), "--no-fetch"];
        args.extend([
            "--raw",
            "--prompt",
            "a b",
            "--max-tokens",
            "2",
            "--ctx-size",
            "64",
        ]);
        args.extend(["--adapter", p.to_str().unwrap()]);
        if any_base {
            args.push("--any-base");
        }
        let o = run(home.path(), &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.success(), runs, "{recorded:?} {any_base}: {err}");
        if !runs {
            assert!(err.contains("base"), "{err}");
        }
        n += 1;
    }
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

#[test]
fn a_vocabulary_whose_tokeniser_is_quadratic_in_the_text_is_refused_by_the_probe() {
    let home = tempfile::tempdir().unwrap();
    // User-defined tokens that match almost every byte: llama.cpp splits the text at each
    // match and walks its list of pieces from the start for each, quadratic in the text.
    let mut slow = TinyModel::llama();
    slow.user_defined = ('a'..='z').map(String::from).chain([" ".into()]).collect();
    let p = home.path().join("quadratic-vocab.gguf");
    slow.writer().write(&p).unwrap();
    let started = std::time::Instant::now();
    let o = generate(home.path(), &p, None);
    assert!(refused(&o, &p, "quadratic vocabulary"), "it ran");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tokenising slow"), "{err}");
    assert!(started.elapsed().as_secs() < 120, "{:?}", started.elapsed());
    // The ordinary tiny vocabulary passes the same check.
    let ok = home.path().join("ordinary.gguf");
    TinyModel::llama().writer().write(&ok).unwrap();
    let o = generate(home.path(), &ok, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_model_truncated_while_it_generates_ends_the_run_with_a_message_not_a_bare_sigbus() {
    use std::io::BufRead;
    let home = tempfile::tempdir().unwrap();
    let model = home.path().join("shrinking.gguf");
    std::fs::copy(common::smollm2_path(), &model).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_retroformer"))
        .args(["generate", "--model", model.to_str().unwrap(), "--no-fetch"])
        .args([
            "--raw",
            "--prompt",
            "Once upon a time",
            "--max-tokens",
            "1500",
        ])
        .args(["--ctx-size", "2048", "--threads", "1"])
        .env("RETROFORMER_HOME", home.path())
        .env("RUST_BACKTRACE", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    // The session line comes after the load (the file is mapped) and before generating.
    while !seen.contains("session:") {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "ended early: {seen}");
        seen.push_str(&line);
    }
    std::fs::File::options()
        .write(true)
        .open(&model)
        .unwrap()
        .set_len(0)
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{status:?}: {seen}{rest}");
    assert!(
        rest.contains("shrank") && rest.contains("shrinking.gguf"),
        "{rest}"
    );
}

#[test]
fn a_model_swapped_over_its_path_again_and_again_never_reaches_llama_cpp_unchecked() {
    let home = tempfile::tempdir().unwrap();
    let good = TinyModel::llama().writer().to_bytes();
    let (_, crasher) = semantic_cases()
        .into_iter()
        .find(|(name, _)| *name == "kv heads not dividing")
        .expect("the case");
    let crasher = crasher.to_bytes();
    let path = home.path().join("swapped.gguf");
    std::fs::write(&path, &good).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Renames a checked-good file and a crasher over the path, turn about, as fast as it can.
    let swapper = {
        let (stop, path, dir) = (stop.clone(), path.clone(), home.path().to_path_buf());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let tmp = dir.join(format!("next-{}", i % 2));
                std::fs::write(&tmp, if i.is_multiple_of(2) { &crasher } else { &good }).unwrap();
                std::fs::rename(&tmp, &path).unwrap();
                i += 1;
            }
        })
    };
    for _ in 0..12 {
        let o = generate(home.path(), &path, None);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{:?}: {err}",
            o.status
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
}
