//! The architecture's rules (ARCHITECTURE.md, "Architecture Invariant" paragraphs), checked on
//! the workspace itself: its dependency graph from `cargo metadata` and its source files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The workspace's packages and their dependency edges, by package name.
struct Graph {
    /// Workspace package name -> its manifest folder.
    members: BTreeMap<String, PathBuf>,
    /// Workspace package name -> the root files of its binary targets (a package without a
    /// library target is a program).
    bins: BTreeMap<String, (bool, Vec<PathBuf>)>,
    /// Package name -> (dependency name, kinds: "normal", "dev", "build").
    deps: BTreeMap<String, Vec<(String, Vec<String>)>>,
}

fn graph() -> Graph {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(root().join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let name_of: BTreeMap<String, String> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let members = v["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| {
            let p = v["packages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["id"] == *id)
                .unwrap();
            let dir = Path::new(p["manifest_path"].as_str().unwrap())
                .parent()
                .unwrap()
                .to_path_buf();
            (p["name"].as_str().unwrap().to_string(), dir)
        })
        .collect();
    let bins = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let targets = p["targets"].as_array().unwrap();
            let kind = |t: &serde_json::Value, k: &str| {
                t["kind"].as_array().unwrap().iter().any(|x| x == k)
            };
            let has_lib = targets.iter().any(|t| kind(t, "lib"));
            let roots = targets
                .iter()
                .filter(|t| kind(t, "bin"))
                .map(|t| PathBuf::from(t["src_path"].as_str().unwrap()))
                .collect();
            (p["name"].as_str().unwrap().to_string(), (has_lib, roots))
        })
        .collect();
    let mut deps = BTreeMap::new();
    for node in v["resolve"]["nodes"].as_array().unwrap() {
        let name = name_of[node["id"].as_str().unwrap()].clone();
        let edges = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let kinds = d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k["kind"].as_str().unwrap_or("normal").to_string())
                    .collect();
                (name_of[d["pkg"].as_str().unwrap()].clone(), kinds)
            })
            .collect();
        deps.insert(name, edges);
    }
    Graph {
        members,
        bins,
        deps,
    }
}

impl Graph {
    /// The Rust files of package `name`: those under its folder that no other workspace
    /// package's folder (nested in it) holds.
    fn files(&self, name: &str) -> Vec<PathBuf> {
        let dir = &self.members[name];
        let nested: Vec<&PathBuf> = self
            .members
            .values()
            .filter(|d| *d != dir && d.starts_with(dir))
            .collect();
        rust_files(dir)
            .into_iter()
            .filter(|f| !nested.iter().any(|n| f.starts_with(n)))
            .collect()
    }

