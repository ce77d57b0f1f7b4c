//! What a model file's values mean, checked before llama.cpp reads them: the validator
//! ([`crate::validate_file`]) checks the container; llama.cpp asserts (aborting the process) on
//! many values a well-formed container can still hold. Each check below mirrors one of those
//! asserts of the vendored llama.cpp (`llama-model.cpp`'s `load_hparams`, `llama-vocab.cpp`,
//! the graph builders and the CPU kernels) for the architectures we load, and names the key.
//! What this misses, the load probe (a child process) catches.

use std::collections::HashSet;
use std::path::Path;

use crate::{read_array, GgmlType, GgufError, GgufFile, Value};

/// llama.cpp's `LLAMA_MAX_LAYERS`.
pub const MAX_LAYERS: u64 = 512;
/// llama.cpp's `LLAMA_MAX_EXPERTS`.
pub const MAX_EXPERTS: u64 = 512;
/// The most tokens a vocabulary may hold here.
pub const MAX_VOCAB: u64 = 1 << 20;

/// Architectures whose every value below is checked (the ones our manifests name); others get
/// the checks that hold for every architecture.
const CHECKED: [&str; 3] = ["llama", "qwen2", "gemma3"];

/// Tokenizer models a generative architecture can use.
const TOKENIZERS: [&str; 5] = ["llama", "gpt2", "rwkv", "t5", "plamo2"];

/// RoPE scaling types llama.cpp knows.
const ROPE_SCALING: [&str; 4] = ["none", "linear", "yarn", "longrope"];

/// Types whose rows the CPU backend can multiply and look up (no integer, `F64`, `Q8_1` or
/// `Q8_K` weights: their kernels are missing, and a NULL kernel pointer is a SIGSEGV).
fn matmul_type(t: GgmlType) -> bool {
    !matches!(
        t,
        GgmlType::I8
            | GgmlType::I16
            | GgmlType::I32
            | GgmlType::I64
            | GgmlType::F64
            | GgmlType::Q8_1
            | GgmlType::Q8_K
    )
}

struct Checker<'a> {
    f: &'a GgufFile,
    path: &'a Path,
    arch: &'a str,
}

