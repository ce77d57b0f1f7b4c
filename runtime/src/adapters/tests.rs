use super::*;
use retroformer_gguf::{BasePolicy, GgufWriter, TinyModel, WriteValue};

/// The base sha256 the fixture's store is opened with.
const OURS: &str = "abababababababababababababababababababababababababababababababab";

struct Fixture {
    dir: tempfile::TempDir,
    base: GgufFile,
    store: AdapterStore,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let bytes = TinyModel::llama().writer().to_bytes();
    let base = retroformer_gguf::validate_bytes(&bytes).unwrap();
    let store = AdapterStore::open(&dir.path().join("store"), OURS).unwrap();
    Fixture { dir, base, store }
}

/// A valid rank-2 adapter on blk.0.attn_q of the tiny llama, distinguished by `fill`.
fn adapter(f: &Fixture, name: &str, fill: f32, base_sha: Option<&str>) -> PathBuf {
    let mut w = GgufWriter::lora_adapter("llama", 4.0);
    if let Some(s) = base_sha {
        w.kv(keys::BASE_SHA256, s);
    }
    w.kv(keys::OBJECTIVE, "sft")
        .kv(keys::STEP, WriteValue::U64(7))
        .tensor_f32("blk.0.attn_q.weight.lora_a", &[64, 2], &[fill; 128])
        .tensor_f32("blk.0.attn_q.weight.lora_b", &[2, 64], &[fill; 128]);
    let p = f.dir.path().join(name);
    w.write(&p).unwrap();
    p
}

/// Installs an adapter that records the fixture's base, the probe passing it.
fn install_ours(f: &Fixture, name: &str, fill: f32) -> Result<AdapterManifest, StoreError> {
    let file = adapter(f, name, fill, Some(OURS));
    f.store
        .install(&file, &f.base, "tiny", BasePolicy::Recorded, &|_| Ok(()))
}

#[test]
fn install_activate_and_roll_back() {
    let f = fixture();
    let a = install_ours(&f, "a.gguf", 0.1).unwrap();
    assert_eq!((a.rank, a.step, a.objective.as_str()), (2, 7, "sft"));
    assert_eq!(a.id.len(), 16);
    // The same file again is the same version.
    let again = install_ours(&f, "a2.gguf", 0.1).unwrap();
    assert_eq!(again.id, a.id);
    // An adapter that records no base is installed only when asked for by name.
    let unrecorded = adapter(&f, "b.gguf", 0.2, None);
    let e = f
        .store
        .install(&unrecorded, &f.base, "tiny", BasePolicy::Recorded, &|_| {
            Ok(())
        })
        .unwrap_err();
    assert!(e.to_string().contains("records no base"), "{e}");
    let allow = BasePolicy::AllowUnrecorded;
    let b = f
        .store
        .install(&unrecorded, &f.base, "tiny", allow, &|_| Ok(()))
        .unwrap();
    assert_eq!(f.store.list().unwrap().len(), 2);
    assert!(f.store.active().unwrap().is_none());
    f.store.activate(&a.id).unwrap();
    f.store.activate(&b.id).unwrap();
    assert_eq!(f.store.active().unwrap().unwrap().id, b.id);
    assert_eq!(f.store.rollback().unwrap(), a.id);
    assert_eq!(f.store.active().unwrap().unwrap().id, a.id);
    assert!(matches!(
        f.store.rollback(),
        Err(StoreError::NothingToRollBack)
    ));
    // Deactivating runs the base alone; a rollback brings the adapter back.
    f.store.deactivate().unwrap();
    assert!(f.store.active().unwrap().is_none());
    assert_eq!(
        f.store.list().unwrap().len(),
        2,
        "the adapters stay installed"
    );
    assert_eq!(f.store.rollback().unwrap(), a.id);
    assert!(matches!(
        f.store.activate("nope"),
        Err(StoreError::UnknownId { .. })
    ));
    assert_eq!(
        std::fs::read(f.store.adapter_path(&b.id)).unwrap(),
        std::fs::read(f.dir.path().join("b.gguf")).unwrap()
    );
}

#[test]
fn install_rejects_a_corrupt_adapter_another_base_and_wrong_shapes() {
    let f = fixture();
    let good = adapter(&f, "good.gguf", 0.1, None);
    let bytes = std::fs::read(&good).unwrap();
    let corrupt = f.dir.path().join("corrupt.gguf");
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        f.store
            .install(&corrupt, &f.base, "tiny", BasePolicy::Recorded, &|_| Ok(())),
        Err(StoreError::Invalid(_))
    ));
    let other = adapter(&f, "other.gguf", 0.1, Some(&"cd".repeat(32)));
    let err = f
        .store
        .install(&other, &f.base, "tiny", BasePolicy::Recorded, &|_| Ok(()))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(AdapterError::Mismatch { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("cdcdcdcd"), "{err}");
    let mut w = GgufWriter::lora_adapter("llama", 4.0);
    w.tensor_f32("blk.0.attn_q.weight.lora_a", &[32, 2], &[0.0; 64])
        .tensor_f32("blk.0.attn_q.weight.lora_b", &[2, 64], &[0.0; 128]);
    let shapes = f.dir.path().join("shapes.gguf");
    w.write(&shapes).unwrap();
    assert!(matches!(
        f.store
            .install(&shapes, &f.base, "tiny", BasePolicy::Recorded, &|_| Ok(())),
        Err(StoreError::Invalid(AdapterError::Mismatch { .. }))
    ));
    let mut w = GgufWriter::lora_adapter("qwen2", 4.0);
    w.tensor_f32("blk.0.attn_q.weight.lora_a", &[64, 2], &[0.0; 128])
        .tensor_f32("blk.0.attn_q.weight.lora_b", &[2, 64], &[0.0; 128]);
    let arch = f.dir.path().join("arch.gguf");
    w.write(&arch).unwrap();
    assert!(f
        .store
        .install(&arch, &f.base, "tiny", BasePolicy::Recorded, &|_| Ok(()))
        .is_err());
    assert!(
        f.store.list().unwrap().is_empty(),
        "nothing may be installed"
    );
}

