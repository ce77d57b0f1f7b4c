//! Tiny random models that llama.cpp loads: a few layers, a byte-level SentencePiece vocabulary,
//! F32 weights. Tests and the trainer's parity checks use them where speed matters more than
//! realism.

use super::writer::{GgufWriter, WriteValue};
use retroformer_core::rng::SplitMix64;

/// The shape of a tiny model.
#[derive(Debug, Clone, PartialEq)]
pub struct TinyModel {
    /// `llama` (RoPE on adjacent pairs) or `qwen2` (NeoX RoPE, q/k/v biases).
    pub arch: String,
    /// Transformer blocks.
    pub layers: u32,
    /// Embedding width.
    pub embd: u32,
    /// Query heads.
    pub heads: u32,
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: u32,
    /// MLP width.
    pub ff: u32,
    /// Normal tokens after the 3 special and 256 byte tokens.
    pub extra_tokens: u32,
    /// User-defined tokens after those (llama.cpp matches them in any text before the rest of
    /// the tokeniser runs).
    pub user_defined: Vec<String>,
    /// Context length written to the header.
    pub context: u32,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// No `output.weight`: the head reuses `token_embd.weight`.
    pub tied: bool,
    /// Seed of the weights.
    pub seed: u64,
}

impl TinyModel {
    /// Two layers, width 64, 4 query heads over 2 KV heads, 300 tokens.
    pub fn llama() -> Self {
        Self {
            arch: "llama".into(),
            layers: 2,
            embd: 64,
            heads: 4,
            kv_heads: 2,
            ff: 128,
            extra_tokens: 41,
            user_defined: Vec::new(),
            context: 512,
            rope_base: 10000.0,
            eps: 1e-5,
            tied: true,
            seed: 1,
        }
    }

    /// As [`TinyModel::llama`], with the `qwen2` architecture and a separate output head.
    pub fn qwen2() -> Self {
        Self {
            arch: "qwen2".into(),
            tied: false,
            rope_base: 1_000_000.0,
            eps: 1e-6,
            seed: 2,
            ..Self::llama()
        }
    }

    /// Vocabulary size.
    pub fn vocab(&self) -> u32 {
        3 + 256 + self.extra_tokens + self.user_defined.len() as u32
    }

