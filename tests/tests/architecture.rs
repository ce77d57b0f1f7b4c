//! The architecture's rules (ARCHITECTURE.md, "Architecture Invariant" paragraphs), checked on
//! the workspace itself: its dependency graph from `cargo metadata` and its source files.
//!
//! long: the rules and the small reader of Rust paths the module-cycle rule needs
//! (`tokens_only` to `unknown_cycles`) are one test target; the reader can move to a module of
//! its own (`tests/tests/architecture/`) when this file is split.

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

const RUNTIME_CRATES: [&str; 12] = [
    "retroformer-core",
    "retroformer-gguf",
    "retroformer-llm",
    "retroformer-llama",
    "retroformer",
    "retroformer-sandbox",
    "retroformer-report",
    "retroformer-envs",
    "retroformer-lab",
    "retroformer-serve",
    "retroformer-sync",
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
        "retroformer-serve",
        "retroformer-sync",
        "retroformer-trainer",
        "tokio",
        "async-nats",
        "axum",
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
fn in_the_device_runtime_only_backend_rs_names_the_backend_crate() {
    let src = root().join("runtime/src");
    let named: Vec<PathBuf> = rust_files(&src)
        .into_iter()
        .filter(|f| !f.ends_with("backend.rs"))
        .filter(|f| code(&std::fs::read_to_string(f).unwrap()).contains("retroformer_llama"))
        .collect();
    assert!(named.is_empty(), "name retroformer_llama: {named:?}");
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

/// Whether `c` can be part of an identifier.
fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether the text before byte `i` of `text` ends inside an identifier (or a path, `::`).
fn after_ident_or_path(text: &str, i: usize, path_too: bool) -> bool {
    text[..i]
        .chars()
        .next_back()
        .is_some_and(|c| is_ident(c) || path_too && c == ':')
}

/// `text` with its comments and the contents of its string and character literals blanked
/// (newlines kept): what is left is code, which a `"crate::a"` or a `// crate::a` is not.
fn tokens_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(c.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        let raw_hashes = (!(i > 0 && is_ident(c[i - 1]))).then(|| {
            let s = i + usize::from(c[i] == 'b');
            let h = c[(s + 1).min(c.len())..]
                .iter()
                .take_while(|x| **x == '#')
                .count();
            (c.get(s) == Some(&'r') && c.get(s + 1 + h) == Some(&'"')).then_some((s + 1 + h, h))
        });
        if let Some(Some((quote, hashes))) = raw_hashes {
            // A raw string, closed by `"` and as many `#` as opened it.
            out.extend(&c[i..=quote]);
            i = quote + 1;
            while i < c.len()
                && !(c[i] == '"' && c[i + 1..].iter().take_while(|x| **x == '#').count() >= hashes)
            {
                out.push(blank(c[i]));
                i += 1;
            }
            out.extend(&c[i.min(c.len())..(i + 1 + hashes).min(c.len())]);
            i += 1 + hashes;
        } else if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                let pair = (c[i], c.get(i + 1).copied().unwrap_or(' '));
                let step = if pair == ('/', '*') || pair == ('*', '/') {
                    2
                } else {
                    1
                };
                depth += i32::from(pair == ('/', '*')) - i32::from(pair == ('*', '/'));
                out.extend(c[i..i + step].iter().map(|x| blank(*x)));
                i += step;
                if depth == 0 {
                    break;
                }
            }
        } else if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                let n = if c[i] == '\\' { 2 } else { 1 };
                out.extend(c[i..(i + n).min(c.len())].iter().map(|x| blank(*x)));
                i += n;
            }
            out.push('"');
            i += 1;
        } else if c[i] == '\'' && (c.get(i + 1) == Some(&'\\') || c.get(i + 2) == Some(&'\'')) {
            // A character literal; a lifetime or a label has no closing quote.
            let from = if c[i + 1] == '\\' { i + 3 } else { i + 2 };
            let close = from + c[from..].iter().position(|x| *x == '\'').unwrap_or(0);
            out.push('\'');
            out.extend(std::iter::repeat_n(' ', close - i - 1));
            out.push('\'');
            i = close + 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// The first names of the paths that start at byte `at` of `text`: `a` for `a::...`, each
/// item's first name for a group `{a::X, b}`, `*` for a glob.
fn first_names(text: &str, at: usize) -> Vec<String> {
    let word = |s: &str| -> String {
        let s = s.trim_start();
        if s.starts_with('*') {
            return "*".into();
        }
        s.chars().take_while(|c| is_ident(*c)).collect()
    };
    let Some(group) = text[at..].strip_prefix('{') else {
        return vec![word(&text[at..])];
    };
    let (mut depth, mut items, mut start) = (0, Vec::new(), 0);
    for (i, ch) in group.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' | ',' if depth == 0 => {
                items.push(word(&group[start..i]));
                start = i + 1;
                if ch == '}' {
                    break;
                }
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    items.into_iter().filter(|w| !w.is_empty()).collect()
}

/// The byte ranges of the braces of each `keyword name { ... }` in `text` (`mod`, `enum`).
fn braced(text: &str, keyword: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(keyword) {
        let after = &text[i + keyword.len()..];
        let name = after.chars().take_while(|c| is_ident(*c)).count();
        if after_ident_or_path(text, i, false) || name == 0 {
            continue;
        }
        let Some(open) = after[name..].find(['{', ';']) else {
            continue;
        };
        let open = i + keyword.len() + name + open;
        if keyword == "mod " && !text[i + keyword.len() + name..open].trim().is_empty() {
            continue;
        }
        let mut depth = 0;
        for (j, ch) in text[open..].char_indices() {
            depth += i32::from(ch == '{') - i32::from(ch == '}');
            if depth == 0 {
                if j > 0 {
                    out.push((open, open + j));
                }
                break;
            }
        }
    }
    out
}

/// The first names of the paths in `text` that start at the crate's root: `crate::...`, and
/// `super::...` climbing to it from a file `depth` modules below the root (inline modules,
/// such as `mod tests { use super::*; }`, count as one more).
fn root_paths(text: &str, depth: usize) -> Vec<String> {
    let inline = braced(text, "mod ");
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        if !after_ident_or_path(text, i, false) {
            out.extend(first_names(text, i + 7));
        }
    }
    for (i, _) in text.match_indices("super::") {
        if after_ident_or_path(text, i, true) {
            continue; // the second `super` of a `super::super::`, or `x::super`
        }
        let ups = (0..)
            .take_while(|k| text[i + 7 * k..].starts_with("super::"))
            .count();
        let nested = inline.iter().filter(|(a, b)| *a < i && i < *b).count();
        if depth + nested == ups {
            out.extend(first_names(text, i + 7 * ups));
        }
    }
    out
}

