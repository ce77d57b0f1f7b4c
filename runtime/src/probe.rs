//! The load probe of a binary: before this process's llama.cpp reads a model or an adapter that
//! it has not read before, a child process (the binary itself, run with a probe command) loads
//! it and decodes one token. What the validators cannot rule out (an assert that aborts, a bad
//! pointer in a kernel) then ends the child, and the file is refused with the signal named.
//!
//! A verdict is kept under `$RETROFORMER_HOME/probed/`, keyed by the files' identity (device,
//! inode, size, modification and change times), the profile and this build's version, so each
//! file is probed once; a file changed in place has a new identity and is probed again, even
//! with its size and modification time put back (the change time cannot be: the kernel sets
//! it). Only successes are kept: a refused file is probed again next time (and refused again).
//! A verdict is believed only where no one else can have written it: the folder and the file
//! ours, neither writable by group or others.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::backend::llama::LoadProbe;
use retroformer_llm::target::TargetProfile;
use serde::{Deserialize, Serialize};

/// Format of a verdict file.
pub const VERDICT_FORMAT_VERSION: u32 = 1;

/// How long a probe may take before it is killed and the file refused (a hang is a refusal).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// How much of the child's stderr is kept for the message.
const STDERR_TAIL: usize = 4096;

/// A probe that runs `program args… --model M [--adapter A]`, the profile as JSON on stdin; the
/// child loads, decodes one token, prints `ok` and exits 0.
#[derive(Debug, Clone)]
pub struct ProcessProbe {
    program: PathBuf,
    args: Vec<String>,
    verdicts: Option<PathBuf>,
    timeout: Duration,
}

#[derive(Serialize, Deserialize)]
struct Verdict {
    format_version: u32,
    model: String,
    adapter: Option<String>,
    verdict: String,
}