#[test]
fn an_adapter_the_probe_refuses_is_not_installed() {
    let f = fixture();
    let probed = std::cell::RefCell::new(Vec::new());
    let err = f
        .store
        .install(
            &adapter(&f, "a.gguf", 0.1, Some(OURS)),
            &f.base,
            "tiny",
            BasePolicy::Recorded,
            &|p| {
                probed.borrow_mut().push(std::fs::read(p).unwrap());
                Err("llama.cpp was killed by signal 6".into())
            },
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("a.gguf") && err.to_string().contains("signal 6"));
    // The probe saw the bytes that would have been installed.
    assert_eq!(
        probed.borrow()[0],
        std::fs::read(f.dir.path().join("a.gguf")).unwrap()
    );
    assert!(f.store.list().unwrap().is_empty());
    let versions = std::fs::read_dir(f.store.root().join("versions"))
        .unwrap()
        .count();
    assert_eq!(versions, 0, "nothing left behind");
}

#[test]
fn an_installed_adapter_changed_afterwards_is_not_handed_out() {
    let f = fixture();
    let a = install_ours(&f, "a.gguf", 0.1).unwrap();
    assert_eq!(
        f.store.verified_adapter(&a.id).unwrap(),
        f.store.adapter_path(&a.id)
    );
    let p = f.store.adapter_path(&a.id);
    let mut bytes = std::fs::read(&p).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let err = f.store.verified_adapter(&a.id).unwrap_err();
    assert!(matches!(err, StoreError::Tampered { .. }), "{err}");
    let err = f.store.canary(&a.id, 0.0, &mut |_| Ok(1.0)).unwrap_err();
    assert!(
        err.to_string().contains("changed after installation"),
        "{err}"
    );
    assert!(f.store.active().unwrap().is_none());
}

#[test]
fn a_leftover_temporary_folder_is_ignored_and_cleaned_up() {
    let f = fixture();
    let tmp = f.store.root().join("versions").join(".tmp-deadbeef-1");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("adapter.gguf"), b"half").unwrap();
    assert!(f.store.list().unwrap().is_empty());
    install_ours(&f, "a.gguf", 0.1).unwrap();
    assert!(!tmp.exists());
    assert_eq!(f.store.list().unwrap().len(), 1);
}

#[test]
fn the_canary_promotes_a_better_adapter_and_keeps_the_incumbent_over_a_worse_one() {
    let f = fixture();
    let a = install_ours(&f, "a.gguf", 0.1).unwrap();
    let b = install_ours(&f, "b.gguf", 0.2).unwrap();
    let c = install_ours(&f, "c.gguf", 0.3).unwrap();
    let score = |p: Option<&Path>| -> Result<f64, String> {
        let name = p.map(|p| {
            p.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        });
        Ok(match name {
            None => 0.30,
            Some(id) if id == a.id => 0.40,
            Some(id) if id == b.id => 0.38,
            Some(_) => 0.20,
        })
    };
    let r = f.store.canary(&a.id, 0.0, &mut |p| score(p)).unwrap();
    assert!(r.promoted && r.incumbent.is_none());
    assert_eq!(f.store.active().unwrap().unwrap().id, a.id);
    // 0.38 is within a margin of 0.05 of 0.40: promoted.
    let r = f.store.canary(&b.id, 0.05, &mut |p| score(p)).unwrap();
    assert!(r.promoted, "{r:?}");
    // 0.20 is far below 0.38: rejected, b stays active.
    let r = f.store.canary(&c.id, 0.05, &mut |p| score(p)).unwrap();
    assert!(!r.promoted);
    assert_eq!(f.store.active().unwrap().unwrap().id, b.id);
    let m = f.store.manifest(&c.id).unwrap();
    assert_eq!(m.metrics["canary_promoted"], 0.0);
    assert!((m.metrics["canary_score"] - 0.20).abs() < 1e-12);
    // A failing evaluation activates nothing.
    let err = f
        .store
        .canary(&c.id, 1.0, &mut |_| Err("model crashed".into()))
        .unwrap_err();
    assert!(err.to_string().contains("model crashed"));
    assert_eq!(f.store.active().unwrap().unwrap().id, b.id);
}

#[test]
fn opening_and_reading_a_store_creates_nothing_so_a_read_only_home_can_list_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("home/adapters/abab");
    let store = AdapterStore::open(&root, OURS).unwrap();
    assert!(store.list().unwrap().is_empty());
    assert!(store.active().unwrap().is_none());
    assert!(
        !dir.path().join("home").exists(),
        "reading wrote to the home"
    );
}

#[test]
fn a_staging_folder_dropped_before_its_rename_is_removed_and_a_renamed_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join(".tmp-x");
    let s = Staging::create(tmp.clone()).unwrap();
    std::fs::write(tmp.join("adapter.gguf"), b"half").unwrap();
    drop(s); // what an error part-way through an install (a full disk) does
    assert!(!tmp.exists());
    let s = Staging::create(tmp.clone()).unwrap();
    let dest = dir.path().join("0123456789abcdef");
    s.rename_to(&dest).unwrap();
    assert!(dest.is_dir() && !tmp.exists());
}