/// The crate root's text split into what it re-exports (`pub use module::Name`: name ->
/// module) and its own code: the rest, without those re-exports, the names its `mod name;`
/// declarations and its enums' variants spell (a variant may share a re-exported name).
fn split_root(text: &str, modules: &BTreeSet<String>) -> (BTreeMap<String, String>, String) {
    let mut reexported = BTreeMap::new();
    let mut own = text.to_string();
    let mut blank = |at: usize, len: usize| {
        let spaces: String = own[at..at + len]
            .chars()
            .map(|c| if c == '\n' { c } else { ' ' })
            .collect();
        own.replace_range(at..at + len, &spaces);
    };
    for (i, _) in text.match_indices("pub") {
        let mut rest = &text[i + 3..];
        if let Some(r) = rest.strip_prefix('(') {
            rest = r.split_once(')').map_or("", |(_, after)| after);
        }
        let Some(used) = rest.trim_start().strip_prefix("use ") else {
            continue;
        };
        let Some(end) = used.find(';') else {
            continue;
        };
        let path = used[..end].trim_start();
        let path = path
            .strip_prefix("crate::")
            .or(path.strip_prefix("self::"))
            .unwrap_or(path);
        let module: String = path.chars().take_while(|c| is_ident(*c)).collect();
        if after_ident_or_path(text, i, false) || !modules.contains(&module) {
            continue;
        }
        for item in path[module.len()..].split([',', '{', '}']) {
            let name = item.trim().rsplit([' ', ':']).next().unwrap_or("");
            if !name.is_empty() && name.chars().all(is_ident) {
                reexported.insert(name.to_string(), module.clone());
            }
        }
        blank(i, text.len() - used.len() + end - i);
    }
    for (i, _) in text.match_indices("mod ") {
        let after = &text[i + 4..];
        let len = after.chars().take_while(|c| is_ident(*c)).count();
        if !after_ident_or_path(text, i, false) && after[len..].trim_start().starts_with(';') {
            blank(i + 4, len);
        }
    }
    for (open, close) in braced(text, "enum ") {
        let mut depth = 0;
        for (j, ch) in text[open..close].char_indices() {
            depth += i32::from(ch == '{') - i32::from(ch == '}');
            let at = open + j;
            let line_start = text[..at].rsplit('\n').next().unwrap().trim().is_empty();
            if depth == 1 && is_ident(ch) && line_start {
                blank(at, text[at..].chars().take_while(|c| is_ident(*c)).count());
            }
        }
    }
    (reexported, own)
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

/// The module graph of the crate in `src`: its top-level modules and its root file (`lib`, or
/// `main` in a crate without one) are the nodes. A module names another by a `crate::other` or
/// `super::other` path, and the root by naming an item defined there (`crate::Error`); an item
/// the root re-exports (`pub use other::Name`) is `other`'s. The root names a module by a path
/// (`other::f`, `use other::X`) or by a name it re-exports from it, outside the re-exports
/// themselves. `src/bin` holds crates of their own.
fn module_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let root = if src.join("lib.rs").exists() {
        "lib"
    } else {
        "main"
    };
    let files: Vec<(String, PathBuf)> = rust_files(src)
        .into_iter()
        .map(|f| (module_of(src, &f), f))
        .filter(|(m, _)| m == root || !["lib", "main", "bin"].contains(&m.as_str()))
        .collect();
    let modules: BTreeSet<String> = files
        .iter()
        .map(|(m, _)| m.clone())
        .filter(|m| m != root)
        .collect();
    let read = |f: &Path| tokens_only(&std::fs::read_to_string(f).unwrap_or_default());
    let (reexported, root_own) = split_root(&read(&src.join(format!("{root}.rs"))), &modules);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, f) in &files {
        let mut to = BTreeSet::new();
        if from == root {
            let text = &root_own;
            to.extend(root_paths(text, 0));
            for (i, _) in text.match_indices("::") {
                let word: String = text[..i]
                    .chars()
                    .rev()
                    .take_while(|c| is_ident(*c))
                    .collect();
                if !after_ident_or_path(text, i - word.len(), true) {
                    to.insert(word.chars().rev().collect());
                }
            }
            let named = |n: &String| {
                text.match_indices(n.as_str()).any(|(i, _)| {
                    !after_ident_or_path(text, i, true)
                        && !text[i + n.len()..].starts_with(is_ident)
                })
            };
            to.extend(
                reexported
                    .iter()
                    .filter(|(n, _)| named(n))
                    .map(|(_, m)| m.clone()),
            );
            to.retain(|m| modules.contains(m));
        } else {
            let rel = f.strip_prefix(src).unwrap();
            let depth = rel.components().count() - usize::from(rel.ends_with("mod.rs"));
            for name in root_paths(&read(f), depth) {
                let module = reexported.get(&name).unwrap_or(&name);
                to.insert(if modules.contains(module) {
                    module.clone()
                } else {
                    root.to_string()
                });
            }
        }
        to.remove(from);
        if !to.is_empty() {
            edges.entry(from.clone()).or_default().extend(to);
        }
    }
    edges
}

