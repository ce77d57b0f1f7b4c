//! The llama.cpp implementation of [`LanguageModel`] and [`Session`].
//!
//! Ownership: a [`LlamaModel`] owns the `llama_model` pointer (in an `Arc<ModelInner>`); every
//! session and adapter holds that `Arc`, so the model is freed last. Each session's
//! `llama_context` lives on its own owner thread (contexts are not `Send`); callers talk to it
//! through [`session::LlamaSession`], a handle that sends commands over a channel.
//!
//! We call `llama-cpp-sys-2` directly for the model, contexts, batches, KV memory and adapters
//! (the safe binding ties contexts to the model by lifetime and needs `&mut` on the model to
//! load an adapter), and borrow the safe binding's `LlamaModel` view for its tokenizer, samplers
//! and grammar (with its exception-catching shims). Locking: loading or freeing an adapter and
//! creating a context mutate the model (`model.loras`, `n_ctx_train`), and a context re-reserves
//! its graph from `model.loras` inside `llama_decode`, so those take `ModelInner::lock` for
//! writing and decoding takes it for reading.

mod bare;
mod context;
mod pinned;
mod probe;
mod score;
mod session;
mod sigbus;
mod tensors;

pub use bare::BareLoop;
pub use probe::{install_probe, probe, LoadProbe};
pub use sigbus::install_report as report_sigbus;

pub use context::MAX_CONTEXT;
pub use score::MAX_SCORE_TOKENS;
pub use session::{LlamaSession, MAX_GRAMMAR_MS_PER_TOKEN};
pub use tensors::{dequantize, TensorReader, MAX_TENSOR_ELEMENTS};

// The C++ exception barrier (shim.cpp): llama.cpp calls that can throw go through these.
extern "C" {
    fn rf_llama_decode(
        ctx: *mut sys::llama_context,
        batch: sys::llama_batch,
        msg: *mut std::ffi::c_char,
        msg_len: usize,
    ) -> i32;
    fn rf_llama_tokenize(
        vocab: *const sys::llama_vocab,
        text: *const std::ffi::c_char,
        text_len: i32,
        tokens: *mut sys::llama_token,
        n_tokens_max: i32,
        add_special: bool,
        parse_special: bool,
        msg: *mut std::ffi::c_char,
        msg_len: usize,
    ) -> i32;
    fn rf_llama_cpu_reference(ctx: *mut sys::llama_context) -> i32;
}

/// Whether this build was compiled with `backend` (the features `vulkan`, `cuda`, `metal`).
pub fn compiled_in(backend: retroformer_llm::target::Backend) -> bool {
    use retroformer_llm::target::Backend;
    match backend {
        Backend::Cpu => true,
        Backend::Vulkan => cfg!(feature = "vulkan"),
        Backend::Cuda => cfg!(feature = "cuda"),
        Backend::Metal => cfg!(feature = "metal"),
    }
}

/// The longest text tokenised in one call: 256 KiB, tens of thousands of tokens beyond the
/// largest context we run, and short enough that a pathological text (llama.cpp's SentencePiece
/// byte fallback is quadratic) tokenises in seconds, not minutes.
pub const MAX_TOKENIZE_BYTES: usize = 256 << 10;

/// `rf_*` shims return this when llama.cpp threw.
const THREW: i32 = i32::MIN;

