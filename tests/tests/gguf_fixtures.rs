//! Every fixture in `tests/data/gguf` is judged by the runtime's validator as `cases.json` says,
//! and an adapter written with the runtime's writer is read back by the trainer.

use std::collections::BTreeMap;

use retroformer_e2e::data_dir;
use retroformer_gguf::{self as gguf, GgufError, GgufWriter};

#[derive(serde::Deserialize)]
struct Case {
    expect: String,
    valid: bool,
}

#[test]
fn each_gguf_fixture_gets_the_verdict_its_case_names() {
    let dir = data_dir().join("gguf");
    let cases: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    assert!(cases.len() >= 20);
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "gguf") {
            files += 1;
            let stem = p.file_stem().unwrap().to_string_lossy().to_string();
            assert!(cases.contains_key(&stem), "fixture {stem} has no case");
        }
    }
    assert_eq!(files, cases.len());
    for (name, v) in cases {
        let case: Case = serde_json::from_value(v).unwrap();
        let path = dir.join(format!("{name}.gguf"));
        match gguf::validate_file(&path) {
            Ok(_) => assert!(
                case.valid,
                "{name}: accepted but should fail with {:?}",
                case.expect
            ),
            Err(GgufError::Invalid { path: p, reason }) => {
                assert!(!case.valid, "{name}: rejected ({reason}) but is valid");
                assert!(
                    reason.contains(&case.expect),
                    "{name}: {reason:?} lacks {:?}",
                    case.expect
                );
                assert_eq!(p, path);
            }
            Err(e) => panic!("{name}: unexpected error {e}"),
        }
    }
}

#[test]
fn an_adapter_written_by_the_runtime_writer_is_inspected_by_the_trainer() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.gguf");
    let mut w = GgufWriter::lora_adapter("qwen2", 32.0);
    w.tensor_f32("blk.0.attn_v.weight.lora_a", &[16, 4], &[0.1; 64])
        .tensor_f32("blk.0.attn_v.weight.lora_b", &[4, 8], &[0.1; 32]);
    w.write(&p).unwrap();
    let s = retroformer_trainer::inspect_adapter(&p).unwrap();
    assert_eq!(s.architecture.as_deref(), Some("qwen2"));
    assert_eq!(s.rank, Some(4));
    assert_eq!(s.pairs, 1);
}
