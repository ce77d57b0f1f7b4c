use super::*;

fn fig(x: f64) -> Figure {
    Figure::of(&[x * 0.9, x, x * 1.1]).unwrap()
}

pub(crate) fn sample(label: &str, model: &str, speed: f64) -> BenchReport {
    BenchReport {
        kind: KIND.into(),
        format_version: FORMAT_VERSION,
        label: label.into(),
        created_unix: 1,
        quick: true,
        wall_s: 1.0,
        fingerprint: Fingerprint::default(),
        target: retroformer_llm::target::TargetProfile::load("cpu").unwrap(),
        models: vec![ModelReport {
            name: model.into(),
            file_bytes: 10,
            sha256: None,
            threads: 2,
            load_ms: fig(100.0),
            prefill: vec![PrefillPoint {
                prompt_tokens: 64,
                runtime_tps: fig(speed),
                reference_tps: Some(fig(speed)),
                ratio: Some(1.0),
            }],
            decode: vec![DecodePoint {
                depth: 0,
                tokens: 16,
                runtime_tps: fig(speed / 4.0),
                reference_tps: None,
                ratio: None,
            }],
            ttft_ms: fig(20.0),
            ttft_prompt_tokens: 64,
            react_step: ReactStep {
                prompt_tokens: 300,
                generated_tokens: 8,
                with_reuse_ms: fig(50.0),
                without_reuse_ms: fig(500.0),
                ratio: 0.1,
            },
            adapter_switch: None,
            peak_rss_bytes: Some(200_000_000),
            peak_rss_isolated: true,
        }],
        agent: vec![AgentTask {
            env: "household".into(),
            task: "t1".into(),
            model: model.into(),
            success: true,
            calls: 3,
            evaluated_tokens: 10,
            reused_tokens: 5,
            generated_tokens: 7,
            wall_ms: 1500.0,
        }],
        trainer: vec![],
        load: LoadReport::default(),
        notes: vec![],
    }
}

#[test]
fn a_figure_is_the_median_and_range_of_its_repetitions() {
    let f = Figure::of(&[3.0, 1.0, 2.0, 10.0]).unwrap();
    assert!((f.median - 2.5).abs() < 1e-12);
    assert_eq!((f.min, f.max, f.n), (1.0, 10.0, 4));
    assert!((f.relative_spread() - 3.6).abs() < 1e-12);
    assert!(Figure::of(&[]).is_none());
    assert!(Figure::of(&[1.0, f64::NAN]).is_none());
}

#[test]
fn a_report_round_trips_through_its_json_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sub/r.json");
    let r = sample("laptop", "smollm2", 400.0);
    r.write(&p).unwrap();
    assert_eq!(BenchReport::read(&p).unwrap(), r);
}

#[test]
fn another_version_or_kind_is_refused_with_the_file_named() {
    let r = sample("a", "m", 1.0);
    let mut v = serde_json::to_value(&r).unwrap();
    v["format_version"] = 2.into();
    let p = Path::new("x/r.json");
    let e = BenchReport::from_slice(p, v.to_string().as_bytes()).unwrap_err();
    assert!(matches!(e, BenchError::Version { found: 2, .. }), "{e}");
    assert!(e.to_string().contains("x/r.json"), "{e}");
    v["format_version"] = 1.into();
    v["kind"] = "something-else".into();
    let e = BenchReport::from_slice(p, v.to_string().as_bytes()).unwrap_err();
    assert!(e.to_string().contains("kind"), "{e}");
    v["kind"] = KIND.into();
    v.as_object_mut().unwrap().remove("models");
    let e = BenchReport::from_slice(p, v.to_string().as_bytes()).unwrap_err();
    assert!(e.to_string().contains("models"), "{e}");
    let e = BenchReport::from_slice(p, b"not json").unwrap_err();
    assert!(matches!(e, BenchError::Schema { .. }), "{e}");
}

#[test]
fn compare_lines_up_different_model_sets_with_gaps_not_zeros() {
    let a = sample("laptop", "smollm2", 400.0);
    let mut b = sample("laptop", "qwen", 100.0);
    b.models
        .push(sample("x", "smollm2", 800.0).models.remove(0));
    b.models[1].adapter_switch = Some(AdapterSwitch {
        switch_ms: fig(5.0),
        reload_ms: fig(100.0),
        ratio: 0.05,
    });
    b.load.flagged = true;
    assert!(compare(&[a.clone(), b.clone()]).warnings.is_empty());
    let mut full = a.clone();
    full.quick = false;
    assert_eq!(compare(&[full, b.clone()]).warnings.len(), 1);
    let c = compare(&[a, b]);
    assert_eq!(c.labels, vec!["laptop", "laptop#2"]);
    assert_eq!(c.flagged, vec!["laptop#2"]);
    let row = |k: &str| c.rows.iter().find(|r| r.key == k).unwrap();
    let pf = row("smollm2 prefill 64 tok");
    assert_eq!(pf.values, vec![Some(400.0), Some(800.0)]);
    assert!((pf.ratios()[1].unwrap() - 2.0).abs() < 1e-9);
    let q = row("qwen prefill 64 tok");
    assert_eq!(q.values, vec![None, Some(100.0)]);
    assert_eq!(q.ratios(), vec![None, None]);
    // Only in the second report: present, with a gap for the first.
    assert_eq!(row("smollm2 adapter switch").values[0], None);
    // Absent reference figures are not rows at all.
    assert!(c
        .rows
        .iter()
        .all(|r| r.key != "smollm2 decode @0 vs llama.cpp"));
    let t = c.table();
    assert!(t.contains("laptop#2/laptop"), "{t}");
    assert!(t.contains("2.000"), "{t}");
    assert!(t.contains("warning: laptop#2"), "{t}");
}

#[test]
fn plots_have_one_line_per_report_and_model() {
    let dir = tempfile::tempdir().unwrap();
    let a = sample("a", "smollm2", 400.0);
    let b = sample("b", "smollm2", 300.0);
    let files = write_plots(&[a, b], &dir.path().join("cmp")).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("cmp-prefill.svg")).unwrap();
    assert!(svg.contains("a: smollm2") && svg.contains("b: smollm2"));
    assert!(files.iter().any(|f| f.ends_with("cmp-decode.svg")));
}