fn message(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `llama_decode` behind the exception barrier: `Err` carries llama.cpp's exception message.
///
/// # Safety
/// `ctx` must be a live context and `batch` valid for it (tokens in the vocabulary, positions
/// continuing the cache).
pub(crate) unsafe fn decode(
    ctx: *mut sys::llama_context,
    batch: sys::llama_batch,
) -> Result<i32, String> {
    let mut buf = [0u8; 512];
    // SAFETY: forwarded from the caller; buf is valid for its length.
    let rc = unsafe { rf_llama_decode(ctx, batch, buf.as_mut_ptr().cast(), buf.len()) };
    if rc == THREW {
        Err(message(&buf))
    } else {
        Ok(rc)
    }
}

/// Puts the CPU backends of `ctx` on ggml's reference kernels (shim.cpp), so that a token's
/// logits do not depend on the other tokens of its batch; the number of CPU backends set.
///
/// # Safety
/// `ctx` must be a live context that no other thread is decoding with.
pub(crate) unsafe fn use_reference_kernels(ctx: *mut sys::llama_context) -> Result<u32, String> {
    // SAFETY: forwarded from the caller.
    match unsafe { rf_llama_cpu_reference(ctx) } {
        n if n > 0 => Ok(n as u32),
        0 => Err("the context has no CPU backend".into()),
        _ => Err("llama.cpp threw while listing the context's backends".into()),
    }
}

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use llama_cpp_sys_2 as sys;

use retroformer_gguf::{BasePolicy, GgufFile};
use retroformer_llm::target::{Backend, TargetProfile};
use retroformer_llm::{
    AdapterHandle, ChatMessage, LanguageModel, LlmError, Session, SessionOptions, Token,
};

static BACKEND: OnceLock<Result<llama_cpp_2::llama_backend::LlamaBackend, String>> =
    OnceLock::new();

/// Initialises llama.cpp once per process and routes its logs to `tracing` (target
/// `llama-cpp-2`; shown with `RUST_LOG=llama-cpp-2=info`).
pub fn init_backend() -> Result<(), LlmError> {
    let r = BACKEND.get_or_init(|| {
        llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
        llama_cpp_2::llama_backend::LlamaBackend::init().map_err(|e| e.to_string())
    });
    r.as_ref()
        .map(|_| ())
        .map_err(|e| LlmError::Context(format!("llama.cpp backend init failed: {e}")))
}

/// The path as llama.cpp will open it: the exact bytes (never a lossy copy, which could name
/// another file than the one we validated).
fn c_path(path: &Path) -> Result<CString, ()> {
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
    #[cfg(not(unix))]
    let bytes = path.to_str().ok_or(())?.as_bytes().to_vec();
    CString::new(bytes).map_err(|_| ())
}

/// The process's llama.cpp backend, for reference measurements that drive the binding directly
/// (the benchmark's bare llama-cpp-2 loop). Runtime code never needs it.
pub fn reference_backend() -> Result<&'static llama_cpp_2::llama_backend::LlamaBackend, LlmError> {
    init_backend()?;
    match BACKEND.get() {
        Some(Ok(b)) => Ok(b),
        _ => Err(LlmError::Context(
            "llama.cpp backend is not initialised".into(),
        )),
    }
}

/// A ggml device as llama.cpp sees it (the backend-neutral type).
pub use retroformer_llm::DeviceInfo;

/// The devices this build of llama.cpp can use, and its CPU feature string.
pub fn devices() -> Result<(Vec<DeviceInfo>, String), LlmError> {
    init_backend()?;
    let devs = llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .map(|d| DeviceInfo {
            name: d.name,
            description: d.description,
            backend: d.backend,
            memory_total: d.memory_total,
        })
        .collect();
    // SAFETY: returns a pointer to a static, NUL-terminated string.
    let sys_info = unsafe { CStr::from_ptr(sys::llama_print_system_info()) }
        .to_string_lossy()
        .trim()
        .to_string();
    Ok((devs, sys_info))
}

pub(crate) struct ModelInner {
    ptr: NonNull<sys::llama_model>,
    /// Write: adapter init/free and context creation. Read: decode.
    pub(crate) lock: RwLock<()>,
    pub(crate) profile: TargetProfile,
    pub(crate) n_vocab: i32,
    pub(crate) n_ctx_train: u32,
    chat_template: Option<CString>,
}

// SAFETY: the model pointer is only mutated under `lock` (see the module docs); read-only
// llama.cpp calls (tokenizer, vocab, metadata) are thread-safe.
unsafe impl Send for ModelInner {}
// SAFETY: as above.
unsafe impl Sync for ModelInner {}

impl Drop for ModelInner {
    fn drop(&mut self) {
        // SAFETY: every session and adapter holds an Arc to us, so none is alive any more.
        unsafe { sys::llama_model_free(self.ptr.as_ptr()) }
    }
}

// The safe binding's `LlamaModel` is `#[repr(transparent)]` over a `NonNull<llama_model>`;
// this lets us lend it out as `&LlamaModel` for its tokenizer and samplers. Checked here.
const _: () = assert!(
    std::mem::size_of::<llama_cpp_2::model::LlamaModel>()
        == std::mem::size_of::<NonNull<sys::llama_model>>()
        && std::mem::align_of::<llama_cpp_2::model::LlamaModel>()
            == std::mem::align_of::<NonNull<sys::llama_model>>()
);

impl ModelInner {
    pub(crate) fn raw(&self) -> *mut sys::llama_model {
        self.ptr.as_ptr()
    }