    /// Every package `from` depends on through normal dependencies, directly or not.
    fn normal_closure(&self, from: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(p) = todo.pop() {
            for (d, kinds) in self.deps.get(&p).into_iter().flatten() {
                if kinds.iter().any(|k| k == "normal") && seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        seen
    }

    /// The packages `from` names directly, of any kind.
    fn direct(&self, from: &str) -> BTreeSet<String> {
        self.deps
            .get(from)
            .into_iter()
            .flatten()
            .map(|(d, _)| d.clone())
            .collect()
    }
}

/// Rust files under `dir`, recursively, skipping build outputs.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            if !["target", "vendor", "fuzz", ".git"].contains(&name.as_str()) {
                out.extend(rust_files(&p));
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// `text` without `//` comments (doc comments included); string contents stay.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const RUNTIME_CRATES: [&str; 10] = [
    "retroformer-core",
    "retroformer-gguf",
    "retroformer-llm",
    "retroformer-llama",
    "retroformer",
    "retroformer-sandbox",
    "retroformer-report",
    "retroformer-envs",
    "retroformer-lab",
    "retroformer-cli",
];

#[test]
fn the_core_depends_on_no_workspace_crate_and_is_no_std() {
    let g = graph();
    let own: Vec<String> = g
        .normal_closure("retroformer-core")
        .into_iter()
        .filter(|d| g.members.contains_key(d))
        .collect();
    assert!(own.is_empty(), "retroformer-core depends on {own:?}");
    let lib = std::fs::read_to_string(root().join("runtime/core/src/lib.rs")).unwrap();
    assert!(lib.contains("#![cfg_attr(not(feature = \"std\"), no_std)]"));
}

#[test]
fn only_the_llama_crate_names_llama_cpp() {
    let g = graph();
    for name in g.members.keys() {
        let direct = g.direct(name);
        let names_it = direct.contains("llama-cpp-2") || direct.contains("llama-cpp-sys-2");
        assert_eq!(
            names_it,
            name == "retroformer-llama",
            "{name} depends on llama-cpp-2 directly: {names_it}"
        );
    }
    for name in g.members.keys() {
        if name == "retroformer-llama" {
            continue;
        }
        for f in g.files(name) {
            if f.ends_with("tests/architecture.rs") {
                continue; // names what it looks for
            }
            let text = code(&std::fs::read_to_string(&f).unwrap());
            assert!(
                !text.contains("llama_cpp_2") && !text.contains("llama_cpp_sys_2"),
                "{} names llama.cpp's binding",
                f.display()
            );
        }
    }
}

#[test]
fn the_device_runtime_stays_lean() {
    let g = graph();
    let all = g.normal_closure("retroformer");
    for banned in [
        "retroformer-envs",
        "retroformer-sandbox",
        "retroformer-report",
        "retroformer-lab",
        "retroformer-benches",
        "retroformer-cli",
        "retroformer-trainer",
        "clap",
        "anyhow",
        "indicatif",
        "resvg",
        "burn",
    ] {
        assert!(!all.contains(banned), "retroformer depends on {banned}");
    }
}

#[test]
fn the_agent_core_names_no_environment() {
    let dir = root().join("runtime/src");
    for f in rust_files(&dir) {
        let text = code(&std::fs::read_to_string(&f).unwrap()).to_lowercase();
        for env in [
            "hotpotqa",
            "household",
            "humaneval",
            "gsm8k",
            "alfworld",
            "retroformer_envs",
        ] {
            assert!(!text.contains(env), "{} names {env}", f.display());
        }
    }
}

#[test]
fn clap_is_only_in_binaries() {
    let g = graph();
    for (name, dir) in &g.members {
        let (has_lib, roots) = &g.bins[name];
        if !has_lib {
            continue; // a program
        }
        for f in g
            .files(name)
            .into_iter()
            .filter(|f| f.starts_with(dir.join("src")))
        {
            let is_bin = f.components().any(|c| c.as_os_str() == "bin") || roots.contains(&f);
            if is_bin {
                continue;
            }
            let text = code(&std::fs::read_to_string(&f).unwrap());
            assert!(
                !text.contains("clap::"),
                "{name}: {} uses clap",
                f.display()
            );
        }
    }
    for lib in RUNTIME_CRATES.iter().filter(|c| **c != "retroformer-cli") {
        assert!(!g.direct(lib).contains("clap"), "{lib} depends on clap");
    }
}

#[test]
fn the_trainer_never_depends_on_the_research_harness() {
    let g = graph();
    let all = g.normal_closure("retroformer-trainer");
    for banned in [
        "retroformer-envs",
        "retroformer-sandbox",
        "retroformer-lab",
        "retroformer-benches",
        "retroformer-cli",
    ] {
        assert!(!all.contains(banned), "the trainer depends on {banned}");
    }
}

#[test]
fn nothing_in_the_runtime_depends_on_the_trainer() {
    let g = graph();
    for c in RUNTIME_CRATES {
        let all = g.normal_closure(c);
        assert!(
            !all.contains("retroformer-trainer") && !all.contains("burn"),
            "{c} depends on the trainer or burn"
        );
        assert!(
            !g.direct(c).contains("retroformer-trainer"),
            "{c} names the trainer"
        );
    }
}

/// The top-level module a file of `src` belongs to (`lib`/`main` for the root file).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Cycles among the top-level modules of `src`, through `crate::module` paths.
fn module_cycles(src: &Path) -> Vec<Vec<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let files = rust_files(src);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    for f in &files {
        let from = module_of(src, f);
        if from == "lib" || from == "main" || from == "bin" {
            continue;
        }
        let text = code(&std::fs::read_to_string(f).unwrap());
        let mut rest = text.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + 7..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if name != from && modules.contains(&name) {
                edges.entry(from.clone()).or_default().insert(name);
            }
        }
    }
    // A cycle is a module that reaches itself.
    let mut cycles = Vec::new();
    for start in edges.keys() {
        let mut path = vec![start.clone()];
        let mut seen = BTreeSet::new();
        if reaches(&edges, start, start, &mut seen, &mut path) {
            cycles.push(path);
        }
    }
    cycles
}

