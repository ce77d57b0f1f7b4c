//! `models` (list, fetch, verify, info) and `targets`.

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;
use retroformer::backend;
use retroformer::fetch::{self, FetchOptions};
use retroformer::manifest::{home_dir, Manifest, ModelRef};
use retroformer_gguf as gguf;
use retroformer_llm::target::TargetProfile;

use crate::common::{show, FetchBar};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// List the model manifests and whether each is installed.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download a model into the cache, assemble its parts and verify its sha256.
    Fetch {
        /// Manifest name or alias.
        name: String,
        /// Fetch again even if installed.
        #[arg(long)]
        force: bool,
    },
    /// Re-hash an installed model and compare with its manifest (or validate and hash a file).
    Verify {
        /// Manifest name or alias, or a path to a GGUF file.
        name: String,
    },
    /// Print a GGUF file's metadata (validated first).
    Info {
        /// Path to a GGUF file, or an installed model's name.
        model: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn models(cmd: ModelsCommand) -> Result<()> {
    let home = home_dir();
    match cmd {
        ModelsCommand::List { json } => {
            let rows: Vec<_> = Manifest::builtin()
                .into_iter()
                .map(|m| {
                    let installed = fetch::installed(&m, &home);
                    (m, installed)
                })
                .collect();
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(m, p)| serde_json::json!({"manifest": m, "installed": p}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:<30} {:<8} {:<8} {:>8}  {:<10} LICENCE",
                    "NAME", "ARCH", "QUANT", "SIZE", "STATUS"
                );
                for (m, p) in rows {
                    println!(
                        "{:<30} {:<8} {:<8} {:>6}MB  {:<10} {}{}",
                        m.name,
                        m.architecture,
                        m.quantization,
                        m.size_bytes >> 20,
                        if p.is_some() { "installed" } else { "-" },
                        m.licence,
                        if m.default { "  (default)" } else { "" }
                    );
                }
                println!("\ncache: {}", home.display());
            }
        }
        ModelsCommand::Fetch { name, force } => {
            let m = Manifest::find(&name).ok_or_else(|| unknown(&name))?;
            let bar = FetchBar::default();
            let p = fetch::fetch(
                &m,
                &home,
                FetchOptions {
                    force,
                    progress: &bar,
                },
            )?;
            gguf::validate_model(&p)?;
            println!("{}", p.display());
        }
        ModelsCommand::Verify { name } => match ModelRef::parse(&name)? {
            ModelRef::Manifest(m) => {
                let p = fetch::verify(&m, &home, &FetchBar::default())?;
                let h = gguf::validate_model(&p)?;
                println!(
                    "{}: sha256 ok, {} bytes, GGUF v{} with {} tensors",
                    p.display(),
                    m.size_bytes,
                    h.version,
                    h.tensors.len()
                );
            }
            ModelRef::File(p) => {
                let h = gguf::validate_model(&p)?;
                let digest = fetch::sha256_file(&p, &FetchBar::default())?;
                let known = Manifest::builtin().into_iter().find(|m| m.sha256 == digest);
                println!(
                    "{}: valid GGUF v{} with {} tensors, sha256 {digest}{}",
                    p.display(),
                    h.version,
                    h.tensors.len(),
                    known
                        .map(|m| format!(" (matches manifest {})", m.name))
                        .unwrap_or_else(|| " (no manifest has this hash)".into())
                );
            }
        },
        ModelsCommand::Info { model, json } => {
            let path = match ModelRef::parse(&model)? {
                ModelRef::File(p) => p,
                ModelRef::Manifest(m) => fetch::require_installed(&m, &home)?,
            };
            info(&path, json)?;
        }
    }
    Ok(())
}

fn unknown(name: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "unknown model '{name}'; known: {}",
        Manifest::builtin()
            .iter()
            .map(|m| m.name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub fn info(path: &Path, json: bool) -> Result<()> {
    let h = gguf::validate_file(path)?;
    let s = h.summary();
    let is_model = s.file_type.as_deref() != Some("adapter");
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        if is_model {
            gguf::check_model(&h, path)?;
        }
        return Ok(());
    }
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    // Names come from the file: shown with their control characters escaped.
    let shown = |v: Option<&str>, none: &'static str| show(v.unwrap_or(none)).into_owned();
    println!("file            {}", path.display());
    println!("gguf version    {}", s.version);
    println!("type            {}", shown(s.file_type.as_deref(), "model"));
    println!("architecture    {}", shown(s.architecture.as_deref(), "-"));
    println!("name            {}", shown(s.name.as_deref(), "-"));
    println!("layers          {}", opt(s.layers));
    println!("heads           {} (kv {})", opt(s.heads), opt(s.kv_heads));
    println!("embedding       {}", opt(s.embedding));
    println!("context length  {}", opt(s.context_length));
    println!("vocabulary      {}", opt(s.vocab));
    println!("tensors         {}", s.tensor_count);
    println!("parameters      {}", s.parameters);
    println!(
        "tensor types    {}",
        s.tensor_types
            .iter()
            .map(|(t, n)| format!("{} x{n}", show(t)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "chat template   {}",
        if s.chat_template { "yes" } else { "no" }
    );
    println!("size            {} bytes", s.file_size);
    if is_model {
        // Shown after the summary, so that a file llama.cpp would refuse can still be looked at.
        gguf::check_model(&h, path)?;
        println!("values          ok for llama.cpp");
    }
    Ok(())
}

pub fn targets(json: bool) -> Result<()> {
    let all = TargetProfile::builtin();
    let (devices, sys_info) = backend::active().devices()?;
    if json {
        let v = serde_json::json!({"targets": all, "devices": devices, "llama_cpp_system_info": sys_info});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<18} {:<7} {:>7} {:>6} {:>5}  DESCRIPTION",
        "TARGET", "BACKEND", "THREADS", "CTX", "GPU"
    );
    for t in &all {
        let threads = match t.threads {
            retroformer_llm::target::Threads::Fixed(n) => n.to_string(),
            retroformer_llm::target::Threads::Auto(_) => format!("auto={}", t.resolve_threads()),
        };
        let built = if backend::active().compiled_in(t.backend) {
            ""
        } else {
            "  [backend not in this build]"
        };
        println!(
            "{:<18} {:<7} {:>7} {:>6} {:>5}  {}{}",
            show(&t.name),
            t.backend.name(),
            threads,
            t.context_size,
            t.gpu_layers,
            show(&t.description),
            built
        );
    }
    println!("\ndevices seen by llama.cpp:");
    for d in devices {
        println!(
            "  {:<10} {:<8} {} ({} MB)",
            d.name,
            d.backend,
            d.description,
            d.memory_total >> 20
        );
    }
    println!("llama.cpp: {sys_info}");
    Ok(())
}
