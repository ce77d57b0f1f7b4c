//! Hardware target profiles (`targets/*.toml`).
//!
//! A profile says how to run llama.cpp on a class of hardware: backend, threads, GPU layers,
//! context and batch sizes, flash attention, mmap/mlock. The profiles in the repository's
//! `targets/` folder are compiled in, so `--target NAME` works from any folder; `--target` also
//! takes a path to a profile file.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The profiles shipped in `targets/`, compiled in.
pub const BUILTIN: &[(&str, &str)] = &[
    ("cpu", include_str!("../../../targets/cpu.toml")),
    ("vulkan", include_str!("../../../targets/vulkan.toml")),
    ("cuda", include_str!("../../../targets/cuda.toml")),
    ("metal", include_str!("../../../targets/metal.toml")),
    (
        "raspberry-pi-5",
        include_str!("../../../targets/raspberry-pi-5.toml"),
    ),
    (
        "jetson-orin-nano",
        include_str!("../../../targets/jetson-orin-nano.toml"),
    ),
    (
        "apple-m-laptop",
        include_str!("../../../targets/apple-m-laptop.toml"),
    ),
    (
        "x86-laptop",
        include_str!("../../../targets/x86-laptop.toml"),
    ),
    (
        "cpu-batch-invariant",
        include_str!("../../../targets/cpu-batch-invariant.toml"),
    ),
];

/// The profile used when none is named.
pub const DEFAULT_TARGET: &str = "cpu";

/// Which ggml backend a profile asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// llama.cpp's CPU backend.
    Cpu,
    /// ggml-vulkan (feature `vulkan`).
    Vulkan,
    /// ggml-cuda (feature `cuda`).
    Cuda,
    /// ggml-metal (feature `metal`).
    Metal,
}

impl Backend {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Vulkan => "vulkan",
            Backend::Cuda => "cuda",
            Backend::Metal => "metal",
        }
    }
}

/// A thread count: a number or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Threads {
    /// Exactly this many.
    Fixed(u32),
    /// `"auto"`: the physical cores.
    Auto(AutoTag),
}

/// The literal `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoTag {
    /// `"auto"`.
    Auto,
}

/// Flash attention: `auto`, `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashAttention {
    /// Let llama.cpp decide.
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// The element type of the KV cache (keys and values alike).
///
/// `f16` is llama.cpp's default. `q8_0` (34 bytes per 32 values) and `q4_0` (18 per 32) shrink
/// the cache to 53 % and 28 % of it, so more lanes or a longer context fit in the same memory.
/// Both quantized types need flash attention (llama.cpp reads a quantized V cache only
/// there) and a head size divisible by their block of 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum KvType {
    /// Half precision (the default).
    #[default]
    #[serde(rename = "f16")]
    F16,
    /// 8-bit blocks of 32 with an f16 scale.
    #[serde(rename = "q8_0")]
    Q8_0,
    /// 4-bit blocks of 32 with an f16 scale.
    #[serde(rename = "q4_0")]
    Q4_0,
}

impl KvType {
    /// Every type, in the order the bench reports them.
    pub const ALL: [KvType; 3] = [KvType::F16, KvType::Q8_0, KvType::Q4_0];

    /// The name used in profiles and flags.
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
            KvType::Q4_0 => "q4_0",
        }
    }

    /// Whether the type is block-quantized (and so needs flash attention).
    pub fn is_quantized(self) -> bool {
        self != KvType::F16
    }

    /// Values per block: a head size must be a multiple of it.
    pub fn block(self) -> u64 {
        if self.is_quantized() {
            32
        } else {
            1
        }
    }

    /// Bytes of one block.
    pub fn block_bytes(self) -> u64 {
        match self {
            KvType::F16 => 2,
            KvType::Q8_0 => 34,
            KvType::Q4_0 => 18,
        }
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A KV cache type name that is none of `f16`, `q8_0`, `q4_0`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown KV cache type '{0}'; expected f16, q8_0 or q4_0")]
pub struct UnknownKvType(pub String);

impl std::str::FromStr for KvType {
    type Err = UnknownKvType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KvType::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownKvType(s.to_string()))
    }
}