fn reaches(
    edges: &BTreeMap<String, BTreeSet<String>>,
    at: &str,
    goal: &str,
    seen: &mut BTreeSet<String>,
    path: &mut Vec<String>,
) -> bool {
    for next in edges.get(at).into_iter().flatten() {
        if next == goal {
            path.push(next.clone());
            return true;
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if reaches(edges, next, goal, seen, path) {
                return true;
            }
            path.pop();
        }
    }
    false
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let g = graph();
    for (name, dir) in &g.members {
        let cycles = module_cycles(&dir.join("src"));
        assert!(cycles.is_empty(), "{name}: {cycles:?}");
    }
}

#[test]
fn every_record_that_crosses_a_process_has_one_type_and_one_spelling_of_its_keys() {
    let records = root().join("runtime/core/src/records.rs");
    let g = graph();
    for name in g.members.keys() {
        for f in g.files(name) {
            // This file names what it looks for.
            if f.ends_with("runtime/core/src/records.rs") || f.ends_with("tests/architecture.rs") {
                continue;
            }
            let text = code(&std::fs::read_to_string(&f).unwrap());
            for ty in [
                "struct RatingRecord",
                "struct RiseSample",
                "struct AdapterProvenance",
                "struct TrainingLog",
                "struct TrainingStep",
                "struct TrainerFigure",
                "struct ChatMessage",
            ] {
                assert!(!text.contains(ty), "{} defines {ty} again", f.display());
            }
            for key in ["\"retroformer.", "\"adapter.lora.alpha\""] {
                assert!(
                    !text.contains(key),
                    "{} spells an adapter key ({key}) outside {}",
                    f.display(),
                    records.display()
                );
            }
        }
    }
}

/// The reason a long file or function gives, if any: a `// long: ...` comment within the
/// `lines` before `at` (for a file: its first lines).
fn has_reason(lines: &[&str], at: usize, window: usize) -> bool {
    lines[at.saturating_sub(window)..=at.min(lines.len() - 1)]
        .iter()
        .any(|l| l.trim_start().starts_with("// long:") || l.trim_start().starts_with("//! long:"))
}

/// Whether trimmed line `t` starts a function, whatever its visibility (`pub`, `pub(crate)`,
/// `pub(super)`, `pub(in path)`) and qualifiers (`const`, `async`, `unsafe`, `extern "C"`).
fn starts_fn(t: &str) -> bool {
    let mut rest = t;
    if let Some(r) = t.strip_prefix("pub") {
        rest = match r.strip_prefix('(') {
            Some(r) => r.split_once(')').map_or("", |(_, after)| after),
            None if r.starts_with(' ') => r,
            None => return false,
        };
    }
    loop {
        rest = rest.trim_start();
        let before = rest;
        for q in ["const ", "async ", "unsafe ", "default "] {
            rest = rest.strip_prefix(q).unwrap_or(rest);
        }
        if let Some(r) = rest.strip_prefix("extern ") {
            let r = r.trim_start();
            rest = match r.strip_prefix('"') {
                Some(abi) => abi.split_once('"').map_or("", |(_, after)| after),
                None => r,
            };
        }
        if rest == before {
            return rest.starts_with("fn ");
        }
    }
}

