//! Where a run computes: the backends by name, and burn's device for each.

use crate::error::TrainerError;

/// Where a run computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The native CPU engine ([`native`]): a hand-written LoRA forward and backward on gemm
    /// and rayon; burn (flex, else ndarray) keeps the factors, the objectives' scalars and the
    /// optimiser. The CPU default; no LoRA dropout.
    Native,
    /// burn-ndarray on the CPU (deprecated by burn 0.22; 2.4x slower than flex here: 9.1 vs
    /// 3.74 s per SmolLM2 SFT step, release build, 2 threads).
    Ndarray,
    /// burn's pure-Rust `flex` CPU backend (feature `flex`, on by default): burn's autodiff
    /// over the whole model.
    Flex,
    /// wgpu: Vulkan or Metal (feature `wgpu`).
    Wgpu,
    /// CUDA (feature `cuda`).
    Cuda,
}

impl Backend {
    /// Every backend, by its command-line name.
    pub const ALL: [(&'static str, Backend); 5] = [
        ("native", Backend::Native),
        ("ndarray", Backend::Ndarray),
        ("flex", Backend::Flex),
        ("wgpu", Backend::Wgpu),
        ("cuda", Backend::Cuda),
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map_or("native", |(n, _)| n)
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, b)| *b)
            .ok_or_else(|| format!("{s}: known backends are native, ndarray, flex, wgpu, cuda"))
    }
}

/// The autodiff device of `backend`, or an error naming the feature the build lacks.
#[allow(deprecated, unreachable_code)]
pub fn backend_device(backend: Backend) -> Result<burn::tensor::Device, TrainerError> {
    let missing = |feature: &str| TrainerError::Config {
        field: "backend".into(),
        reason: format!(
            "this build lacks it (rebuild retroformer-trainer with --features {feature})"
        ),
    };
    let device = match backend {
        Backend::Native => {
            #[cfg(feature = "flex")]
            {
                burn::tensor::Device::flex()
            }
            #[cfg(not(feature = "flex"))]
            burn::tensor::Device::ndarray()
        }
        Backend::Ndarray => burn::tensor::Device::ndarray(),
        Backend::Flex => {
            #[cfg(feature = "flex")]
            {
                burn::tensor::Device::flex()
            }
            #[cfg(not(feature = "flex"))]
            return Err(missing("flex"));
        }
        Backend::Wgpu => {
            #[cfg(feature = "wgpu")]
            {
                burn::tensor::Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)
            }
            #[cfg(not(feature = "wgpu"))]
            return Err(missing("wgpu"));
        }
        Backend::Cuda => {
            #[cfg(feature = "cuda")]
            {
                burn::tensor::Device::cuda(0)
            }
            #[cfg(not(feature = "cuda"))]
            return Err(missing("cuda"));
        }
    };
    Ok(device.autodiff())
}
