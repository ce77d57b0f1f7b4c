//! `adapters`: the adapter store of a base model (list, install, activate, roll back) and
//! the canary.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use retroformer::adapters::AdapterStore;
use retroformer_envs::Registry;
use retroformer_lab::canary::{self, CanaryPlan};
use retroformer_lab::BackendSource;
use retroformer_llm::target::TargetProfile;

use crate::common::{show, FetchBar, TaskProgress};

#[derive(Subcommand)]
pub enum AdaptersCommand {
    /// The installed adapters of a base model (the active one marked).
    List {
        /// Base model (manifest name or GGUF path).
        #[arg(long, default_value = "smollm2-135m-instruct")]
        base: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate an adapter against the base model and install it (not activated).
    Install {
        /// The adapter file.
        file: PathBuf,
        /// Base model.
        #[arg(long, default_value = "smollm2-135m-instruct")]
        base: String,
        /// Activate it once installed.
        #[arg(long)]
        activate: bool,
        /// Also install an adapter that records no base model (made by another tool; its
        /// shapes are still checked). One that records another base is refused either way.
        #[arg(long)]
        any_base: bool,
    },
    /// Make an installed adapter the active one.
    Activate {
        /// Its id (from `adapters list`).
        id: String,
        /// Base model.
        #[arg(long, default_value = "smollm2-135m-instruct")]
        base: String,
    },
    /// Go back to the adapter that was active before.
    Rollback {
        /// Base model.
        #[arg(long, default_value = "smollm2-135m-instruct")]
        base: String,
    },
    /// Run the base model alone again (no adapter active; the installed ones stay).
    Deactivate {
        /// Base model.
        #[arg(long, default_value = "smollm2-135m-instruct")]
        base: String,
    },
    /// Evaluate an installed adapter as the reflector against the active one (or the base
    /// alone) on held-out tasks; activate it only if it is not worse by more than --margin,
    /// else keep the active one.
    Canary(CanaryArgs),
}

#[derive(Args, Clone)]
pub struct CanaryArgs {
    /// The candidate's id (from `adapters list`).
    pub id: String,
    /// Base model: the reflector whose store holds the adapters.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub base: String,
    /// Environment: hotpotqa, household or humaneval.
    #[arg(long, default_value = "household")]
    pub env: String,
    /// Actor model (default: the base model itself).
    #[arg(long)]
    pub actor: Option<String>,
    /// Leave out the first N tasks (those used for training).
    #[arg(long, default_value_t = 0)]
    pub skip: usize,
    /// Held-out tasks to evaluate on.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Household split (`eval` or `train`).
    #[arg(long, default_value = "eval")]
    pub split: String,
    /// Trials per task (Reflexion; the score is the success rate after the last). For
    /// humaneval: implementations per task (--max-iters); the score is pass@1.
    #[arg(long, default_value_t = 3)]
    pub trials: u32,
    /// Most steps per episode (default: the environment's, 6 for hotpotqa, 30 for household).
    #[arg(long)]
    pub max_steps: Option<u32>,
    /// HotPotQA or HumanEval data file (default: as `eval hotpotqa` / `eval humaneval`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Promote when candidate >= incumbent - margin.
    #[arg(long, default_value_t = 0.0)]
    pub margin: f64,
    /// Where the two evaluations go (default: the store's canary/ID folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Take both evaluations' first trial from the run in DIR (hotpotqa, household; see
    /// `eval hotpotqa --first-trial-from`). Without it the second evaluation takes the
    /// first's: the first trial has no reflection yet, so it is the same for both reflectors.
    #[arg(long, value_name = "DIR")]
    pub first_trial_from: Option<PathBuf>,
    /// Episodes run at once (hotpotqa and household; see `eval hotpotqa --parallel`).
    #[arg(long, default_value_t = retroformer_envs::DEFAULT_PARALLEL)]
    pub parallel: u32,
    /// Threads (default: the target profile's).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Do not fetch missing models.
    #[arg(long)]
    pub no_fetch: bool,
}

/// The store of `base` (installed, never fetched), its file and its validated header.
fn adapter_store(base: &str) -> Result<(AdapterStore, PathBuf, retroformer_gguf::GgufFile)> {
    let resolved = retroformer::backend::resolve(base, None)?;
    let (store, header) = AdapterStore::for_model(&resolved)?;
    Ok((store, resolved.path, header))
}

pub fn adapters_cmd(profile: &TargetProfile, c: AdaptersCommand) -> Result<()> {
    match c {
        AdaptersCommand::List { base, json } => {
            let (store, _, _) = adapter_store(&base)?;
            let active = store.active()?.map(|m| m.id);
            let all = store.list()?;
            if json {
                let adapters: Vec<serde_json::Value> = all
                    .iter()
                    .map(|m| {
                        let mut v = serde_json::to_value(m).expect("manifest serialises");
                        v["path"] = store.adapter_path(&m.id).display().to_string().into();
                        v
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"format_version": 1, "active": active, "adapters": adapters})
                );
                return Ok(());
            }
            if all.is_empty() {
                println!(
                    "no adapters installed for {base} ({})",
                    store.root().display()
                );
            }
            for m in all {
                let mark = if active.as_deref() == Some(m.id.as_str()) {
                    "*"
                } else {
                    " "
                };
                let metrics: Vec<String> = m
                    .metrics
                    .iter()
                    .map(|(k, v)| format!("{}={v:.3}", show(k)))
                    .collect();
                println!(
                    "{mark} {}  {:<6} rank {:<3} step {:<6} {}  {}",
                    show(&m.id),
                    show(&m.objective),
                    m.rank,
                    m.step,
                    show(&m.source),
                    metrics.join(" ")
                );
            }
            Ok(())
        }
        AdaptersCommand::Install {
            file,
            base,
            activate,
            any_base,
        } => {
            let (store, path, header) = adapter_store(&base)?;
            let name = path.display().to_string();
            let m = store.install(
                &file,
                &header,
                &name,
                crate::common::base_policy(any_base),
                &|p| retroformer::backend::active().probe_adapter(&path, p),
            )?;
            println!("installed {} ({})", m.id, file.display());
            if activate {
                store.activate(&m.id)?;
                println!("active: {}", m.id);
            }
            Ok(())
        }
        AdaptersCommand::Activate { id, base } => {
            let (store, _, _) = adapter_store(&base)?;
            store.activate(&id)?;
            println!("active: {id}");
            Ok(())
        }
        AdaptersCommand::Rollback { base } => {
            let (store, _, _) = adapter_store(&base)?;
            let id = store.rollback()?;
            println!("active: {id}");
            Ok(())
        }
        AdaptersCommand::Deactivate { base } => {
            let (store, _, _) = adapter_store(&base)?;
            store.deactivate()?;
            println!("active: none (the base model alone)");
            Ok(())
        }
        AdaptersCommand::Canary(c) => canary(profile, &c),
    }
}