impl ProcessProbe {
    /// A probe running `program` with `args` before the file flags; verdicts kept under
    /// `home/probed` (none kept when `home` is `None`).
    pub fn new(program: PathBuf, args: Vec<String>, home: Option<&Path>) -> Self {
        Self {
            program,
            args,
            verdicts: home.map(crate::verdicts::folder),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same probe with another time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The file a success for these files and profile is kept in; `None` when a file cannot be
    /// looked at (then the probe runs, and says why).
    fn verdict_path(
        &self,
        model: &Path,
        adapter: Option<&Path>,
        profile: &TargetProfile,
    ) -> Option<PathBuf> {
        use sha2::{Digest, Sha256};
        let dir = self.verdicts.as_ref()?;
        let mut h = Sha256::new();
        h.update(env!("CARGO_PKG_VERSION"));
        for f in std::iter::once(model).chain(adapter) {
            h.update(crate::verdicts::identity(f)?);
        }
        h.update(serde_json::to_vec(profile).ok()?);
        Some(dir.join(format!("{}.json", &hex::encode(h.finalize())[..32])))
    }

    fn run(
        &self,
        model: &Path,
        adapter: Option<&Path>,
        profile: &TargetProfile,
    ) -> Result<(), String> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).arg("--model").arg(model);
        if let Some(a) = adapter {
            cmd.arg("--adapter").arg(a);
        }
        // ggml's abort would otherwise attach gdb and print a backtrace after its message.
        cmd.env("GGML_NO_BACKTRACE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = crate::child::tied_to_us(&mut cmd)
            .spawn()
            .map_err(|e| format!("could not start the probe {}: {e}", self.program.display()))?;
        let profile_json = serde_json::to_vec(profile).map_err(|e| e.to_string())?;
        let mut stdin = child.stdin.take().expect("piped");
        // The child reads the profile before anything else; a write error means it already
        // ended, which its status says better.
        let _ = std::io::Write::write_all(&mut stdin, &profile_json);
        drop(stdin);
        let out = reader(child.stdout.take().expect("piped"));
        let err = reader(child.stderr.take().expect("piped"));
        let status = wait(&mut child, self.timeout);
        let out = out.join().unwrap_or_default();
        let err = err.join().unwrap_or_default();
        match status {
            None => Err(format!(
                "loading it did not finish within {} s in a probe process (killed)",
                self.timeout.as_secs()
            )),
            Some(s) if s.success() && out.trim() == "ok" => Ok(()),
            Some(s) => Err(describe(s, &err)),
        }
    }
}

impl LoadProbe for ProcessProbe {
    fn check(
        &self,
        model: &Path,
        adapter: Option<&Path>,
        profile: &TargetProfile,
    ) -> Result<(), String> {
        let kept = self.verdict_path(model, adapter, profile);
        if kept.as_deref().is_some_and(is_success) {
            return Ok(());
        }
        let started = Instant::now();
        self.run(model, adapter, profile)?;
        tracing::info!(model = %model.display(), adapter = ?adapter, ms = started.elapsed().as_millis() as u64, "load probe passed");
        if let Some(p) = kept {
            let v = Verdict {
                format_version: VERDICT_FORMAT_VERSION,
                model: model.display().to_string(),
                adapter: adapter.map(|a| a.display().to_string()),
                verdict: "ok".into(),
            };
            let bytes = serde_json::to_vec_pretty(&v).expect("verdict serialises");
            crate::verdicts::keep(&p, &bytes);
        }
        Ok(())
    }
}

fn is_success(p: &Path) -> bool {
    crate::verdicts::read_trusted(p)
        .and_then(|b| serde_json::from_slice::<Verdict>(&b).ok())
        .is_some_and(|v| v.format_version == VERDICT_FORMAT_VERSION && v.verdict == "ok")
}

fn reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > 2 * STDERR_TAIL {
                buf.drain(..buf.len() - STDERR_TAIL);
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// The child's status, or `None` (after killing it) when it ran past `timeout`.
fn wait(child: &mut std::process::Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// The probe's end in words: the signal that ended it, or its exit and last message.
fn describe(s: ExitStatus, stderr: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let last = telling_line(stderr)
        .map(|l| retroformer_core::text::printable(l, false).into_owned())
        .unwrap_or_default();
    match s.signal() {
        Some(sig) => format!(
            "llama.cpp was killed by signal {sig} ({}) loading it in a probe process{}",
            signal_name(sig),
            if last.is_empty() {
                String::new()
            } else {
                format!("; its last message: {last}")
            }
        ),
        None => format!(
            "loading it in a probe process failed (exit status {}){}",
            s.code().unwrap_or(-1),
            if last.is_empty() {
                String::new()
            } else {
                format!(": {last}")
            }
        ),
    }
}

/// The line of a probe child's stderr that says why it ended: ggml's assertion or abort
/// message where there is one, else the last line that is not part of a debugger's backtrace.
fn telling_line(stderr: &str) -> Option<&str> {
    let lines = || {
        stderr
            .lines()
            .rev()
            .map(str::trim)
            .filter(|l| !l.is_empty())
    };
    let backtrace = |l: &str| {
        l.starts_with('#')
            || l.starts_with('[')
            || l.contains("gdb")
            || l.contains("ptrace")
            || l.contains("No stack")
            || l.starts_with("0x")
    };
    lines()
        .find(|l| l.contains("GGML_ASSERT") || l.contains("GGML_ABORT"))
        .or_else(|| lines().find(|l| !backtrace(l)))
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGABRT => "SIGABRT, an assert in llama.cpp",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGKILL => "SIGKILL, perhaps out of memory",
        _ => "a signal",
    }
}

/// Makes every later load in this process (models and adapters, through
/// [`crate::backend::ModelBackend::load`] or the backend's own `load`) go through a load probe that re-runs
/// `program` with `args` (the binary's hidden probe command), keeping verdicts under
/// `$RETROFORMER_HOME`; and makes a SIGBUS from a mapped model file that shrank end the process
/// with a message naming the mapped files. Call it once, at the start of a binary; `false` when
/// a probe was installed already.
pub fn install_process_probe(program: PathBuf, args: Vec<String>) -> bool {
    // A mapped model that shrinks under the process ends it with a message, not a bare SIGBUS.
    crate::backend::llama::report_sigbus();
    let probe = ProcessProbe::new(program, args, Some(&crate::manifest::home_dir()));
    crate::backend::llama::install_probe(Box::new(probe))
}

/// Why the probe's child refused a file, or could not try it.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// The profile on stdin could not be read.
    #[error("the profile on stdin: {0}")]
    Profile(String),
    /// Loading or decoding failed (without ending the process).
    #[error(transparent)]
    Llm(#[from] retroformer_llm::LlmError),
    /// The vocabulary makes tokenising grow with the square of the text.
    #[error("its vocabulary makes tokenising slow, growing with the square of the text: {short_kb} KB took {short_s:.2} s and {long_kb} KB {long_s:.2} s (an ordinary vocabulary takes ~0.01 s); refused, as a long prompt would take minutes")]
    QuadraticTokeniser {
        /// The shorter sample, KB.
        short_kb: usize,
        /// Its time, seconds.
        short_s: f64,
        /// The longer sample, KB.
        long_kb: usize,
        /// Its time, seconds.
        long_s: f64,
    },
}

/// The child side of the probe, for a binary's hidden probe command: reads the profile (JSON)
/// from `stdin`, loads `model` (and `adapter`), checks the tokeniser, decodes one token. If
/// llama.cpp aborts or faults on the files, the calling process is the one that ends; the
/// binary prints `ok` when this returns `Ok`.
pub fn child(model: &Path, adapter: Option<&Path>, stdin: impl Read) -> Result<(), ChildError> {
    use retroformer_llm::{GenerateRequest, LanguageModel, SamplingParams, SessionOptions};
    let mut json = String::new();
    stdin
        .take(1 << 20)
        .read_to_string(&mut json)
        .map_err(|e| ChildError::Profile(e.to_string()))?;
    let profile: TargetProfile =
        serde_json::from_str(&json).map_err(|e| ChildError::Profile(e.to_string()))?;
    // The parent applied the adapter's base rule; this process only shows whether llama.cpp
    // survives the files.
    let opts = crate::backend::llama::LoadOptions {
        adapter_base: retroformer_gguf::BasePolicy::Unchecked,
        ..crate::backend::llama::LoadOptions::new(profile)
    };
    let model = crate::backend::llama::LlamaModel::load(model, opts)?;
    tokeniser_scales(&model)?;
    let mut session = model.session(&SessionOptions {
        context_size: Some(64),
        threads: None,
        sequences: None,
    })?;
    if let Some(p) = adapter {
        let h = model.load_adapter(p)?;
        session.set_adapter(Some((h, 1.0)))?;
    }
    session.generate(
        &GenerateRequest {
            prompt: "Hello".into(),
            max_tokens: 1,
            stop: Vec::new(),
            sampling: SamplingParams::greedy(),
            grammar: None,
            add_bos: true,
            parse_special: false,
            ignore_eos: true,
            cancel: None,
            deadline: None,
            on_text: None,
            kv_file: None,
            logprobs: None,
        },
        &mut |_| true,
    )?;
    Ok(())
}

/// Refuses a vocabulary on which llama.cpp's tokeniser takes time quadratic in the text (many
/// user-defined tokens do that: a 120 KB prompt then takes tens of seconds). Eight times the
/// text takes about eight times as long on an ordinary vocabulary and sixty-four on such a one;
/// the ratio, not the time alone, decides, so a busy machine is not mistaken for a bad file.
/// Each size's fastest of several interleaved runs is compared, so that a moment of load in one
/// run (another process, a test beside it) decides nothing.
fn tokeniser_scales(model: &crate::backend::llama::LlamaModel) -> Result<(), ChildError> {
    use retroformer_llm::LanguageModel;
    let time = |bytes: usize| -> Result<f64, ChildError> {
        let text = sample_text(bytes);
        let t = std::time::Instant::now();
        model.tokenize(&text, false, false)?;
        Ok(t.elapsed().as_secs_f64())
    };
    let (short, long) = (4 << 10, 32 << 10);
    time(short)?; // warm
    let mut t_long = time(long)?;
    if t_long <= TOKENISE_SLOW_S {
        return Ok(());
    }
    let mut t_short = f64::INFINITY;
    for _ in 0..3 {
        t_short = t_short.min(time(short)?);
    }
    t_long = t_long.min(time(long)?);
    if t_long > TOKENISE_SLOW_S && t_long > QUADRATIC_RATIO * t_short {
        return Err(ChildError::QuadraticTokeniser {
            short_kb: short >> 10,
            short_s: t_short,
            long_kb: long >> 10,
            long_s: t_long,
        });
    }
    Ok(())
}

/// Seconds for 32 KB beyond which the growth is looked at (an ordinary vocabulary takes
/// ~0.01 s).
const TOKENISE_SLOW_S: f64 = 0.5;

/// 8x the text in more than 24x the time: quadratic (64x), not linear (8x).
const QUADRATIC_RATIO: f64 = 24.0;

/// `bytes` of ordinary English text with digits and punctuation.
fn sample_text(bytes: usize) -> String {
    let line = "The quick brown fox jumps over the lazy dog; 0123456789, said Ada (again).\n";
    line.repeat(bytes / line.len() + 1)[..bytes].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, home: Option<&Path>) -> ProcessProbe {
        ProcessProbe::new(
            "/bin/sh".into(),
            vec!["-c".into(), script.into(), "probe".into()],
            home,
        )
        .with_timeout(Duration::from_secs(20))
    }

    /// A probe that passes and counts its runs in `dir/count` (each run appends a line, reads
    /// the profile from stdin), with verdicts kept under `dir`; and the count so far.
    fn counting(dir: &Path) -> (ProcessProbe, impl Fn() -> usize) {
        let count = dir.join("count");
        let script = format!("cat >/dev/null; echo run >> {}; echo ok", count.display());
        let runs = move || {
            std::fs::read_to_string(&count)
                .unwrap_or_default()
                .lines()
                .count()
        };
        (sh(&script, Some(dir)), runs)
    }

    fn profile() -> TargetProfile {
        TargetProfile::load("cpu").unwrap()
    }

    fn file(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, b"GGUF").unwrap();
        p
    }

