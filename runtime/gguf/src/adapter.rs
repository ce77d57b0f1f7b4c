//! Whether a LoRA adapter fits a base model, checked before llama.cpp applies it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::{GgmlType, GgufError, GgufFile, TensorInfo, Value, ValueType};

/// Why a LoRA adapter does not fit a base model.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The adapter file itself is not valid GGUF.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The adapter is valid GGUF but does not match the base model.
    #[error("{path}: adapter does not fit base model {base}: {reason}")]
    Mismatch {
        /// The adapter file.
        path: PathBuf,
        /// The base model's name or path.
        base: String,
        /// What does not match.
        reason: String,
    },
}

/// Which adapters a base model takes, beyond fitting its shapes. An adapter that records
/// another base (`retroformer.base_sha256`) is refused under either policy: same shapes do not
/// make the same weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BasePolicy {
    /// Only an adapter that records this base's sha256 (as `retroformer-train` writes it).
    #[default]
    Recorded,
    /// Also an adapter that records no base (made by another tool), asked for by name.
    AllowUnrecorded,
    /// No check of the base at all: only for a process that loads a file to see whether
    /// llama.cpp survives it (the load probe's child), after its parent applied the rule.
    Unchecked,
}

/// The one rule for an adapter's base, for installing it and for loading it: the adapter
/// `adapter` (read from `path`) must record `base_sha256`, or, under
/// [`BasePolicy::AllowUnrecorded`], record no base at all.
pub fn check_adapter_base(
    adapter: &GgufFile,
    path: &Path,
    base_sha256: &str,
    base_name: &str,
    policy: BasePolicy,
) -> Result<(), AdapterError> {
    if policy == BasePolicy::Unchecked {
        return Ok(());
    }
    let mismatch = |reason: String| AdapterError::Mismatch {
        path: path.to_path_buf(),
        base: base_name.to_string(),
        reason,
    };
    let key = retroformer_core::records::keys::BASE_SHA256;
    match adapter.get_str(key).filter(|s| !s.is_empty()) {
        Some(recorded) if recorded.eq_ignore_ascii_case(base_sha256) => Ok(()),
        Some(recorded) => Err(mismatch(format!(
            "it was trained on the base with sha256 {}, and this base's is {}",
            short(recorded),
            short(base_sha256)
        ))),
        None if policy == BasePolicy::AllowUnrecorded => Ok(()),
        None => Err(mismatch(format!(
            "it records no base model ({key}; retroformer-train writes it), so nothing says it \
             was trained on this one; for an adapter made by another tool, allow it by name \
             (--any-base; its shapes are still checked)"
        ))),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..16).unwrap_or(sha)
}

/// Checks that the validated adapter `adapter` (read from `path`) is a LoRA adapter for `base`:
/// `general.type = adapter`, `adapter.type = lora`, the same architecture, every `.lora_a` with
/// its `.lora_b`, each naming a 2-D base tensor, with `lora_a` [in, r] and `lora_b` [r, out]
/// where the base is [in, out], and types llama.cpp can apply (F32, F16, BF16, or Q8_0 with
/// rows a multiple of 32).
pub fn check_adapter(
    adapter: &GgufFile,
    path: &Path,
    base: &GgufFile,
    base_name: &str,
) -> Result<(), AdapterError> {
    let mismatch = |reason: String| AdapterError::Mismatch {
        path: path.to_path_buf(),
        base: base_name.to_string(),
        reason,
    };
    check_header(adapter, base).map_err(mismatch)?;
    let by_name: HashMap<&str, &TensorInfo> = adapter
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let base_by_name: HashMap<&str, &TensorInfo> =
        base.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut pairs = 0usize;
    for a in &adapter.tensors {
        if check_tensor(a, &by_name, &base_by_name).map_err(mismatch)? {
            pairs += 1;
        }
    }
    if pairs == 0 {
        return Err(mismatch("the adapter has no .lora_a/.lora_b pairs".into()));
    }
    Ok(())
}