/// A hardware profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetProfile {
    /// Profile name.
    pub name: String,
    /// One line for `retroformer targets`.
    pub description: String,
    /// ggml backend.
    pub backend: Backend,
    /// Threads for generation and prompt processing.
    pub threads: Threads,
    /// Layers offloaded to the GPU (0 on CPU).
    pub gpu_layers: u32,
    /// Context size in tokens.
    pub context_size: u32,
    /// Logical batch size (tokens per `llama_decode` call).
    pub batch_size: u32,
    /// Physical micro-batch size.
    pub ubatch_size: u32,
    /// Flash attention.
    pub flash_attention: FlashAttention,
    /// KV cache element type (default `f16`); `q8_0` and `q4_0` need flash attention.
    #[serde(default)]
    pub kv_type: KvType,
    /// Memory-map the weights.
    pub mmap: bool,
    /// Lock the weights in RAM.
    pub mlock: bool,
    /// A token's logits independent of the other tokens in its batch (default off): ggml's
    /// reference CPU kernels and unpacked weights, so that a greedy answer does not depend on
    /// which sequences shared the lanes (a resumed run, a slice of a run, another `--batch`).
    /// llama.cpp's fast CPU kernels pick a tile or a kernel by the batch's shape, and their
    /// rounding differs. CPU backend only; slower (`benches/results/batch-invariant`).
    #[serde(default)]
    pub batch_invariant: bool,
}

/// Why a profile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Neither a built-in name nor an existing file.
    #[error("unknown target '{name}'; known targets: {known}")]
    Unknown {
        /// What was asked for.
        name: String,
        /// The built-in names.
        known: String,
    },
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed or a field is wrong.
    #[error("{path}: invalid target profile: {message}")]
    Invalid {
        /// The file or built-in name.
        path: String,
        /// What is wrong (names the field).
        message: String,
    },
}

/// The most KV cells a batched session asks for, whatever the memory: 128 lanes of 2048.
pub const MAX_BATCH_CELLS: u32 = 262_144;

impl TargetProfile {
    /// What in the profile decides the numbers a session computes (backend, GPU layers, KV
    /// type, flash attention, batch sizes, kernels), as one line. Threads, context size, mmap
    /// and the profile's name do not: on one machine, two sessions with the same line decode
    /// alike. A run folder records it so that a resume under other settings is refused
    /// instead of mixing answers.
    pub fn numerics(&self) -> String {
        let flash = match self.flash_attention {
            FlashAttention::Auto => "auto",
            FlashAttention::On => "on",
            FlashAttention::Off => "off",
        };
        format!(
            "{} backend, {} GPU layers, kv {}, flash attention {flash}, batch {}/{}, {} kernels",
            self.backend.name(),
            self.gpu_layers,
            self.kv_type,
            self.batch_size,
            self.ubatch_size,
            if self.batch_invariant {
                "reference"
            } else {
                "fast"
            }
        )
    }

    /// The most KV cells a batched session asks for, over all its lanes, when neither the
    /// model's bytes per cell nor the memory available are known: 8 times the profile's
    /// context, at most 32768 tokens.
    pub fn max_batch_context(&self) -> u32 {
        self.context_size.saturating_mul(8).min(32768)
    }

    /// The most KV cells a batched session asks for: a quarter of `available` bytes of memory
    /// over the model's `kv_bytes_per_token` (the cache, not the weights, grows with lanes),
    /// at most [`MAX_BATCH_CELLS`]; [`Self::max_batch_context`] where either is unknown. Never
    /// below the latter: it is what batched sessions always asked for.
    pub fn batch_cells(&self, kv_bytes_per_token: Option<u64>, available: Option<u64>) -> u32 {
        let floor = self.max_batch_context();
        match (kv_bytes_per_token, available) {
            (Some(per), Some(avail)) if per > 0 => {
                let fit = (avail / 4 / per).min(u64::from(MAX_BATCH_CELLS)) as u32;
                fit.max(floor)
            }
            _ => floor,
        }
    }

