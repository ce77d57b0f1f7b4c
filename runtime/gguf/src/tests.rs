use super::*;

fn tiny() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.kv("general.architecture", "llama")
        .kv("general.name", "tiny")
        .kv("llama.block_count", WriteValue::U32(1))
        .kv(
            "tokenizer.ggml.tokens",
            WriteValue::StrArray(vec!["a".into(), "b".into()]),
        )
        .tensor_f32("token_embd.weight", &[4, 2], &[0.5; 8])
        .tensor_f32("blk.0.attn_q.weight", &[4, 4], &[1.0; 16]);
    w
}

#[test]
fn a_written_file_validates_and_reads_back_its_header() {
    let bytes = tiny().to_bytes();
    let f = validate_bytes(&bytes).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.architecture(), Some("llama"));
    assert_eq!(f.arch_u64("block_count"), Some(1));
    assert_eq!(f.tensors.len(), 2);
    let q = f.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.dims, vec![4, 4]);
    assert_eq!(q.size, 64);
    assert_eq!(q.offset, 32);
    assert_eq!(f.data_offset % 32, 0);
    let s = f.summary();
    assert_eq!(s.vocab, Some(2));
    assert_eq!(s.parameters, 24);
}

fn reason(bytes: &[u8]) -> String {
    match validate_bytes(bytes) {
        Err(GgufError::Invalid { reason, .. }) => reason,
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn bad_magic_is_rejected_with_a_hint() {
    let mut b = tiny().to_bytes();
    b[0] = b'X';
    assert!(reason(&b).contains("bad magic"));
    assert!(reason(b"hello").contains("bad magic"));
    assert!(reason(b"").contains("magic needs 4 bytes"));
}

#[test]
fn a_truncated_file_is_rejected_at_every_cut() {
    let b = tiny().to_bytes();
    for cut in 0..b.len() {
        assert!(validate_bytes(&b[..cut]).is_err(), "cut at {cut} accepted");
    }
    assert!(reason(&b[..b.len() - 1]).contains("past the end of the file"));
}

#[test]
fn version_one_and_big_endian_files_are_rejected() {
    let mut b = tiny().to_bytes();
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(reason(&b).contains("version 1"));
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(reason(&b).contains("big-endian"));
}

#[test]
fn huge_counts_are_rejected_before_any_allocation() {
    let mut b = tiny().to_bytes();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(reason(&b).contains("tensor count"));
    let mut b = tiny().to_bytes();
    b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(reason(&b).contains("metadata count"));
}

#[test]
fn a_string_longer_than_the_file_is_rejected() {
    let mut b = tiny().to_bytes();
    // First key length sits right after the 24-byte header.
    b[24..32].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    assert!(reason(&b).contains("needs"));
}

#[test]
fn misaligned_overlapping_or_oversized_tensors_are_rejected() {
    let mut w = GgufWriter::new();
    w.kv("general.architecture", "llama")
        .tensor_f32("a", &[8], &[0.0; 8])
        .tensor_f32("b", &[8], &[0.0; 8]);
    let good = w.to_bytes();
    let f = validate_bytes(&good).unwrap();
    // Find tensor b's offset field: it is the last 8 bytes of the tensor info section.
    // Tensor b's offset (32) is the last 8-byte field of the tensor infos; the data is all zeros.
    let needle = 32u64.to_le_bytes();
    let info_end = good.windows(8).rposition(|w| w == needle).unwrap() + 8;
    assert!((info_end as u64) <= f.data_offset);
    let mut b = good.clone();
    b[info_end - 8..info_end].copy_from_slice(&33u64.to_le_bytes());
    assert!(reason(&b).contains("not a multiple of the alignment"));
    let mut b = good.clone();
    b[info_end - 8..info_end].copy_from_slice(&0u64.to_le_bytes());
    assert!(reason(&b).contains("expected 32"));
    let mut b = good;
    b[info_end - 8..info_end].copy_from_slice(&(1u64 << 62).to_le_bytes());
    assert!(validate_bytes(&b).is_err());
}

#[test]
fn dimensions_types_and_names_are_checked() {
    let mut w = GgufWriter::new();
    w.tensor_raw("q", &[33], GgmlType::Q8_0, vec![0; 34]);
    assert!(reason(&w.to_bytes()).contains("not a multiple of the block size 32"));

    let mut w = GgufWriter::new();
    w.tensor_f32(&"x".repeat(64), &[1], &[0.0]);
    assert!(reason(&w.to_bytes()).contains("name is 64 bytes"));

    let mut w = GgufWriter::new();
    w.tensor_f32("dup", &[1], &[0.0])
        .tensor_f32("dup", &[1], &[0.0]);
    assert!(reason(&w.to_bytes()).contains("duplicate tensor name"));

    let mut w = GgufWriter::new();
    w.tensor_raw("t", &[2, 2, 2, 2, 2], GgmlType::F32, vec![0; 128]);
    assert!(reason(&w.to_bytes()).contains("5 dimensions"));

    let mut w = GgufWriter::new();
    w.tensor_raw("big", &[1 << 32, 1 << 32], GgmlType::F32, vec![]);
    assert!(reason(&w.to_bytes()).contains("element count overflows"));

    let mut b = {
        let mut w = GgufWriter::new();
        w.tensor_f32("t", &[1], &[0.0]);
        w.to_bytes()
    };
    // The type id of the only tensor: after magic, version, counts, name (8+1), n_dims, one dim.
    let ty_at = 24 + 8 + 1 + 4 + 8;
    b[ty_at..ty_at + 4].copy_from_slice(&31u32.to_le_bytes());
    assert!(reason(&b).contains("unknown ggml type 31"));
}

#[test]
fn metadata_types_duplicates_and_alignment_are_checked() {
    let mut w = GgufWriter::new();
    w.kv("general.alignment", WriteValue::U32(3));
    assert!(reason(&w.to_bytes()).contains("not a power of 2"));
    let mut w = GgufWriter::new();
    w.kv("general.alignment", WriteValue::U64(64));
    assert!(reason(&w.to_bytes()).contains("expected u32"));
    let mut w = GgufWriter::new();
    w.kv("k", WriteValue::U32(1));
    let mut b = w.to_bytes();
    // Type tag after the key "k".
    b[24 + 9..24 + 13].copy_from_slice(&77u32.to_le_bytes());
    assert!(reason(&b).contains("invalid GGUF type 77"));
    // Two entries with the same key, hand-assembled.
    let mut w = GgufWriter::new();
    w.kv("a", WriteValue::U32(1)).kv("b", WriteValue::U32(2));
    let mut b = w.to_bytes();
    let second_key = 24 + 8 + 1 + 4 + 4 + 8;
    b[second_key] = b'a';
    assert!(reason(&b).contains("duplicate metadata key 'a'"));
}

/// A deterministic xorshift mutation run: the validator must return (Ok or Err) on every
/// mutated image and never panic. The cargo-fuzz target explores further.
#[test]
fn the_validator_never_panics_on_mutated_files() {
    let seed_images = [tiny().to_bytes(), {
        let mut w = GgufWriter::new();
        w.kv("general.alignment", WriteValue::U32(64))
            .kv("f", WriteValue::F32Array(vec![1.0, 2.0]))
            .tensor_raw("q", &[32, 2], GgmlType::Q8_0, vec![7; 68]);
        w.to_bytes()
    }];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut accepted = 0;
    for image in &seed_images {
        for _ in 0..20_000 {
            let mut b = image.clone();
            let edits = 1 + next() % 4;
            for _ in 0..edits {
                let r = next();
                let pos = (r as usize >> 8) % b.len();
                match r % 4 {
                    0 => b[pos] = (r >> 32) as u8,
                    1 => b[pos] ^= 1 << ((r >> 40) % 8),
                    2 => {
                        let end = (pos + 8).min(b.len());
                        for x in &mut b[pos..end] {
                            *x = 0xff;
                        }
                    }
                    _ => b.truncate(pos.max(1)),
                }
            }
            if validate_bytes(&b).is_ok() {
                accepted += 1;
            }
        }
    }
    // Some mutations only touch tensor data and stay valid; most must be caught.
    assert!(accepted < 40_000);
}

fn adapter_for(base_dims: [u64; 2], a_dims: [u64; 2], b_dims: [u64; 2]) -> GgufFile {
    let mut w = GgufWriter::lora_adapter("llama", 16.0);
    let n = |d: [u64; 2]| (d[0] * d[1]) as usize;
    w.tensor_f32("blk.0.attn_q.weight.lora_a", &a_dims, &vec![0.0; n(a_dims)])
        .tensor_f32("blk.0.attn_q.weight.lora_b", &b_dims, &vec![0.0; n(b_dims)]);
    let _ = base_dims;
    validate_bytes(&w.to_bytes()).unwrap()
}

#[test]
fn an_adapter_must_match_its_base_in_architecture_names_and_shapes() {
    let base = validate_bytes(&tiny().to_bytes()).unwrap();
    let p = Path::new("a.gguf");
    // Base q is [4, 4]; rank 2.
    check_adapter(&adapter_for([4, 4], [4, 2], [2, 4]), p, &base, "tiny").unwrap();
    let e = check_adapter(&adapter_for([4, 4], [4, 2], [3, 4]), p, &base, "tiny").unwrap_err();
    assert!(e.to_string().contains("expected [4, r] and [r, 4]"), "{e}");
    // The base model itself is not an adapter.
    let e = check_adapter(&base, p, &base, "tiny").unwrap_err();
    assert!(e.to_string().contains("general.type"), "{e}");
    // Another architecture.
    let mut w = GgufWriter::lora_adapter("qwen2", 1.0);
    w.tensor_f32("blk.0.attn_q.weight.lora_a", &[4, 2], &[0.0; 8])
        .tensor_f32("blk.0.attn_q.weight.lora_b", &[2, 4], &[0.0; 8]);
    let other = validate_bytes(&w.to_bytes()).unwrap();
    let e = check_adapter(&other, p, &base, "tiny").unwrap_err();
    assert!(e.to_string().contains("architecture"), "{e}");
    // A tensor the base does not have, and an unpaired half.
    let mut w = GgufWriter::lora_adapter("llama", 1.0);
    w.tensor_f32("blk.9.attn_q.weight.lora_a", &[4, 2], &[0.0; 8])
        .tensor_f32("blk.9.attn_q.weight.lora_b", &[2, 4], &[0.0; 8]);
    let e = check_adapter(&validate_bytes(&w.to_bytes()).unwrap(), p, &base, "tiny").unwrap_err();
    assert!(e.to_string().contains("does not have"), "{e}");
    let mut w = GgufWriter::lora_adapter("llama", 1.0);
    w.tensor_f32("blk.0.attn_q.weight.lora_a", &[4, 2], &[0.0; 8]);
    let e = check_adapter(&validate_bytes(&w.to_bytes()).unwrap(), p, &base, "tiny").unwrap_err();
    assert!(e.to_string().contains("no matching"), "{e}");
}

#[test]
fn an_adapter_must_record_this_base_unless_an_unrecorded_one_is_allowed_by_name() {
    let key = retroformer_core::records::keys::BASE_SHA256;
    let with = |base: Option<&str>| {
        let mut w = GgufWriter::lora_adapter("llama", 4.0);
        if let Some(b) = base {
            w.kv(key, b);
        }
        validate_bytes(&w.to_bytes()).unwrap()
    };
    let path = std::path::Path::new("a.gguf");
    let ours = "ab".repeat(32);
    let check = |f: &GgufFile, p| check_adapter_base(f, path, &ours, "base", p);
    for policy in [BasePolicy::Recorded, BasePolicy::AllowUnrecorded] {
        check(&with(Some(&ours)), policy).unwrap();
        check(&with(Some(&ours.to_uppercase())), policy).unwrap();
        let e = check(&with(Some(&"cd".repeat(32))), policy)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.gguf") && e.contains("cdcdcdcd"), "{e}");
    }
    for unrecorded in [with(None), with(Some(""))] {
        let e = check(&unrecorded, BasePolicy::Recorded)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("records no base") && e.contains("--any-base"),
            "{e}"
        );
        check(&unrecorded, BasePolicy::AllowUnrecorded).unwrap();
    }
}