#[test]
fn the_function_rule_sees_every_visibility_and_qualifier() {
    for yes in [
        "fn f() {",
        "pub fn f() {",
        "pub(crate) fn f() {",
        "pub(super) fn generate_stream(",
        "pub(in crate::a) fn f() {",
        "async fn f() {",
        "pub async fn f() {",
        "pub(crate) const unsafe fn f() {",
        "pub unsafe extern \"C\" fn f() {",
        "extern \"C\" fn f() {",
    ] {
        assert!(starts_fn(yes), "{yes}");
    }
    for no in [
        "const FN: u32 = 1;",
        "pub const fn_count: u32 = 1;",
        "public fn f() {",
        "let f = |x| x;",
        "// fn f() {",
        "pub struct Fn {",
    ] {
        assert!(!starts_fn(no), "{no}");
    }
}

#[test]
fn source_files_and_functions_stay_short_or_say_why() {
    const FILE_LINES: usize = 800;
    const FN_LINES: usize = 120;
    let g = graph();
    let mut long = Vec::new();
    for name in g.members.keys() {
        for f in g.files(name) {
            let text = std::fs::read_to_string(&f).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            // A file's reason is in its leading comment block.
            let head = lines.iter().take_while(|l| l.starts_with("//")).count();
            if lines.len() > FILE_LINES && !has_reason(&lines, head.max(1), head.max(1)) {
                long.push(format!("{}: {} lines", f.display(), lines.len()));
            }
            for (i, l) in lines.iter().enumerate() {
                let t = l.trim_start();
                if !starts_fn(t)
                    || !l.trim_end().ends_with('{')
                        && !lines[i..]
                            .iter()
                            .take(12)
                            .any(|x| x.trim_end().ends_with('{'))
                {
                    continue;
                }
                // rustfmt closes a function at its own indentation.
                let indent = &l[..l.len() - t.len()];
                let end = lines[i + 1..]
                    .iter()
                    .position(|x| *x == format!("{indent}}}"))
                    .map_or(0, |p| p + 1);
                if end > FN_LINES && !has_reason(&lines, i, 8) {
                    long.push(format!(
                        "{}:{}: a function of {end} lines",
                        f.display(),
                        i + 1
                    ));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "over {FILE_LINES} lines a file, or {FN_LINES} a function, without a `// long: reason`:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_cycle_check_finds_two_modules_that_import_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("b")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::X;\n").unwrap();
    std::fs::write(
        src.join("b/mod.rs"),
        "// crate::a in a comment is no import\n",
    )
    .unwrap();
    assert!(module_cycles(&src).is_empty());
    std::fs::write(src.join("b/inner.rs"), "fn f() { crate::a::g() }\n").unwrap();
    let cycles = module_cycles(&src);
    assert!(
        !cycles.is_empty() && cycles[0].contains(&"b".to_string()),
        "{cycles:?}"
    );
}

#[test]
fn the_binaries_that_draw_charts_ask_for_png_themselves() {
    // The workspace declares the report crate without its default `png`; a workspace-wide build
    // unifies features and hides a binary that forgot it (its charts would be SVG only).
    for manifest in [
        "runtime/cli/Cargo.toml",
        "trainer/Cargo.toml",
        "benches/Cargo.toml",
    ] {
        let text = std::fs::read_to_string(root().join(manifest)).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("retroformer-report"))
            .unwrap_or_else(|| panic!("{manifest} does not use retroformer-report"));
        assert!(line.contains("\"png\""), "{manifest}: {line}");
    }
}