    /// Lanes and context per lane for `wanted` lanes of `per_lane` tokens: the context rounded
    /// up to a multiple of 256 (llama.cpp gives a sequence its cells in such steps), and as
    /// many lanes as `cells` KV cells hold ([`Self::batch_cells`]) beside the shared prefix's
    /// sequence, at least 2, at most [`crate::MAX_SEQUENCES`]; requests beyond the lanes wait
    /// for one to free up.
    pub fn lanes(&self, wanted: u32, per_lane: u32, cells: u32) -> (u32, u32) {
        let per_lane = per_lane.max(1).div_ceil(256).saturating_mul(256);
        let fit = (cells / per_lane).saturating_sub(1).max(2);
        (wanted.min(fit).min(crate::MAX_SEQUENCES), per_lane)
    }

    /// Parses a profile from TOML; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, TargetError> {
        let p: TargetProfile = toml::from_str(text).map_err(|e| TargetError::Invalid {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        p.check(origin)?;
        Ok(p)
    }

    fn check(&self, origin: &str) -> Result<(), TargetError> {
        let invalid = |message: String| TargetError::Invalid {
            path: origin.to_string(),
            message,
        };
        if self.context_size < 64 {
            return Err(invalid(format!(
                "context_size {} is below 64",
                self.context_size
            )));
        }
        if self.batch_size == 0 || self.ubatch_size == 0 {
            return Err(invalid(
                "batch_size and ubatch_size must be at least 1".into(),
            ));
        }
        if self.ubatch_size > self.batch_size {
            return Err(invalid(format!(
                "ubatch_size {} is larger than batch_size {}",
                self.ubatch_size, self.batch_size
            )));
        }
        if let Threads::Fixed(0) = self.threads {
            return Err(invalid("threads must be at least 1 or \"auto\"".into()));
        }
        if self.batch_invariant && self.backend != Backend::Cpu {
            return Err(invalid(format!(
                "batch_invariant needs backend \"cpu\" (only ggml's CPU backend has reference \
                 kernels), not \"{}\"",
                self.backend.name()
            )));
        }
        if self.kv_type.is_quantized() && self.flash_attention == FlashAttention::Off {
            return Err(invalid(format!(
                "kv_type {} needs flash_attention \"on\" or \"auto\": llama.cpp reads a \
                 quantized V cache only with flash attention",
                self.kv_type
            )));
        }
        Ok(())
    }

    /// The profile with its KV cache type replaced (the `--kv-type` flag), checked again;
    /// `origin` names the flag in errors.
    pub fn with_kv_type(mut self, kv_type: KvType, origin: &str) -> Result<Self, TargetError> {
        self.kv_type = kv_type;
        self.check(origin)?;
        Ok(self)
    }

    /// Loads a built-in profile by name, or a profile file by path.
    pub fn load(name_or_path: &str) -> Result<Self, TargetError> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::from_toml(text, &format!("targets/{name_or_path}.toml"));
        }
        let path = Path::new(name_or_path);
        if name_or_path.ends_with(".toml") || path.exists() {
            let io = |source| TargetError::Io {
                path: name_or_path.to_string(),
                source,
            };
            let bytes = retroformer_core::fsutil::read_regular(path, 1 << 20).map_err(io)?;
            let text = String::from_utf8(bytes).map_err(|_| {
                io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not UTF-8 text",
                ))
            })?;
            return Self::from_toml(&text, name_or_path);
        }
        Err(TargetError::Unknown {
            name: name_or_path.to_string(),
            known: BUILTIN
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// All built-in profiles.
    pub fn builtin() -> Vec<Self> {
        BUILTIN
            .iter()
            .map(|(n, t)| Self::from_toml(t, n).expect("built-in profiles are valid (tested)"))
            .collect()
    }

    /// The thread count: a fixed count as given, `auto` as the machine's physical cores (what
    /// llama.cpp's own tools default to), within the cores this process may run on.
    ///
    /// `auto` once took the cores left free by the 1-minute load average, read once at start;
    /// right after a build that average is high, so whole runs were frozen on 1 of 2 idle
    /// cores. A choice made from a stale reading is worse than llama.cpp's plain default.
    pub fn resolve_threads(&self) -> u32 {
        match self.threads {
            Threads::Fixed(n) => n,
            Threads::Auto(_) => physical_cores(),
        }
    }
}

/// Physical cores this process may use: distinct sibling sets of the CPUs in its affinity
/// (Linux sysfs), capped by the logical cores it may use (affinity, cgroup quota); elsewhere
/// the logical cores.
pub fn physical_cores() -> u32 {
    let logical = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let siblings = (0..1024).map_while(|cpu| {
        std::fs::read_to_string(format!(
            "/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
        ))
        .ok()
    });
    physical_cores_for(logical, siblings)
}

/// `logical` capped by the number of distinct sibling lists (one per physical core); none read:
/// `logical`.
fn physical_cores_for(logical: u32, siblings: impl Iterator<Item = String>) -> u32 {
    let distinct: std::collections::BTreeSet<String> =
        siblings.map(|s| s.trim().to_string()).collect();
    match distinct.len() as u32 {
        0 => logical.max(1),
        n => n.min(logical).max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_profile_parses_and_is_named_after_its_file() {
        for (name, text) in BUILTIN {
            let p = TargetProfile::from_toml(text, name).unwrap();
            assert_eq!(&p.name, name);
        }
        assert_eq!(TargetProfile::load("cpu").unwrap().backend, Backend::Cpu);
        assert_eq!(
            TargetProfile::load("raspberry-pi-5").unwrap().threads,
            Threads::Fixed(3)
        );
    }

    #[test]
    fn lanes_fill_a_quarter_of_the_free_memory_in_steps_of_256_cells() {
        let cpu = TargetProfile::load("cpu").unwrap(); // context 4096: floor 32768 cells
                                                       // Unknown model or memory: the floor. 1600 tokens take 1792 cells; 18 of them fit,
                                                       // one is the shared prefix's.
        let floor = cpu.batch_cells(None, Some(1 << 34));
        assert_eq!(floor, 32768);
        assert_eq!(cpu.lanes(32, 1600, floor), (17, 1792));
        // Qwen2.5-0.5B's f16 cache: 12 KiB a token; 8 GiB free allows 2 GiB of cache.
        let cells = cpu.batch_cells(Some(12 << 10), Some(8 << 30));
        assert_eq!(cells, (2u32 << 30) / (12 << 10));
        assert_eq!(cpu.lanes(32, 1600, cells), (32, 1792));
        assert_eq!(
            cpu.lanes(1000, 256, MAX_BATCH_CELLS),
            (crate::MAX_SEQUENCES, 256)
        );
        // Little memory never goes below the floor, nor below two lanes.
        assert_eq!(cpu.batch_cells(Some(12 << 10), Some(1 << 20)), 32768);
        assert_eq!(cpu.lanes(8, 100_000, 32768), (2, 100_096));
    }

    #[test]
    fn batch_invariance_is_off_by_default_and_refused_off_the_cpu() {
        assert!(!TargetProfile::load("cpu").unwrap().batch_invariant);
        assert!(
            TargetProfile::load("cpu-batch-invariant")
                .unwrap()
                .batch_invariant
        );
        let text = format!(
            "{}batch_invariant = true\n",
            include_str!("../../../targets/vulkan.toml")
        );
        let msg = TargetProfile::from_toml(&text, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("x.toml") && msg.contains("batch_invariant") && msg.contains("vulkan"),
            "{msg}"
        );
    }

    #[test]
    fn numerics_change_with_the_kernels_and_the_cache_but_not_with_threads_or_name() {
        let cpu = TargetProfile::load("cpu").unwrap();
        let mut other = cpu.clone();
        other.name = "mine".into();
        other.threads = Threads::Fixed(7);
        other.context_size *= 2;
        assert_eq!(other.numerics(), cpu.numerics());
        let invariant = TargetProfile::load("cpu-batch-invariant").unwrap();
        assert_ne!(invariant.numerics(), cpu.numerics());
        assert!(invariant.numerics().contains("reference kernels"));
        let mut q8 = cpu.clone();
        q8.kv_type = KvType::Q8_0;
        assert_ne!(q8.numerics(), cpu.numerics());
    }

    #[test]
    fn an_unknown_target_lists_the_known_ones() {
        let e = TargetProfile::load("toaster").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("unknown target 'toaster'") && msg.contains("raspberry-pi-5"),
            "{msg}"
        );
    }

    #[test]
    fn a_bad_field_is_named_in_the_error() {
        let text =
            include_str!("../../../targets/cpu.toml").replace("gpu_layers = 0", "gpu_layers = -1");
        let msg = TargetProfile::from_toml(&text, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("x.toml") && msg.contains("gpu_layers"),
            "{msg}"
        );
        let text = include_str!("../../../targets/cpu.toml")
            .replace("mlock = false", "mlock = false\nturbo = true");
        let msg = TargetProfile::from_toml(&text, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("turbo"), "{msg}");
        let text = include_str!("../../../targets/cpu.toml")
            .replace("ubatch_size = 512", "ubatch_size = 4096");
        let msg = TargetProfile::from_toml(&text, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("ubatch_size 4096"), "{msg}");
    }

    #[test]
    fn a_quantized_kv_cache_without_flash_attention_is_refused_with_both_fields_named() {
        let pi = TargetProfile::load("raspberry-pi-5").unwrap();
        assert_eq!(pi.kv_type, KvType::F16, "kv_type defaults to f16");
        let msg = pi
            .clone()
            .with_kv_type(KvType::Q8_0, "--kv-type")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("--kv-type")
                && msg.contains("kv_type q8_0")
                && msg.contains("flash_attention"),
            "{msg}"
        );
        let text = include_str!("../../../targets/cpu.toml")
            .replace("flash_attention = \"auto\"", "flash_attention = \"off\"")
            .replace("kv_type = \"f16\"", "kv_type = \"q4_0\"");
        let msg = TargetProfile::from_toml(&text, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("x.toml") && msg.contains("kv_type q4_0"),
            "{msg}"
        );
        let cpu = TargetProfile::load("cpu").unwrap();
        let q4 = cpu.with_kv_type(KvType::Q4_0, "--kv-type").unwrap();
        assert_eq!(q4.kv_type, KvType::Q4_0);
    }

    #[test]
    fn kv_types_parse_from_their_names_and_nothing_else() {
        for k in KvType::ALL {
            assert_eq!(k.name().parse::<KvType>().unwrap(), k);
        }
        let e = "q5_1".parse::<KvType>().unwrap_err().to_string();
        assert!(e.contains("q5_1") && e.contains("q4_0"), "{e}");
        let text = include_str!("../../../targets/cpu.toml")
            .replace("kv_type = \"f16\"", "kv_type = \"f32\"");
        let msg = TargetProfile::from_toml(&text, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("x.toml") && msg.contains("f32"), "{msg}");
        // A profile written before kv_type existed still loads, with f16.
        let text = include_str!("../../../targets/cpu.toml").replace("kv_type = \"f16\"\n", "");
        assert!(
            !text.lines().any(|l| l.starts_with("kv_type")),
            "the line was removed"
        );
        let p = TargetProfile::from_toml(&text, "old.toml").unwrap();
        assert_eq!(p.kv_type, KvType::F16);
    }

    #[test]
    fn auto_threads_count_one_per_physical_core_within_the_logical_ones() {
        let lists = |l: &[&str]| l.iter().map(|s| format!("{s}\n")).collect::<Vec<_>>();
        // Two hyperthreads per core: 4 logical CPUs, 2 cores.
        let smt = lists(&["0,2", "1,3", "0,2", "1,3"]);
        assert_eq!(physical_cores_for(4, smt.clone().into_iter()), 2);
        // One thread per core (this project's VMs).
        assert_eq!(physical_cores_for(2, lists(&["0", "1"]).into_iter()), 2);
        // A cgroup quota or affinity below the cores caps the count.
        assert_eq!(physical_cores_for(1, smt.into_iter()), 1);
        // No sysfs: the logical cores.
        assert_eq!(physical_cores_for(3, std::iter::empty()), 3);
        assert_eq!(physical_cores_for(0, std::iter::empty()), 1);
    }

    #[test]
    fn auto_threads_do_not_depend_on_the_load_average() {
        let p = TargetProfile::load("cpu").unwrap();
        assert!(matches!(p.threads, Threads::Auto(_)));
        assert_eq!(p.resolve_threads(), physical_cores());
    }
}