    /// The safe binding's view of the model (never owned, so never dropped by it).
    pub(crate) fn binding(&self) -> &llama_cpp_2::model::LlamaModel {
        // SAFETY: `LlamaModel` is repr(transparent) over `Ptr<llama_model>`, itself
        // repr(transparent) over `NonNull<llama_model>` (size asserted above; versions pinned).
        unsafe {
            &*(&self.ptr as *const NonNull<sys::llama_model>)
                .cast::<llama_cpp_2::model::LlamaModel>()
        }
    }

    pub(crate) fn vocab(&self) -> *const sys::llama_vocab {
        // SAFETY: the model is alive.
        unsafe { sys::llama_model_get_vocab(self.raw()) }
    }

    pub(crate) fn token_bytes(&self, token: Token) -> Vec<u8> {
        let mut buf = vec![0u8; 64];
        loop {
            // SAFETY: buf is valid for buf.len() bytes; the token was validated by the caller.
            let n = unsafe {
                sys::llama_token_to_piece(
                    self.vocab(),
                    token,
                    buf.as_mut_ptr().cast(),
                    buf.len() as i32,
                    0,
                    false,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return buf;
            }
            buf.resize((-n) as usize, 0);
        }
    }
}

/// A GGUF model loaded through llama.cpp.
#[derive(Clone)]
pub struct LlamaModel {
    pub(crate) inner: Arc<ModelInner>,
    name: String,
    path: PathBuf,
    /// The file held open for as long as the model lives: later adapter probes and hashes read
    /// the file that was loaded.
    pinned: Arc<pinned::Pinned>,
    header: Arc<GgufFile>,
    load_ms: f64,
    sha256: Arc<OnceLock<String>>,
    adapter_base: BasePolicy,
}

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Hardware profile.
    pub profile: TargetProfile,
    /// Chat template to use instead of the GGUF's (a llama.cpp built-in name or a template).
    pub chat_template: Option<String>,
    /// Name for logs (defaults to the file name).
    pub name: Option<String>,
    /// The file's sha256 when the loader has verified it (a manifest's model); otherwise it is
    /// computed from the file the first time an adapter is checked against it.
    pub sha256: Option<String>,
    /// Which adapters it takes ([`retroformer_gguf::check_adapter_base`]).
    pub adapter_base: BasePolicy,
}

impl LoadOptions {
    /// Options from a profile.
    pub fn new(profile: TargetProfile) -> Self {
        Self {
            profile,
            chat_template: None,
            name: None,
            sha256: None,
            adapter_base: BasePolicy::Recorded,
        }
    }
}

static NEXT_ADAPTER: AtomicU64 = AtomicU64::new(1);

/// A LoRA adapter loaded into llama.cpp; freed on drop.
pub(crate) struct AdapterInner {
    ptr: NonNull<sys::llama_adapter_lora>,
    model: Arc<ModelInner>,
}

// SAFETY: the adapter is immutable after loading; it is freed under the model's write lock.
unsafe impl Send for AdapterInner {}
// SAFETY: as above.
unsafe impl Sync for AdapterInner {}

/// The llama.cpp adapter behind `h`, checked to belong to `model`, with a finite `scale`.
pub(crate) fn resolve_adapter(
    model: &Arc<ModelInner>,
    h: &AdapterHandle,
    scale: f32,
) -> Result<Arc<AdapterInner>, LlmError> {
    if !scale.is_finite() {
        return Err(LlmError::InvalidParam {
            field: "adapter_scale",
            message: format!("{scale} is not finite"),
        });
    }
    let inner = h
        .inner()
        .clone()
        .downcast::<AdapterInner>()
        .map_err(|_| LlmError::ForeignAdapter(h.path.display().to_string()))?;
    if !inner.belongs_to(model) {
        return Err(LlmError::ForeignAdapter(h.path.display().to_string()));
    }
    Ok(inner)
}

impl AdapterInner {
    pub(crate) fn raw(&self) -> *mut sys::llama_adapter_lora {
        self.ptr.as_ptr()
    }
    pub(crate) fn belongs_to(&self, m: &Arc<ModelInner>) -> bool {
        Arc::ptr_eq(&self.model, m)
    }
}

impl Drop for AdapterInner {
    fn drop(&mut self) {
        let _w = self.model.lock.write().unwrap_or_else(|e| e.into_inner());
        // SAFETY: no session holds this adapter any more (they hold an Arc to it while it is
        // set), and the model is alive (we hold an Arc to it). The safe binding never frees
        // adapters; we do, so a long-running process can load many.
        unsafe { sys::llama_adapter_lora_free(self.ptr.as_ptr()) }
    }
}

