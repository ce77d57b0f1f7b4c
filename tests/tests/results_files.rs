//! The committed results are what their names say: every `.json` file under `benches/results`
//! is one JSON value, every `.jsonl` and `.jsonl.gz` file one JSON object a line.

use std::io::Read;
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn text(p: &Path) -> String {
    let bytes = std::fs::read(p).unwrap();
    if p.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        s
    } else {
        String::from_utf8(bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }
}

#[test]
fn every_committed_result_file_parses_as_its_name_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/results");
    let mut all = Vec::new();
    files(&root, &mut all);
    let mut checked = 0;
    for p in &all {
        let name = p.file_name().unwrap().to_string_lossy();
        if name.ends_with(".jsonl") || name.ends_with(".jsonl.gz") {
            for (i, line) in text(p)
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let v: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{} line {}: {e}", p.display(), i + 1));
                assert!(
                    v.is_object(),
                    "{} line {}: not an object",
                    p.display(),
                    i + 1
                );
            }
            checked += 1;
        } else if name.ends_with(".json") {
            serde_json::from_str::<serde_json::Value>(&text(p))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            checked += 1;
        }
    }
    assert!(
        checked > 10,
        "only {checked} result files found under {}",
        root.display()
    );
}

#[test]
fn every_committed_improve_adapter_is_the_file_its_run_records() {
    // The demo evaluates these files; a checkout holding another file (a git LFS pointer, an
    // edit) would be refused there, so it is caught here first.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/results");
    let mut all = Vec::new();
    files(&root, &mut all);
    let runs: Vec<&PathBuf> = all
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "improve.json"))
        .collect();
    assert!(!runs.is_empty());
    let mut checked = 0;
    for run in runs {
        let report: retroformer_lab::improve::ImproveReport =
            serde_json::from_str(&text(run)).unwrap_or_else(|e| panic!("{}: {e}", run.display()));
        for t in report.rounds.iter().flat_map(|r| &r.train) {
            let file = run.parent().unwrap().join(&t.adapter);
            if !file.exists() {
                continue; // an adapter over the size limit is recorded, not committed
            }
            let sha = retroformer::fetch::sha256_file(&file, &retroformer::fetch::Silent).unwrap();
            assert_eq!(sha, t.sha256, "{}", file.display());
            assert_eq!(std::fs::metadata(&file).unwrap().len(), t.bytes);
            checked += 1;
        }
    }
    assert!(checked >= 2, "{checked}");
}