impl Checker<'_> {
    fn bad(&self, key: &str, reason: impl Into<String>) -> GgufError {
        GgufError::Semantic {
            path: self.path.to_path_buf(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch)
    }

    /// An integer under `key`: `None` when absent, an error when of another type.
    fn int(&self, key: &str) -> Result<Option<u64>, GgufError> {
        match self.f.get(key) {
            None => Ok(None),
            Some(Value::Uint(v)) => Ok(Some(*v)),
            Some(Value::Int(v)) if *v >= 0 => Ok(Some(*v as u64)),
            Some(other) => Err(self.bad(
                key,
                format!("expected a non-negative integer, found {other:?}"),
            )),
        }
    }

    fn required_int(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, GgufError> {
        let v = self.int(key)?.ok_or_else(|| self.bad(key, "missing"))?;
        if !range.contains(&v) {
            return Err(self.bad(
                key,
                format!("{v} is not in {}..={}", range.start(), range.end()),
            ));
        }
        Ok(v)
    }

    /// A per-layer value: one integer, or an array with one per layer.
    fn per_layer(&self, key: &str, layers: u64) -> Result<Option<Vec<u64>>, GgufError> {
        match self.f.get(key) {
            None => Ok(None),
            Some(Value::Array { .. }) => {
                let values = read_array(self.path, self.f, key, MAX_LAYERS)?.unwrap_or_default();
                if values.len() as u64 != layers {
                    return Err(
                        self.bad(key, format!("{} values for {layers} layers", values.len()))
                    );
                }
                values
                    .iter()
                    .map(|v| match v {
                        Value::Uint(x) => Ok(*x),
                        Value::Int(x) if *x >= 0 => Ok(*x as u64),
                        other => Err(self.bad(key, format!("element {other:?} is not a count"))),
                    })
                    .collect::<Result<Vec<u64>, _>>()
                    .map(Some)
            }
            Some(_) => Ok(Some(vec![self.int(key)?.unwrap_or(0); layers as usize])),
        }
    }

    fn float(&self, key: &str) -> Result<Option<f64>, GgufError> {
        match self.f.get(key) {
            None => Ok(None),
            Some(Value::Float(v)) => Ok(Some(*v)),
            Some(other) => Err(self.bad(key, format!("expected a float, found {other:?}"))),
        }
    }
}

/// Checks the meaning of a model's metadata and tensors (see the module's notes); the error
/// names the file and the key.
pub fn check_model(f: &GgufFile, path: &Path) -> Result<(), GgufError> {
    let no_arch = || GgufError::Semantic {
        path: path.to_path_buf(),
        key: "general.architecture".into(),
        reason: "missing".into(),
    };
    if f.get_str("general.type") == Some("adapter") {
        return Err(GgufError::Semantic {
            path: path.to_path_buf(),
            key: "general.type".into(),
            reason: "this is a LoRA adapter, not a model (load it with --adapter)".into(),
        });
    }
    let c = Checker {
        f,
        path,
        arch: f.architecture().ok_or_else(no_arch)?,
    };
    let layers = check_layers(&c)?;
    check_experts(&c, layers)?;
    check_attention(&c, layers)?;
    check_norms_and_rope(&c)?;
    let vocab = check_vocab(&c)?;
    check_tensors(&c, vocab)
}

fn check_layers(c: &Checker<'_>) -> Result<u64, GgufError> {
    let layers = c.required_int(&c.key("block_count"), 1..=MAX_LAYERS)?;
    c.required_int(&c.key("context_length"), 1..=1 << 24)?;
    c.required_int(&c.key("embedding_length"), 1..=1 << 17)?;
    let nextn = c.key("nextn_predict_layers");
    if let Some(n) = c.int(&nextn)? {
        if n >= layers {
            return Err(c.bad(&nextn, format!("{n} of {layers} layers")));
        }
    }
    Ok(layers)
}

fn check_experts(c: &Checker<'_>, layers: u64) -> Result<(), GgufError> {
    let count_key = c.key("expert_count");
    let experts = c.int(&count_key)?.unwrap_or(0);
    if experts > MAX_EXPERTS {
        return Err(c.bad(&count_key, format!("{experts} is more than {MAX_EXPERTS}")));
    }
    let used_key = c.key("expert_used_count");
    let used = c.per_layer(&used_key, layers)?.unwrap_or_default();
    let used_max = used.iter().copied().max().unwrap_or(0);
    let groups_key = c.key("expert_group_count");
    let groups = c.int(&groups_key)?.unwrap_or(0);
    if experts == 0 {
        if used_max > 0 || groups > 0 {
            return Err(c.bad(&used_key, "experts are used but expert_count is 0"));
        }
        return Ok(());
    }
    if used_max == 0 || used_max > experts {
        return Err(c.bad(&used_key, format!("{used_max} used of {experts} experts")));
    }
    if groups >= experts || (groups > 1 && experts % groups != 0) {
        return Err(c.bad(&groups_key, format!("{groups} groups of {experts} experts")));
    }
    if !c.f.tensors.iter().any(|t| t.name.contains("_exps")) {
        return Err(c.bad(
            &count_key,
            format!("{experts} experts, but no expert tensors"),
        ));
    }
    Ok(())
}

fn check_attention(c: &Checker<'_>, layers: u64) -> Result<(), GgufError> {
    let embd = c.int(&c.key("embedding_length"))?.unwrap_or(0);
    let head_key = c.key("attention.head_count");
    let heads = c
        .per_layer(&head_key, layers)?
        .ok_or_else(|| c.bad(&head_key, "missing"))?;
    let kv_key = c.key("attention.head_count_kv");
    let kv = c
        .per_layer(&kv_key, layers)?
        .unwrap_or_else(|| heads.clone());
    let checked = CHECKED.contains(&c.arch);
    for (l, (&h, &k)) in heads.iter().zip(&kv).enumerate() {
        if checked && h == 0 {
            return Err(c.bad(&head_key, format!("layer {l} has no attention head")));
        }
        if h > 0 && (k == 0 || h % k != 0) {
            return Err(c.bad(
                &kv_key,
                format!("layer {l}: {k} KV heads for {h} heads (must divide them)"),
            ));
        }
    }
    let h0 = heads.iter().copied().max().unwrap_or(0);
    if h0 == 0 {
        return Ok(());
    }
    let key_len_key = c.key("attention.key_length");
    let key_len = match c.int(&key_len_key)? {
        Some(0) => return Err(c.bad(&key_len_key, "0")),
        Some(v) => v,
        None if embd % h0 != 0 => {
            return Err(c.bad(
                &head_key,
                format!("{h0} heads do not divide the embedding of {embd}"),
            ))
        }
        None => embd / h0,
    };
    if let Some(0) = c.int(&c.key("attention.value_length"))? {
        return Err(c.bad(&c.key("attention.value_length"), "0"));
    }
    if checked && key_len % 2 != 0 {
        return Err(c.bad(
            &key_len_key,
            format!("a head of {key_len} dimensions: RoPE needs an even number"),
        ));
    }
    let rot_key = c.key("rope.dimension_count");
    if let Some(rot) = c.int(&rot_key)? {
        if rot == 0 || rot % 2 != 0 || rot > key_len || (checked && rot != key_len) {
            return Err(c.bad(&rot_key, format!("{rot} for heads of {key_len} dimensions")));
        }
    }
    let ff_key = c.key("feed_forward_length");
    if let Some(ff) = c.per_layer(&ff_key, layers)? {
        if checked && ff.contains(&0) {
            return Err(c.bad(&ff_key, "a layer has a feed-forward of 0"));
        }
    } else if checked {
        return Err(c.bad(&ff_key, "missing"));
    }
    Ok(())
}

fn check_norms_and_rope(c: &Checker<'_>) -> Result<(), GgufError> {
    for suffix in [
        "attention.layer_norm_rms_epsilon",
        "attention.layer_norm_epsilon",
    ] {
        let key = c.key(suffix);
        if let Some(eps) = c.float(&key)? {
            if !(eps.is_finite() && eps > 0.0 && eps < 1.0) {
                return Err(c.bad(&key, format!("{eps} is not in (0, 1)")));
            }
        }
    }
    for suffix in [
        "rope.freq_base",
        "rope.scaling.factor",
        "rope.scaling.attn_factor",
    ] {
        let key = c.key(suffix);
        if let Some(v) = c.float(&key)? {
            if !(v.is_finite() && v >= 0.0) {
                return Err(c.bad(&key, format!("{v}")));
            }
        }
    }
    let scaling = c.key("rope.scaling.type");
    match c.f.get(&scaling) {
        None => {}
        Some(Value::Str(s)) if ROPE_SCALING.contains(&s.as_str()) => {}
        Some(other) => {
            return Err(c.bad(
                &scaling,
                format!("{other:?}; known: {}", ROPE_SCALING.join(", ")),
            ))
        }
    }
    Ok(())
}

/// The vocabulary's size.
fn check_vocab(c: &Checker<'_>) -> Result<u64, GgufError> {
    const MODEL: &str = "tokenizer.ggml.model";
    let model = c.f.get_str(MODEL).ok_or_else(|| c.bad(MODEL, "missing"))?;
    let allowed: &[&str] = if CHECKED.contains(&c.arch) {
        &["llama", "gpt2"]
    } else {
        &TOKENIZERS
    };
    if !allowed.contains(&model) {
        return Err(c.bad(
            MODEL,
            format!(
                "{model:?} for a {} model; known: {}",
                c.arch,
                allowed.join(", ")
            ),
        ));
    }
    const TOKENS: &str = "tokenizer.ggml.tokens";
    let tokens =
        read_array(c.path, c.f, TOKENS, MAX_VOCAB)?.ok_or_else(|| c.bad(TOKENS, "missing"))?;
    if tokens.is_empty() {
        return Err(c.bad(TOKENS, "empty"));
    }
    let mut seen = HashSet::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        let Value::Str(s) = t else {
            return Err(c.bad(TOKENS, format!("token {i} is not a string")));
        };
        if !seen.insert(s.as_str()) {
            return Err(c.bad(TOKENS, format!("token {i} ({s:?}) appears twice")));
        }
    }
    let n = tokens.len() as u64;
    if model == "llama" && !seen.contains("<0x0A>") && !seen.contains("\n") {
        return Err(c.bad(TOKENS, "a SentencePiece vocabulary without a newline token"));
    }
    for key in ["tokenizer.ggml.scores", "tokenizer.ggml.token_type"] {
        if let Some(Value::Array { len, .. }) = c.f.get(key) {
            if *len != n {
                return Err(c.bad(key, format!("{len} values for {n} tokens")));
            }
        }
    }
    for (name, kv) in &c.f.metadata {
        let id_key = name.starts_with("tokenizer.ggml.") && name.ends_with("_token_id");
        if id_key && !matches!(kv.value, Value::Uint(_) | Value::Int(_)) {
            return Err(c.bad(name, "not an integer"));
        }
        if id_key && c.int(name).ok().flatten().is_some_and(|id| id >= n) {
            return Err(c.bad(name, format!("{:?} is outside the {n} tokens", kv.value)));
        }
    }
    for (flag, id) in [
        (
            "tokenizer.ggml.add_bos_token",
            "tokenizer.ggml.bos_token_id",
        ),
        (
            "tokenizer.ggml.add_eos_token",
            "tokenizer.ggml.eos_token_id",
        ),
    ] {
        if c.f.get(flag) == Some(&Value::Bool(true)) && c.f.get(id).is_none() {
            return Err(c.bad(id, format!("missing, but {flag} is true")));
        }
    }
    Ok(n)
}