/// The cycles of a module graph: for each module that reaches itself, one way round.
fn cycles_of(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut cycles = Vec::new();
    for start in edges.keys() {
        let mut path = vec![start.clone()];
        let mut seen = BTreeSet::new();
        if reaches(edges, start, start, &mut seen, &mut path) {
            cycles.push(path);
        }
    }
    cycles
}

/// Cycles among the top-level modules of `src` and its root file.
fn module_cycles(src: &Path) -> Vec<Vec<String>> {
    cycles_of(&module_edges(src))
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

/// The cycles of `edges` that remain once the `known` edges are left out, or an error naming a
/// known edge that no longer closes a cycle (its entry must go).
fn unknown_cycles(
    mut edges: BTreeMap<String, BTreeSet<String>>,
    known: &[(&str, &str)],
) -> Result<Vec<Vec<String>>, String> {
    for &(from, to) in known {
        let closes = edges.get(from).is_some_and(|t| t.contains(to))
            && reaches(&edges, to, from, &mut BTreeSet::new(), &mut Vec::new());
        if !closes {
            return Err(format!(
                "known edge {from} -> {to} closes no cycle any more: remove it from KNOWN_CYCLES"
            ));
        }
    }
    for &(from, to) in known {
        edges.get_mut(from).unwrap().remove(to);
    }
    Ok(cycles_of(&edges))
}

/// A cycle between a crate's modules that was there when the check began reading the crate's
/// root (`lib.rs`): the check leaves out the edges (from, to) named here, and only those, so a
/// new cycle in the same crate, or a new way round through the same modules, still fails.
/// Removing these cycles, and then these entries, is issue 37 item 3's work; an entry whose
/// edge no longer closes a cycle fails the check until it is deleted.
struct KnownCycle {
    /// The crate.
    krate: &'static str,
    /// The edges left out.
    edges: &'static [(&'static str, &'static str)],
}

const KNOWN_CYCLES: [KnownCycle; 4] = [
    // lib.rs is the container reader (`GgufFile`, `GgufError`, `Value`, `read_array`) that
    // semantics.rs reads headers with, and its `validate_model` calls `check_model`.
    KnownCycle {
        krate: "retroformer-gguf",
        edges: &[("lib", "semantics")],
    },
    // lib.rs holds the model (`ModelInner`, `AdapterInner`, `decode`, `tokenize`) that
    // session.rs drives, and `LlamaModel::llama_session` builds a `LlamaSession`.
    KnownCycle {
        krate: "retroformer-llama",
        edges: &[("lib", "session")],
    },
    // lib.rs holds `Sandbox`, `Layers` and `apply_limits`, which linux.rs uses, and the
    // sandbox applies linux.rs's layers.
    KnownCycle {
        krate: "retroformer-sandbox",
        edges: &[("lib", "linux")],
    },
    // `Registry::builtin` (registry.rs) names each environment, and each implements the
    // registry's `Environment` (re-exported by lib.rs).
    KnownCycle {
        krate: "retroformer-envs",
        edges: &[
            ("registry", "hotpotqa"),
            ("registry", "household"),
            ("registry", "humaneval"),
            ("registry", "math"),
        ],
    },
];

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let g = graph();
    let mut found = Vec::new();
    for k in &KNOWN_CYCLES {
        assert!(
            g.members.contains_key(k.krate),
            "KNOWN_CYCLES: no crate {}",
            k.krate
        );
    }
    for (name, dir) in &g.members {
        let known: Vec<(&str, &str)> = KNOWN_CYCLES
            .iter()
            .filter(|k| k.krate == name)
            .flat_map(|k| k.edges.iter().copied())
            .collect();
        match unknown_cycles(module_edges(&dir.join("src")), &known) {
            Ok(cycles) if cycles.is_empty() => {}
            Ok(cycles) => found.push(format!("{name}: {cycles:?}")),
            Err(stale) => found.push(format!("{name}: {stale}")),
        }
    }
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
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
                "struct ReflectorInfo",
                "struct EpisodeSample",
                "struct TurnTokens",
                // Whole names: the trainer's own `Segments` (its reader's) is another thing.
                "struct Segment {",
                "struct Figure {",
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

/// A crate's `src` folder in a temporary folder, holding `files` (path under `src`, text).
fn crate_of(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join("src").join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[test]
fn the_cycle_check_reads_the_crate_root() {
    let cycles = |files: &[(&str, &str)]| module_cycles(&crate_of(files).path().join("src"));
    let cycle = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let lib = "mod a;\nmod b;\npub use b::Y;\n/// An error.\npub struct Error;\n";
    let a = "use crate::Error;\npub fn g() {}\n";
    // A module importing the root's error type is no cycle while the root uses none of it...
    assert!(cycles(&[("lib.rs", lib), ("a.rs", a), ("b.rs", "")]).is_empty());
    // ...and is one once the root calls into that module.
    let calls = format!("{lib}pub fn f() {{\n    a::g()\n}}\n");
    let found = cycles(&[("lib.rs", &calls), ("a.rs", a), ("b.rs", "")]);
    assert!(found.contains(&cycle(&["a", "lib", "a"])), "{found:?}");
    // `super::` from a module's top reaches the root; from its inline tests, the module.
    let up = "use super::Error;\npub fn g() {}\n";
    assert!(!cycles(&[("lib.rs", &calls), ("a/mod.rs", up), ("b.rs", "")]).is_empty());
    let tests = "pub fn g() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n";
    assert!(cycles(&[("lib.rs", &calls), ("a.rs", tests), ("b.rs", "")]).is_empty());
    // A name the root re-exports is its module's: a -> b -> a, in a group too.
    let b = "pub struct Y;\nfn f() {\n    crate::a::g()\n}\n";
    let through = cycles(&[
        ("lib.rs", lib),
        ("a.rs", "use crate::{Error, Y};\n"),
        ("b.rs", b),
    ]);
    assert!(through.contains(&cycle(&["a", "b", "a"])), "{through:?}");
    // A string, a comment and a variant spelled as a re-exported name are no use of it.
    let quiet = "mod a;\nmod b;\npub use b::Y;\npub enum E {\n    Y,\n}\nconst S: &str = \"b::Y\"; // b::Y\n";
    let b_uses_root = "pub struct Y;\nuse crate::E;\n";
    assert!(cycles(&[("lib.rs", quiet), ("a.rs", ""), ("b.rs", b_uses_root)]).is_empty());
    let loud = quiet.replace("pub enum E", "pub fn y() -> Y {\n    Y\n}\npub enum E");
    assert!(!cycles(&[("lib.rs", &loud), ("a.rs", ""), ("b.rs", b_uses_root)]).is_empty());
}

#[test]
fn a_known_cycle_hides_its_own_edges_and_no_other() {
    let graph = |pairs: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            g.entry(a.to_string()).or_default().insert(b.to_string());
        }
        g
    };
    let known = [("lib", "a")];
    let cycle = [("lib", "a"), ("a", "lib")];
    assert_eq!(unknown_cycles(graph(&cycle), &known), Ok(vec![]));
    // A new cycle in the same crate is found, and so is a new way round through the root.
    let other = [cycle.as_slice(), &[("b", "c"), ("c", "b")]].concat();
    assert_eq!(unknown_cycles(graph(&other), &known).unwrap().len(), 2);
    let around = [cycle.as_slice(), &[("lib", "b"), ("b", "lib")]].concat();
    assert!(!unknown_cycles(graph(&around), &known).unwrap().is_empty());
    // An entry whose cycle is gone fails, so that it is deleted.
    assert!(unknown_cycles(graph(&[("lib", "a")]), &known).is_err());
    assert!(unknown_cycles(graph(&[("a", "lib")]), &known).is_err());
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