impl LlamaModel {
    /// Validates `path` with the pure-Rust GGUF validator (container and values), then loads it
    /// through llama.cpp.
    pub fn load(path: &Path, opts: LoadOptions) -> Result<Self, LlmError> {
        // Validated, probed and loaded: one open file, whatever is renamed over `path`.
        let pinned = pinned::Pinned::open(path)?;
        let read = pinned.read_path();
        let header = retroformer_gguf::validate_model(&read).map_err(|e| e.at(path))?;
        probe::probe_shown(&read, None, &opts.profile, path)?;
        init_backend()?;
        let profile = opts.profile.clone();
        if !compiled_in(profile.backend) {
            return Err(LlmError::ModelLoad {
                path: path.display().to_string(),
                reason: format!(
                    "target '{}' needs the {} backend, which this build lacks (rebuild with --features {})",
                    profile.name,
                    profile.backend.name(),
                    profile.backend.name()
                ),
            });
        }
        let cpath = c_path(&read).map_err(|_| LlmError::ModelLoad {
            path: path.display().to_string(),
            reason: "path contains a NUL byte".into(),
        })?;
        // SAFETY: plain struct of defaults.
        let mut mp = unsafe { sys::llama_model_default_params() };
        mp.n_gpu_layers = if profile.backend == Backend::Cpu {
            0
        } else {
            profile.gpu_layers.min(i32::MAX as u32) as i32
        };
        // A CPU profile in a GPU build uses no GPU at all: with zero GPU layers llama.cpp would
        // still copy the weights of large batches to a GPU it finds (op offload). An empty,
        // NULL-terminated device list means none; llama.cpp copies the list during the load.
        let mut no_devices: [sys::ggml_backend_dev_t; 1] = [std::ptr::null_mut()];
        if profile.backend == Backend::Cpu {
            mp.devices = no_devices.as_mut_ptr();
        }
        // Repacked weights take a grouped kernel for rows in fours and another for the rest.
        mp.use_extra_bufts = !profile.batch_invariant;
        mp.load_mode = match (profile.mmap, profile.mlock) {
            (true, true) => sys::LLAMA_LOAD_MODE_MMAP_MLOCK,
            (true, false) => sys::LLAMA_LOAD_MODE_MMAP,
            (false, true) => sys::LLAMA_LOAD_MODE_MLOCK,
            (false, false) => sys::LLAMA_LOAD_MODE_NONE,
        };
        let t0 = Instant::now();
        // SAFETY: cpath is a valid C string; params are llama.cpp's defaults with valid edits.
        let raw = unsafe { sys::llama_model_load_from_file(cpath.as_ptr(), mp) };
        let ptr = NonNull::new(raw).ok_or_else(|| LlmError::ModelLoad {
            path: path.display().to_string(),
            reason: "llama_model_load_from_file returned NULL (unsupported architecture or tensor layout; run with RUST_LOG=llama-cpp-2=info for llama.cpp's message)".into(),
        })?;
        let load_ms = t0.elapsed().as_secs_f64() * 1e3;
        if profile.mmap {
            sigbus::note_mapped(path);
        }
        // SAFETY: ptr is a live model.
        let (n_vocab, n_ctx_train) = unsafe {
            (
                sys::llama_vocab_n_tokens(sys::llama_model_get_vocab(ptr.as_ptr())),
                sys::llama_model_n_ctx_train(ptr.as_ptr()).max(0) as u32,
            )
        };
        let chat_template = match &opts.chat_template {
            Some(t) => Some(
                CString::new(t.as_bytes())
                    .map_err(|_| LlmError::ChatTemplate("override contains a NUL byte".into()))?,
            ),
            None => {
                // SAFETY: ptr is live; the returned string is owned by the model.
                let t = unsafe { sys::llama_model_chat_template(ptr.as_ptr(), std::ptr::null()) };
                (!t.is_null()).then(|| unsafe { CStr::from_ptr(t) }.to_owned())
            }
        };
        let name = opts.name.clone().unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        tracing::info!(model = %name, load_ms = format!("{load_ms:.0}"), n_vocab, n_ctx_train, "model loaded");
        Ok(Self {
            inner: Arc::new(ModelInner {
                ptr,
                lock: RwLock::new(()),
                profile,
                n_vocab,
                n_ctx_train,
                chat_template,
            }),
            name,
            path: path.to_path_buf(),
            pinned: Arc::new(pinned),
            header: Arc::new(header),
            load_ms,
            sha256: Arc::new(opts.sha256.map(OnceLock::from).unwrap_or_default()),
            adapter_base: opts.adapter_base,
        })
    }