/// The adapter's metadata: its type, its architecture (the base's), and the keys llama.cpp reads
/// with typed getters that abort on another type.
fn check_header(adapter: &GgufFile, base: &GgufFile) -> Result<(), String> {
    match adapter.get_str("general.type") {
        Some("adapter") => {}
        other => return Err(format!("general.type is {other:?}, expected \"adapter\"")),
    }
    match adapter.get_str("adapter.type") {
        Some("lora") => {}
        other => return Err(format!("adapter.type is {other:?}, expected \"lora\"")),
    }
    if adapter.architecture() != base.architecture() {
        return Err(format!(
            "adapter architecture {:?} differs from the base's {:?}",
            adapter.architecture(),
            base.architecture()
        ));
    }
    if let Some(kv) = adapter.metadata.get(retroformer_core::records::keys::ALPHA) {
        match (&kv.value, kv.ty) {
            (Value::Float(a), ValueType::F32) if a.is_finite() && *a > 0.0 => {}
            (v, ty) => {
                return Err(format!(
                    "adapter.lora.alpha is {v:?} stored as {ty:?}; llama.cpp reads a positive F32"
                ))
            }
        }
    }
    for (key, kv) in &adapter.metadata {
        let ids = matches!(
            kv.value,
            Value::Array {
                elem: ValueType::U32 | ValueType::I32,
                ..
            }
        );
        if key.starts_with("adapter.alora.") && !ids {
            return Err(format!(
                "{key} is {:?}; llama.cpp reads an array of 32-bit token ids",
                kv.value
            ));
        }
    }
    if adapter.tensors.is_empty() {
        return Err("the adapter has no tensors".into());
    }
    Ok(())
}

/// One tensor of the adapter: a `.lora_b` needs its `.lora_a`; a `.lora_a` needs its `.lora_b`
/// and a 2-D base tensor they fit, in types llama.cpp applies. `true` for a checked pair.
fn check_tensor(
    a: &TensorInfo,
    by_name: &HashMap<&str, &TensorInfo>,
    base_by_name: &HashMap<&str, &TensorInfo>,
) -> Result<bool, String> {
    let Some(target) = a.name.strip_suffix(".lora_a") else {
        if let Some(stem) = a.name.strip_suffix(".lora_b") {
            if !by_name.contains_key(format!("{stem}.lora_a").as_str()) {
                return Err(format!("'{}' has no matching .lora_a", a.name));
            }
            return Ok(false);
        }
        return Err(format!(
            "tensor '{}' is neither a .lora_a nor a .lora_b tensor",
            a.name
        ));
    };
    if target.starts_with("token_embd") || target.starts_with("output.") {
        return Err(format!(
            "'{}' adapts '{target}': the embeddings and the output head are not adapted here",
            a.name
        ));
    }
    let b_name = format!("{target}.lora_b");
    let b = by_name
        .get(b_name.as_str())
        .copied()
        .ok_or_else(|| format!("'{}' has no matching '{b_name}'", a.name))?;
    let t = base_by_name.get(target).copied().ok_or_else(|| {
        format!(
            "'{}' targets '{target}', which the base model does not have",
            a.name
        )
    })?;
    if t.dims.len() != 2 || a.dims.len() != 2 || b.dims.len() != 2 {
        return Err(format!(
            "'{target}': LoRA tensors and their base must be 2-D (base {:?}, a {:?}, b {:?})",
            t.dims, a.dims, b.dims
        ));
    }
    let (n_in, n_out) = (t.dims[0], t.dims[1]);
    let rank = a.dims[1];
    if a.dims[0] != n_in || b.dims[0] != rank || b.dims[1] != n_out || rank == 0 {
        return Err(format!(
            "'{target}' is [{n_in}, {n_out}] but lora_a is {:?} and lora_b is {:?} (expected [{n_in}, r] and [r, {n_out}])",
            a.dims, b.dims
        ));
    }
    for x in [a, b] {
        let ok = match x.ty {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => true,
            GgmlType::Q8_0 => x.dims[0] % 32 == 0,
            _ => false,
        };
        if !ok {
            return Err(format!(
                "'{}' has type {} with rows of {}: llama.cpp applies only F32, F16, BF16 or Q8_0 (rows a multiple of 32)",
                x.name,
                x.ty.name(),
                x.dims[0]
            ));
        }
    }
    Ok(true)
}