    /// The model as a GGUF image ready to write.
    pub fn writer(&self) -> GgufWriter {
        let a = self.arch.as_str();
        let hd = self.embd / self.heads;
        let kv = self.kv_heads * hd;
        let (e, f, v) = (self.embd as u64, self.ff as u64, self.vocab() as u64);
        let mut w = GgufWriter::new();
        w.kv("general.architecture", a)
            .kv("general.name", "tiny-random")
            .kv(
                &format!("{a}.context_length"),
                WriteValue::U32(self.context),
            )
            .kv(&format!("{a}.embedding_length"), WriteValue::U32(self.embd))
            .kv(&format!("{a}.block_count"), WriteValue::U32(self.layers))
            .kv(
                &format!("{a}.feed_forward_length"),
                WriteValue::U32(self.ff),
            )
            .kv(
                &format!("{a}.attention.head_count"),
                WriteValue::U32(self.heads),
            )
            .kv(
                &format!("{a}.attention.head_count_kv"),
                WriteValue::U32(self.kv_heads),
            )
            .kv(
                &format!("{a}.attention.layer_norm_rms_epsilon"),
                WriteValue::F32(self.eps),
            )
            .kv(
                &format!("{a}.rope.freq_base"),
                WriteValue::F32(self.rope_base),
            )
            .kv(&format!("{a}.rope.dimension_count"), WriteValue::U32(hd));
        let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
        let mut types = vec![2, 3, 3];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
        }
        for i in 0..self.extra_tokens {
            // Distinct pieces: "▁a".."▁z", then "▁t26"...
            let piece = if i < 26 {
                format!("\u{2581}{}", (b'a' + i as u8) as char)
            } else {
                format!("\u{2581}t{i}")
            };
            tokens.push(piece);
            types.push(1);
        }
        for piece in &self.user_defined {
            tokens.push(piece.clone());
            types.push(4);
        }
        let scores: Vec<f32> = (0..tokens.len()).map(|i| -(i as f32)).collect();
        w.kv("tokenizer.ggml.model", "llama")
            .kv("tokenizer.ggml.tokens", WriteValue::StrArray(tokens))
            .kv("tokenizer.ggml.scores", WriteValue::F32Array(scores))
            .kv("tokenizer.ggml.token_type", WriteValue::I32Array(types))
            .kv("tokenizer.ggml.unknown_token_id", WriteValue::U32(0))
            .kv("tokenizer.ggml.bos_token_id", WriteValue::U32(1))
            .kv("tokenizer.ggml.eos_token_id", WriteValue::U32(2));
        let mut rng = SplitMix64::new(self.seed);
        let mut mat = |w: &mut GgufWriter, name: &str, dims: [u64; 2]| {
            let scale = 1.0 / (dims[0] as f32).sqrt();
            let data: Vec<f32> = (0..dims[0] * dims[1])
                .map(|_| (rng.unit_f32() * 2.0 - 1.0) * scale)
                .collect();
            w.tensor_f32(name, &dims, &data);
        };
        mat(&mut w, "token_embd.weight", [e, v]);
        let mut rng2 = SplitMix64::new(self.seed ^ 0x9e37_79b9);
        let mut vec = |w: &mut GgufWriter, name: &str, n: u64, center: f32, spread: f32| {
            let data: Vec<f32> = (0..n)
                .map(|_| center + spread * (rng2.unit_f32() * 2.0 - 1.0))
                .collect();
            w.tensor_f32(name, &[n], &data);
        };
        for l in 0..self.layers {
            let p = format!("blk.{l}");
            vec(&mut w, &format!("{p}.attn_norm.weight"), e, 1.0, 0.1);
            vec(&mut w, &format!("{p}.ffn_norm.weight"), e, 1.0, 0.1);
            if a == "qwen2" {
                vec(&mut w, &format!("{p}.attn_q.bias"), e, 0.0, 0.1);
                vec(&mut w, &format!("{p}.attn_k.bias"), kv as u64, 0.0, 0.1);
                vec(&mut w, &format!("{p}.attn_v.bias"), kv as u64, 0.0, 0.1);
            }
        }
        vec(&mut w, "output_norm.weight", e, 1.0, 0.1);
        for l in 0..self.layers {
            let p = format!("blk.{l}");
            mat(&mut w, &format!("{p}.attn_q.weight"), [e, e]);
            mat(&mut w, &format!("{p}.attn_k.weight"), [e, kv as u64]);
            mat(&mut w, &format!("{p}.attn_v.weight"), [e, kv as u64]);
            mat(&mut w, &format!("{p}.attn_output.weight"), [e, e]);
            mat(&mut w, &format!("{p}.ffn_gate.weight"), [e, f]);
            mat(&mut w, &format!("{p}.ffn_up.weight"), [e, f]);
            mat(&mut w, &format!("{p}.ffn_down.weight"), [f, e]);
        }
        if !self.tied {
            mat(&mut w, "output.weight", [e, v]);
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiny_model_validates_with_the_expected_shape() {
        for m in [TinyModel::llama(), TinyModel::qwen2()] {
            let f = crate::validate_bytes(&m.writer().to_bytes()).unwrap();
            assert_eq!(f.architecture(), Some(m.arch.as_str()));
            assert_eq!(f.arch_u64("block_count"), Some(2));
            assert_eq!(
                f.tensor("token_embd.weight").unwrap().dims,
                vec![64, m.vocab() as u64]
            );
            assert_eq!(f.tensor("output.weight").is_some(), !m.tied);
            assert_eq!(f.tensor("blk.0.attn_q.bias").is_some(), m.arch == "qwen2");
        }
    }
}