    /// The model file's sha256: the verified one given at load, or the file's, hashed once.
    pub fn sha256(&self) -> Result<&str, LlmError> {
        if let Some(s) = self.sha256.get() {
            return Ok(s);
        }
        let hashed = sha256_file(&self.pinned.read_path()).map_err(|e| LlmError::ModelLoad {
            path: self.path.display().to_string(),
            reason: format!("could not hash it to check an adapter's base: {e}"),
        })?;
        Ok(self.sha256.get_or_init(|| hashed))
    }

    /// The validated GGUF header.
    pub fn header(&self) -> &GgufFile {
        &self.header
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Time llama.cpp took to load the weights.
    pub fn load_ms(&self) -> f64 {
        self.load_ms
    }

    /// The hardware profile in use.
    pub fn profile(&self) -> &TargetProfile {
        &self.inner.profile
    }

    /// The context length the model was trained with.
    pub fn n_ctx_train(&self) -> u32 {
        self.inner.n_ctx_train
    }

    /// Vocabulary size.
    pub fn n_vocab(&self) -> i32 {
        self.inner.n_vocab
    }

    /// A concrete session (also available as `Box<dyn Session>` through the trait).
    pub fn llama_session(&self, opts: &SessionOptions) -> Result<LlamaSession, LlmError> {
        let cfg = context::config(
            &self.inner.profile,
            &self.header,
            self.kv_bytes_per_token(),
            opts,
        )?;
        LlamaSession::spawn(self.inner.clone(), cfg)
    }
    /// Loads an adapter as a concrete handle.
    pub fn load_lora(&self, path: &Path) -> Result<AdapterHandle, LlmError> {
        let pinned = pinned::Pinned::open(path)?;
        let read = pinned.read_path();
        let header = retroformer_gguf::validate_file(&read).map_err(|e| e.at(path))?;
        retroformer_gguf::check_adapter(&header, path, &self.header, &self.name)?;
        if self.adapter_base != BasePolicy::Unchecked {
            let base = self.sha256()?;
            let policy = self.adapter_base;
            retroformer_gguf::check_adapter_base(&header, path, base, &self.name, policy)?;
        }
        let model = self.pinned.read_path();
        probe::probe_shown(&model, Some(&read), self.profile(), pinned.shown())?;
        let cpath = c_path(&read).map_err(|_| LlmError::AdapterLoad {
            path: path.display().to_string(),
        })?;
        let raw = {
            let _w = self.inner.lock.write().unwrap_or_else(|e| e.into_inner());
            // SAFETY: the model is alive and no decode runs while we hold the write lock.
            unsafe { sys::llama_adapter_lora_init(self.inner.raw(), cpath.as_ptr()) }
        };
        let ptr = NonNull::new(raw).ok_or_else(|| LlmError::AdapterLoad {
            path: path.display().to_string(),
        })?;
        let id = NEXT_ADAPTER.fetch_add(1, Ordering::Relaxed);
        tracing::info!(adapter = %path.display(), id, "adapter loaded");
        Ok(AdapterHandle::new(
            id,
            path.to_path_buf(),
            Arc::new(AdapterInner {
                ptr,
                model: self.inner.clone(),
            }),
        ))
    }
}

/// The sha256 of the file at `path`, lower-case hex.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = retroformer_core::fsutil::open_regular(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf)? {
            0 => return Ok(hex::encode(h.finalize())),
            n => h.update(&buf[..n]),
        }
    }
}