    #[test]
    fn a_probe_killed_by_a_signal_refuses_the_file_and_names_the_signal() {
        let d = tempfile::tempdir().unwrap();
        let m = file(d.path(), "m.gguf");
        let err = sh("echo 'GGML_ASSERT failed' >&2; kill -ABRT $$", None)
            .check(&m, None, &profile())
            .unwrap_err();
        assert!(err.contains("signal 6 (SIGABRT"), "{err}");
        assert!(err.contains("GGML_ASSERT failed"), "{err}");
    }

    #[test]
    fn a_probe_that_fails_or_hangs_refuses_the_file() {
        let d = tempfile::tempdir().unwrap();
        let m = file(d.path(), "m.gguf");
        let err = sh("echo 'error: bad tensor' >&2; exit 3", None)
            .check(&m, None, &profile())
            .unwrap_err();
        assert!(
            err.contains("exit status 3") && err.contains("bad tensor"),
            "{err}"
        );
        let err = sh("sleep 30", None)
            .with_timeout(Duration::from_millis(300))
            .check(&m, None, &profile())
            .unwrap_err();
        assert!(err.contains("did not finish"), "{err}");
    }

    #[test]
    fn a_success_is_kept_and_a_changed_file_is_probed_again() {
        let d = tempfile::tempdir().unwrap();
        let m = file(d.path(), "m.gguf");
        let a = file(d.path(), "a.gguf");
        let (p, runs) = counting(d.path());
        p.check(&m, Some(&a), &profile()).unwrap();
        p.check(&m, Some(&a), &profile()).unwrap();
        assert_eq!(runs(), 1, "the second check uses the kept verdict");
        p.check(&m, None, &profile()).unwrap();
        assert_eq!(runs(), 2, "another pair of files is probed");
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&a, b"GGUF changed").unwrap();
        p.check(&m, Some(&a), &profile()).unwrap();
        assert_eq!(runs(), 3, "a changed adapter is probed again");
    }

    #[test]
    fn a_file_rewritten_in_place_with_its_size_and_mtime_put_back_is_probed_again() {
        let d = tempfile::tempdir().unwrap();
        let m = file(d.path(), "m.gguf");
        let (p, runs) = counting(d.path());
        p.check(&m, None, &profile()).unwrap();
        let mtime = std::fs::metadata(&m).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        // The same size, and the old modification time set back (`cp -p`, `touch -d`).
        std::fs::write(&m, b"FUGG").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&m)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(std::fs::metadata(&m).unwrap().modified().unwrap(), mtime);
        p.check(&m, None, &profile()).unwrap();
        assert_eq!(runs(), 2, "the change time gives the tampered file away");
    }

    #[test]
    fn a_verdict_others_can_write_is_not_believed() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let m = file(d.path(), "m.gguf");
        let (p, runs) = counting(d.path());
        p.check(&m, None, &profile()).unwrap();
        let probed = d.path().join("probed");
        let mode = std::fs::metadata(&probed).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the verdict folder is private: {mode:o}");
        p.check(&m, None, &profile()).unwrap();
        assert_eq!(runs(), 1);
        // A folder anyone can write: anyone could have planted the verdict.
        std::fs::set_permissions(&probed, std::fs::Permissions::from_mode(0o777)).unwrap();
        p.check(&m, None, &profile()).unwrap();
        assert_eq!(runs(), 2);
        std::fs::set_permissions(&probed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let verdict = std::fs::read_dir(&probed)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::set_permissions(&verdict, std::fs::Permissions::from_mode(0o666)).unwrap();
        p.check(&m, None, &profile()).unwrap();
        assert_eq!(
            runs(),
            3,
            "a verdict file others can write is not believed either"
        );
    }

    #[test]
    fn a_refusal_quotes_ggmls_assertion_not_the_backtrace_after_it() {
        let stderr = "llama_model_load: loading\n\
            /src/ggml.c:1234: GGML_ASSERT(ne % 32 == 0) failed\n\
            [New LWP 4242]\n\
            0x00007f in __GI___wait4 () at wait4.c:30\n\
            #0  0x00007f in wait4 ()\n\
            #1  0x00007f in ggml_print_backtrace ()\n\
            [Inferior 1 (process 4241) detached]\n";
        assert_eq!(
            telling_line(stderr),
            Some("/src/ggml.c:1234: GGML_ASSERT(ne % 32 == 0) failed")
        );
        assert_eq!(
            telling_line("error: bad value\n#0 0x0 in main ()\n"),
            Some("error: bad value")
        );
        assert_eq!(telling_line("\n\n"), None);
    }

    #[test]
    fn a_probe_must_say_ok_to_pass() {
        let d = tempfile::tempdir().unwrap();
        let m = file(d.path(), "m.gguf");
        assert!(sh("exit 0", None).check(&m, None, &profile()).is_err());
    }
}