fn check_tensors(c: &Checker<'_>, vocab: u64) -> Result<(), GgufError> {
    for t in &c.f.tensors {
        let key = format!("tensor {}", t.name);
        if t.dims.contains(&0) {
            return Err(c.bad(&key, format!("dimension of 0 in {:?}", t.dims)));
        }
        if t.dims.len() >= 2 && !matmul_type(t.ty) {
            return Err(c.bad(
                &key,
                format!(
                    "type {} cannot be multiplied or looked up on the CPU",
                    t.ty.name()
                ),
            ));
        }
        let float = matches!(t.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
        if t.dims.len() == 1 && !float {
            return Err(c.bad(
                &key,
                format!(
                    "a 1-D tensor of type {} (norms and biases are floats)",
                    t.ty.name()
                ),
            ));
        }
    }
    let embd = c.int(&c.key("embedding_length"))?.unwrap_or(0);
    if let Some(t) = c.f.tensor("token_embd.weight") {
        if t.dims != [embd, vocab] {
            return Err(c.bad(
                "tensor token_embd.weight",
                format!(
                    "{:?}, expected [{embd}, {vocab}] (embedding, tokens)",
                    t.dims
                ),
            ));
        }
    } else if CHECKED.contains(&c.arch) {
        return Err(c.bad("tensor token_embd.weight", "missing"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GgufWriter, TinyModel, WriteValue};

    /// `w` written to a file (arrays are read back from it) and checked.
    fn check(w: &GgufWriter) -> Result<(), GgufError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        w.write(&p).unwrap();
        let f = crate::validate_file(&p).expect("the container is valid");
        check_model(&f, &p)
    }

    /// The key the error names, or a panic saying the file passed.
    fn refused_key(w: &GgufWriter) -> String {
        match check(w) {
            Err(GgufError::Semantic { key, path, .. }) => {
                assert!(path.ends_with("m.gguf"), "{}", path.display());
                key
            }
            other => panic!("expected a semantic error, got {other:?}"),
        }
    }

    fn llama() -> GgufWriter {
        TinyModel::llama().writer()
    }

    #[test]
    fn the_tiny_models_pass() {
        check(&TinyModel::llama().writer()).unwrap();
        check(&TinyModel::qwen2().writer()).unwrap();
    }

    #[test]
    fn out_of_range_counts_are_refused_naming_the_key() {
        let cases: [(&str, WriteValue); 8] = [
            ("llama.block_count", WriteValue::U32(0)),
            ("llama.block_count", WriteValue::U32(100_000)),
            ("llama.context_length", WriteValue::U32(0)),
            ("llama.embedding_length", WriteValue::U32(0)),
            ("llama.attention.head_count", WriteValue::U32(0)),
            ("llama.attention.head_count_kv", WriteValue::U32(3)),
            ("llama.rope.dimension_count", WriteValue::U32(15)),
            ("llama.feed_forward_length", WriteValue::U32(0)),
        ];
        for (key, value) in cases {
            let mut w = llama();
            w.kv(key, value);
            let named = refused_key(&w);
            assert!(named.starts_with("llama."), "{key}: {named}");
        }
    }

    #[test]
    fn experts_without_expert_tensors_are_refused() {
        let mut w = llama();
        w.kv("llama.expert_count", WriteValue::U32(8))
            .kv("llama.expert_used_count", WriteValue::U32(2));
        assert_eq!(refused_key(&w), "llama.expert_count");
        let mut w = llama();
        w.kv("llama.expert_used_count", WriteValue::U32(2));
        assert_eq!(refused_key(&w), "llama.expert_used_count");
    }

    #[test]
    fn non_finite_or_out_of_range_floats_are_refused() {
        for (key, v) in [
            ("llama.attention.layer_norm_rms_epsilon", f32::NAN),
            ("llama.attention.layer_norm_rms_epsilon", 0.0),
            ("llama.rope.freq_base", f32::INFINITY),
            ("llama.rope.freq_base", -1.0),
        ] {
            let mut w = llama();
            w.kv(key, WriteValue::F32(v));
            assert_eq!(refused_key(&w), key, "{v}");
        }
        let mut w = llama();
        w.kv("llama.rope.scaling.type", "spiral");
        assert_eq!(refused_key(&w), "llama.rope.scaling.type");
        let mut w = llama();
        w.kv("llama.rope.freq_base", WriteValue::U32(7));
        assert_eq!(refused_key(&w), "llama.rope.freq_base");
    }

    #[test]
    fn broken_vocabularies_are_refused() {
        let mut w = llama();
        w.kv("tokenizer.ggml.model", "bert");
        assert_eq!(refused_key(&w), "tokenizer.ggml.model");
        let mut w = llama();
        w.remove_kv("tokenizer.ggml.model");
        assert_eq!(refused_key(&w), "tokenizer.ggml.model");
        let mut w = llama();
        w.kv("tokenizer.ggml.tokens", WriteValue::StrArray(Vec::new()));
        assert_eq!(refused_key(&w), "tokenizer.ggml.tokens");
        let n = TinyModel::llama().vocab() as usize;
        let dup: Vec<String> = (0..n).map(|i| format!("t{}", i.min(n - 2))).collect();
        let mut w = llama();
        w.kv("tokenizer.ggml.tokens", WriteValue::StrArray(dup));
        assert_eq!(refused_key(&w), "tokenizer.ggml.tokens");
        let no_newline: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        let mut w = llama();
        w.kv("tokenizer.ggml.tokens", WriteValue::StrArray(no_newline));
        assert_eq!(refused_key(&w), "tokenizer.ggml.tokens");
        let mut w = llama();
        w.kv("tokenizer.ggml.scores", WriteValue::F32Array(vec![0.0; 3]));
        assert_eq!(refused_key(&w), "tokenizer.ggml.scores");
        let mut w = llama();
        w.kv("tokenizer.ggml.bos_token_id", WriteValue::U32(n as u32));
        assert_eq!(refused_key(&w), "tokenizer.ggml.bos_token_id");
        let mut w = llama();
        w.kv("tokenizer.ggml.eos_token_id", "two");
        assert_eq!(refused_key(&w), "tokenizer.ggml.eos_token_id");
        let mut w = llama();
        w.remove_kv("tokenizer.ggml.bos_token_id")
            .kv("tokenizer.ggml.add_bos_token", WriteValue::Bool(true));
        assert_eq!(refused_key(&w), "tokenizer.ggml.bos_token_id");
    }

    #[test]
    fn tensors_the_cpu_cannot_use_are_refused() {
        let mut w = llama();
        w.remove_tensor("blk.0.attn_q.weight").tensor_raw(
            "blk.0.attn_q.weight",
            &[64, 64],
            GgmlType::I32,
            vec![0; 64 * 64 * 4],
        );
        assert_eq!(refused_key(&w), "tensor blk.0.attn_q.weight");
        let mut w = llama();
        w.remove_tensor("blk.0.attn_norm.weight").tensor_raw(
            "blk.0.attn_norm.weight",
            &[64],
            GgmlType::I8,
            vec![0; 64],
        );
        assert_eq!(refused_key(&w), "tensor blk.0.attn_norm.weight");
        let mut w = llama();
        w.remove_tensor("token_embd.weight").tensor_f32(
            "token_embd.weight",
            &[64, 10],
            &[0.0; 640],
        );
        assert_eq!(refused_key(&w), "tensor token_embd.weight");
        let mut w = llama();
        w.remove_tensor("token_embd.weight");
        assert_eq!(refused_key(&w), "tensor token_embd.weight");
    }

    #[test]
    fn an_adapter_or_a_file_without_architecture_is_not_a_model() {
        let mut w = llama();
        w.kv("general.type", "adapter");
        assert_eq!(refused_key(&w), "general.type");
        let mut w = llama();
        w.remove_kv("general.architecture");
        assert_eq!(refused_key(&w), "general.architecture");
    }
}