impl LanguageModel for LlamaModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kv_bytes_per_token(&self) -> Option<u64> {
        let layers = self.header.arch_u64("block_count")?;
        let kv_heads = self.header.arch_u64("attention.head_count_kv")?;
        let (k, v) = self.header.head_sizes();
        let kv = self.profile().kv_type;
        Some(layers * kv_heads * (k + v) / kv.block() * kv.block_bytes())
    }

    fn tokenize(
        &self,
        text: &str,
        add_bos: bool,
        parse_special: bool,
    ) -> Result<Vec<Token>, LlmError> {
        tokenize(&self.inner, text, add_bos, parse_special)
    }

    fn detokenize(&self, tokens: &[Token]) -> Result<String, LlmError> {
        let mut bytes = Vec::new();
        for &t in tokens {
            if t < 0 || t >= self.inner.n_vocab {
                return Err(LlmError::Tokenize(format!(
                    "token {t} is outside the vocabulary (0..{})",
                    self.inner.n_vocab
                )));
            }
            bytes.extend(self.inner.token_bytes(t));
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn chat_prompt(
        &self,
        messages: &[ChatMessage],
        add_assistant: bool,
    ) -> Result<String, LlmError> {
        let tmpl = self.inner.chat_template.as_ref().ok_or_else(|| {
            LlmError::ChatTemplate(format!(
                "model {} has no chat template; set chat_template.override in its manifest or use --raw",
                self.name
            ))
        })?;
        let owned: Vec<(CString, CString)> = messages
            .iter()
            .map(|m| {
                Ok((
                    CString::new(m.role.as_bytes())
                        .map_err(|_| LlmError::ChatTemplate("role contains a NUL byte".into()))?,
                    CString::new(m.content.as_bytes()).map_err(|_| {
                        LlmError::ChatTemplate("message contains a NUL byte".into())
                    })?,
                ))
            })
            .collect::<Result<_, LlmError>>()?;
        let msgs: Vec<sys::llama_chat_message> = owned
            .iter()
            .map(|(r, c)| sys::llama_chat_message {
                role: r.as_ptr(),
                content: c.as_ptr(),
            })
            .collect();
        let total: usize = messages
            .iter()
            .map(|m| m.content.len() + m.role.len())
            .sum();
        let mut buf = vec![0u8; total * 2 + 256];
        for _ in 0..2 {
            // SAFETY: msgs point into `owned`, alive for the call; buf is valid for its length.
            let n = unsafe {
                sys::llama_chat_apply_template(
                    tmpl.as_ptr(),
                    msgs.as_ptr(),
                    msgs.len(),
                    add_assistant,
                    buf.as_mut_ptr().cast(),
                    buf.len().min(i32::MAX as usize) as i32,
                )
            };
            if n < 0 {
                return Err(LlmError::ChatTemplate(format!(
                    "llama.cpp does not support the chat template of {} (set chat_template.override to a built-in name such as chatml)",
                    self.name
                )));
            }
            let n = n as usize;
            if n <= buf.len() {
                buf.truncate(n);
                return String::from_utf8(buf).map_err(|e| LlmError::ChatTemplate(e.to_string()));
            }
            buf.resize(n, 0);
        }
        Err(LlmError::ChatTemplate(
            "template output kept growing".into(),
        ))
    }

    fn session(&self, opts: &SessionOptions) -> Result<Box<dyn Session>, LlmError> {
        Ok(Box::new(self.llama_session(opts)?))
    }

    fn load_adapter(&self, path: &Path) -> Result<AdapterHandle, LlmError> {
        self.load_lora(path)
    }
}

pub(crate) fn tokenize(
    m: &ModelInner,
    text: &str,
    add_bos: bool,
    parse_special: bool,
) -> Result<Vec<Token>, LlmError> {
    if text.len() > MAX_TOKENIZE_BYTES {
        return Err(LlmError::Tokenize(format!(
            "a text of {} bytes is longer than the {MAX_TOKENIZE_BYTES} bytes tokenised at once (more than any context holds; llama.cpp's byte fallback takes time quadratic in it)",
            text.len()
        )));
    }
    let len = i32::try_from(text.len())
        .map_err(|_| LlmError::Tokenize("text longer than 2 GiB".into()))?;
    let mut tokens: Vec<Token> = vec![0; text.len() / 2 + 8];
    let mut buf = [0u8; 512];
    for _ in 0..2 {
        // SAFETY: text and tokens are valid for the lengths passed; the vocab is alive.
        let n = unsafe {
            rf_llama_tokenize(
                m.vocab(),
                text.as_ptr().cast(),
                len,
                tokens.as_mut_ptr(),
                tokens.len().min(i32::MAX as usize) as i32,
                add_bos,
                parse_special,
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n == THREW {
            return Err(LlmError::Tokenize(format!(
                "llama.cpp threw: {}",
                message(&buf)
            )));
        }
        if n >= 0 {
            tokens.truncate(n as usize);
            return Ok(tokens);
        }
        // Negative: the buffer was too small; -n tokens are needed.
        tokens.resize(n.unsigned_abs() as usize, 0);
    }
    Err(LlmError::Tokenize("token count kept growing".into()))
}