fn canary(profile: &TargetProfile, c: &CanaryArgs) -> Result<()> {
    let plan = CanaryPlan {
        candidate: c.id.clone(),
        base: c.base.clone(),
        env: c.env.clone(),
        actor: c.actor.clone(),
        skip: c.skip,
        limit: c.limit,
        split: Some(c.split.clone()),
        trials: c.trials,
        max_steps: c.max_steps,
        data: c.data.clone(),
        margin: c.margin,
        out: c.out.clone(),
        first_trial_from: c.first_trial_from.clone(),
        parallel: c.parallel,
    };
    let bar = FetchBar::default();
    let models = BackendSource {
        profile: profile.clone(),
        threads: c.threads,
        fetch: (!c.no_fetch).then_some(&bar as &dyn retroformer::fetch::Progress),
    };
    let mut progress = TaskProgress::new(false);
    let done = canary::canary(&Registry::builtin(), &plan, &models, &mut progress);
    progress.finish();
    let done = done?;
    let r = &done.report;
    println!(
        "canary {}: candidate {:.3} vs {} {:.3} (margin {:.3}) -> {}",
        r.candidate,
        r.candidate_score,
        r.incumbent.as_deref().unwrap_or("base alone"),
        r.incumbent_score,
        r.margin,
        if r.promoted {
            "promoted (active)"
        } else {
            "kept the incumbent"
        }
    );
    println!("evaluations: {}", done.out.display());
    Ok(())
}
