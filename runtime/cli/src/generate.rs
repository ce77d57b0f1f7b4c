//! `generate` and `chat`.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use retroformer_llm::target::TargetProfile;
use retroformer_llm::{ChatMessage, GenerateRequest, Generation, Session};

use crate::common::{load, open_session, request, ModelArgs, SamplingArgs};

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// The prompt (a user message, unless --raw).
    #[arg(long, short)]
    pub prompt: String,
    /// System message.
    #[arg(long)]
    pub system: Option<String>,
    /// Send the prompt as is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Print one JSON object (text and statistics) instead of streaming.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// System message.
    #[arg(long)]
    pub system: Option<String>,
}

pub fn generate(profile: &TargetProfile, a: &GenerateArgs) -> Result<()> {
    let model = load(profile, &a.model)?;
    let prompt = if a.raw {
        a.prompt.clone()
    } else {
        let mut msgs = Vec::new();
        if let Some(s) = &a.system {
            msgs.push(ChatMessage::new("system", s));
        }
        msgs.push(ChatMessage::new("user", &a.prompt));
        model.chat_prompt(&msgs, true)?
    };
    let req = request(prompt, &a.sampling)?;
    let mut session = open_session(model.as_ref(), profile, &a.model)?;
    let g = stream_generate(session.as_mut(), &req, !a.json)?;
    if a.json {
        let out = serde_json::json!({
            "model": model.name(),
            "target": profile.name,
            "text": g.text,
            "finish": g.finish,
            "stats": g.stats,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!();
        print_stats(&g);
    }
    Ok(())
}

pub fn chat(profile: &TargetProfile, a: &ChatArgs) -> Result<()> {
    let model = load(profile, &a.model)?;
    let mut session = open_session(model.as_ref(), profile, &a.model)?;
    let mut msgs = Vec::new();
    if let Some(s) = &a.system {
        msgs.push(ChatMessage::new("system", s));
    }
    eprintln!(
        "[retroformer] chat with {} (empty line or Ctrl-D to quit)",
        model.name()
    );
    loop {
        eprint!("> ");
        let Some(line) = crate::common::read_line()?.filter(|l| !l.trim().is_empty()) else {
            return Ok(());
        };
        msgs.push(ChatMessage::new("user", line.trim_end()));
        let req = request(model.chat_prompt(&msgs, true)?, &a.sampling)?;
        let g = stream_generate(session.as_mut(), &req, true)?;
        println!();
        print_stats(&g);
        msgs.push(ChatMessage::new("assistant", g.text));
    }
}

fn stream_generate(
    session: &mut dyn Session,
    req: &GenerateRequest,
    echo: bool,
) -> Result<Generation> {
    let g = session.generate(req, &mut |t| {
        if echo {
            let mut out = std::io::stdout();
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
        }
        true
    })?;
    Ok(g)
}

fn print_stats(g: &Generation) {
    let s = &g.stats;
    eprintln!(
        "\n[retroformer] prompt {} tok (reused {}, evaluated {}) in {:.0} ms = {:.0} t/s | generated {} tok in {:.0} ms = {:.1} t/s | finish {:?}",
        s.prompt_tokens,
        s.reused_tokens,
        s.evaluated_tokens,
        s.prefill_ms,
        s.prefill_tps(),
        s.generated_tokens,
        s.decode_ms,
        s.decode_tps(),
        g.finish
    );
}
