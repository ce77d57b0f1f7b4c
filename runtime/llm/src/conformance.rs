//! The conformance suite: the session invariants every backend keeps, written once against
//! the [`LanguageModel`]/[`Session`] traits and run against each backend (the scripted model in
//! this crate's tests, llama.cpp with the real SmolLM2 in the workspace's end-to-end tests).
//!
//! Agents rely on these: a follow-up prompt that extends the last one costs only its new
//! tokens and gives what a fresh session gives; stop strings never reach the caller; a cache
//! is never reused across adapters; batched and streamed requests give what one request at a
//! time gives; a batch leaves the session as one request would.
//!
//! Greedy decoding is deterministic for a given batch shape; across batch shapes the last bits
//! of the logits may differ, which can flip a near-tie late in a run, so batched output is
//! compared with single output by its start ([`same_start`]).

use std::path::PathBuf;

use crate::{FinishReason, GenerateRequest, Generation, LanguageModel, Session, SessionOptions};

/// What the suite runs against.
pub struct Backend<'a> {
    /// The model under test.
    pub model: &'a dyn LanguageModel,
    /// Options of the sessions the suite opens (context, threads).
    pub opts: SessionOptions,
    /// A LoRA adapter of `model`, for the adapter checks (skipped without one).
    pub adapter: Option<PathBuf>,
}

/// One invariant: its name (a sentence) and the check.
pub struct Check {
    /// What the backend must do.
    pub name: &'static str,
    run: fn(&Backend<'_>) -> Result<(), String>,
}

/// Every check of the suite, in order.
pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "greedy generation is deterministic across sessions",
            run: deterministic,
        },
        Check {
            name: "a generation reports its prompt ids and sampled tokens, and greedy picks the most likely",
            run: sampled_tokens,
        },
        Check {
            name: "max_tokens is respected exactly",
            run: max_tokens,
        },
        Check {
            name: "generation stops before a stop string and streams the same text",
            run: stop_strings,
        },
        Check {
            name: "a prompt that extends the cached one evaluates only its new tokens and matches a fresh session",
            run: prefix_reuse,
        },
        Check {
            name: "clear forgets the cache",
            run: clear,
        },
        Check {
            name: "a batch matches its requests one at a time and leaves the session as one request would",
            run: batch,
        },
        Check {
            name: "a stream matches one request at a time and a follow-up reuses the prompt it extends",
            run: stream,
        },
        Check {
            name: "the cache is keyed by adapter and scale, and unsetting the adapter restores the base",
            run: adapter_keyed_cache,
        },
        Check {
            name: "a batch of 32 on 32 lanes matches its requests one at a time",
            run: batch_32,
        },
        Check {
            name: "a finished request's lane is refilled at once, so short requests do not wait for a long one",
            run: lane_refill,
        },
        Check {
            name: "a request cancelled or past its deadline ends alone while the others finish as they would alone",
            run: cancel_one,
        },
        Check {
            name: "a prompt too long for its lane is refused alone while the others finish",
            run: oversized_alone,
        },
    ]
}

/// Runs every check; the failures, each named (empty when the backend conforms).
pub fn run(backend: &Backend<'_>) -> Vec<String> {
    checks()
        .into_iter()
        .filter_map(|c| (c.run)(backend).err().map(|e| format!("{}: {e}", c.name)))
        .collect()
}

/// The first six words of two texts are the same (see the module's note on batch shapes).
pub fn same_start(a: &str, b: &str) -> bool {
    let words = |t: &str| {
        t.split_whitespace()
            .take(6)
            .map(String::from)
            .collect::<Vec<_>>()
    };
    words(a) == words(b)
}

fn chat(b: &Backend<'_>, user: &str) -> Result<String, String> {
    b.model
        .chat_prompt(&[crate::ChatMessage::new("user", user)], true)
        .map_err(|e| e.to_string())
}

fn session(b: &Backend<'_>, sequences: u32) -> Result<Box<dyn Session>, String> {
    let opts = SessionOptions {
        sequences: (sequences > 1).then_some(sequences),
        ..b.opts.clone()
    };
    b.model.session(&opts).map_err(|e| e.to_string())
}

fn gen(s: &mut dyn Session, req: &GenerateRequest) -> Result<Generation, String> {
    s.generate(req, &mut |_| true).map_err(|e| e.to_string())
}

fn tokens(b: &Backend<'_>, text: &str) -> Result<u32, String> {
    Ok(b.model
        .tokenize(text, true, true)
        .map_err(|e| e.to_string())?
        .len() as u32)
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

fn deterministic(b: &Backend<'_>) -> Result<(), String> {
    let req = GenerateRequest::new(chat(b, "Write one sentence about the sea.")?, 24);
    let x = gen(session(b, 1)?.as_mut(), &req)?;
    let y = gen(session(b, 1)?.as_mut(), &req)?;
    ensure(!x.text.trim().is_empty(), || "empty output".into())?;
    ensure(x.text == y.text, || format!("{:?} vs {:?}", x.text, y.text))
}

fn sampled_tokens(b: &Backend<'_>) -> Result<(), String> {
    let mut req = GenerateRequest::new(chat(b, "Count from one to ten in words.")?, 12);
    req.logprobs = Some(3);
    let plain = GenerateRequest {
        logprobs: None,
        ..req.clone()
    };
    let mut s = session(b, 2)?;
    let one = gen(s.as_mut(), &req)?;
    let batch = s.generate_batch(&[req, plain]).map_err(|e| e.to_string())?;
    for (g, how) in [(&one, "alone"), (&batch[0], "in a batch")] {
        ensure(g.prompt_ids.len() as u32 == g.stats.prompt_tokens, || {
            format!(
                "{how}: {} prompt ids for {} prompt tokens",
                g.prompt_ids.len(),
                g.stats.prompt_tokens
            )
        })?;
        let bytes: Vec<u8> = g.tokens.iter().flat_map(|t| t.bytes.clone()).collect();
        ensure(bytes.starts_with(g.text.as_bytes()), || {
            format!(
                "{how}: the tokens spell {:?}, the text is {:?}",
                String::from_utf8_lossy(&bytes),
                g.text
            )
        })?;
        ensure(g.tokens.len() >= g.stats.generated_tokens as usize, || {
            format!(
                "{how}: {} tokens for {} generated",
                g.tokens.len(),
                g.stats.generated_tokens
            )
        })?;
        for t in &g.tokens {
            let lp = t
                .logprob
                .ok_or_else(|| format!("{how}: token {} has no logprob", t.id))?;
            let top: Vec<f32> = t.top.iter().map(|x| x.logprob).collect();
            ensure(lp <= 1e-4 && !top.is_empty() && top.len() <= 3, || {
                format!(
                    "{how}: token {}: logprob {lp}, {} alternatives",
                    t.id,
                    top.len()
                )
            })?;
            ensure(
                top.windows(2).all(|w| w[0] >= w[1]) && (top[0] - lp).abs() < 1e-4,
                || {
                    format!(
                        "{how}: greedy token {} has logprob {lp}, alternatives {top:?}",
                        t.id
                    )
                },
            )?;
        }
    }
    let plain = &batch[1];
    ensure(
        plain
            .tokens
            .iter()
            .all(|t| t.logprob.is_none() && t.top.is_empty())
            && !plain.tokens.is_empty(),
        || "a request without logprobs got them (or no tokens)".into(),
    )
}

fn max_tokens(b: &Backend<'_>) -> Result<(), String> {
    let req = GenerateRequest::new(chat(b, "Count from one to fifty in words.")?, 7);
    let g = gen(session(b, 1)?.as_mut(), &req)?;
    ensure(
        g.stats.generated_tokens == 7 && g.finish == FinishReason::MaxTokens,
        || format!("{} tokens, {:?}", g.stats.generated_tokens, g.finish),
    )
}

fn stop_strings(b: &Backend<'_>) -> Result<(), String> {
    let prompt = chat(b, "Count from one to ten in words, separated by commas.")?;
    let mut s = session(b, 1)?;
    let full = gen(s.as_mut(), &GenerateRequest::new(prompt.clone(), 40))?;
    // A stop string of three characters from the middle of the unconstrained answer.
    let space = full
        .text
        .get(3..)
        .and_then(|t| t.find(' '))
        .ok_or_else(|| format!("the answer {:?} has too few words", full.text))?
        + 3;
    let stop: String = full.text[space..].chars().take(3).collect();
    let at = full.text.find(&stop).expect("taken from the text");
    let mut streamed = String::new();
    let g = s
        .generate(
            &GenerateRequest::new(prompt, 40).stop(stop.clone()),
            &mut |t| {
                streamed.push_str(t);
                true
            },
        )
        .map_err(|e| e.to_string())?;
    ensure(g.text == full.text[..at], || {
        format!("{:?}, expected {:?}", g.text, &full.text[..at])
    })?;
    ensure(streamed == g.text, || format!("streamed {streamed:?}"))?;
    ensure(g.finish == FinishReason::Stop(stop), || {
        format!("{:?}", g.finish)
    })
}

fn prefix_reuse(b: &Backend<'_>) -> Result<(), String> {
    let base = chat(b, "Explain in two sentences why the sky is blue.")?;
    let mut s = session(b, 1)?;
    let first = gen(s.as_mut(), &GenerateRequest::new(base.clone(), 16))?;
    ensure(first.stats.reused_tokens == 0, || {
        format!("a fresh session reused {}", first.stats.reused_tokens)
    })?;
    // The next agent step: the previous prompt, the answer, and more text.
    let next = format!("{base}{} Now say it in five words.", first.text);
    let second = gen(s.as_mut(), &GenerateRequest::new(next.clone(), 16))?;
    let n_base = tokens(b, &base)?;
    let st = &second.stats;
    ensure(st.prompt_tokens == tokens(b, &next)?, || {
        format!("prompt_tokens {}", st.prompt_tokens)
    })?;
    ensure(st.reused_tokens >= n_base, || {
        format!("reused {} < the cached prompt's {n_base}", st.reused_tokens)
    })?;
    ensure(
        st.evaluated_tokens == st.prompt_tokens - st.reused_tokens,
        || format!("evaluated {} of {}", st.evaluated_tokens, st.prompt_tokens),
    )?;
    let fresh = gen(session(b, 1)?.as_mut(), &GenerateRequest::new(next, 16))?;
    ensure(fresh.text == second.text, || {
        format!("{:?} after reuse vs {:?} fresh", second.text, fresh.text)
    })?;
    // The same prompt again reuses everything but its last token.
    let again = gen(s.as_mut(), &GenerateRequest::new(base, 16))?;
    ensure(again.stats.evaluated_tokens == 1, || {
        format!("evaluated {}", again.stats.evaluated_tokens)
    })?;
    ensure(again.text == first.text, || format!("{:?}", again.text))
}

fn clear(b: &Backend<'_>) -> Result<(), String> {
    let req = GenerateRequest::new(chat(b, "Name a colour.")?, 4);
    let mut s = session(b, 1)?;
    gen(s.as_mut(), &req)?;
    s.clear().map_err(|e| e.to_string())?;
    let g = gen(s.as_mut(), &req)?;
    ensure(g.stats.reused_tokens == 0, || {
        format!("reused {} after clear", g.stats.reused_tokens)
    })
}

fn batch(b: &Backend<'_>) -> Result<(), String> {
    let sea = chat(b, "Write one sentence about the sea.")?;
    let count = chat(b, "Count from one to ten in words, separated by commas.")?;
    let reqs = vec![
        GenerateRequest::new(sea.clone(), 16),
        GenerateRequest::new(count.clone(), 16),
        GenerateRequest::new(sea.clone(), 16),
        GenerateRequest::new(count, 12),
        GenerateRequest::new(sea, 0),
    ];
    let singles = alone_each(b, &reqs)?;
    // Three lanes for five requests.
    let mut s = session(b, 3)?;
    let got = s.generate_batch(&reqs).map_err(|e| e.to_string())?;
    ensure(got.len() == reqs.len(), || format!("{} results", got.len()))?;
    starts_match(&got, &singles, "batched")?;
    for (i, g) in got.iter().enumerate() {
        ensure(g.stats.generated_tokens <= reqs[i].max_tokens, || {
            format!("request {i}: {} tokens", g.stats.generated_tokens)
        })?;
    }
    // Afterwards one request at a time, as after any other call.
    let after = gen(s.as_mut(), &reqs[0])?;
    ensure(same_start(&after.text, &singles[0].text), || {
        format!("after the batch: {:?}", after.text)
    })?;
    let empty = s.generate_batch(&[]).map_err(|e| e.to_string())?;
    ensure(empty.is_empty(), || "an empty batch gave results".into())
}

fn stream(b: &Backend<'_>) -> Result<(), String> {
    let first = vec![
        (0, GenerateRequest::new(chat(b, "Name a colour.")?, 12)),
        (1, GenerateRequest::new(chat(b, "Name an animal.")?, 12)),
        (2, GenerateRequest::new(chat(b, "Name a city.")?, 12)),
    ];
    let next = |prompt: &str, answer: &str| format!("{prompt}{answer} And another one?");
    let p0 = first[0].1.prompt.clone();
    let mut done: Vec<(u64, Generation)> = Vec::new();
    let mut s = session(b, 2)?;
    let mut failed = Vec::new();
    s.generate_stream(first.clone(), &mut |key, g| match g {
        Ok(g) => {
            let follow = if key == 0 {
                vec![(10, GenerateRequest::new(next(&p0, &g.text), 12))]
            } else {
                Vec::new()
            };
            done.push((key, g));
            follow
        }
        Err(e) => {
            failed.push(format!("request {key}: {e}"));
            Vec::new()
        }
    })
    .map_err(|e| e.to_string())?;
    ensure(failed.is_empty(), || failed.join("; "))?;
    let mut keys: Vec<u64> = done.iter().map(|(k, _)| *k).collect();
    keys.sort_unstable();
    ensure(keys == [0, 1, 2, 10], || format!("finished {keys:?}"))?;
    let get = |k: u64| &done.iter().find(|(key, _)| *key == k).expect("checked").1;
    let mut one = session(b, 1)?;
    let follow = GenerateRequest::new(next(&p0, &get(0).text), 12);
    for (k, r) in first.iter().chain(std::iter::once(&(10, follow))) {
        one.clear().map_err(|e| e.to_string())?;
        let alone = gen(one.as_mut(), r)?;
        ensure(same_start(&get(*k).text, &alone.text), || {
            format!(
                "request {k}: {:?} streamed vs {:?} alone",
                get(*k).text,
                alone.text
            )
        })?;
    }
    let n_first = tokens(b, &p0)?;
    ensure(get(10).stats.reused_tokens >= n_first, || {
        format!(
            "the follow-up reused {} of the {n_first} tokens it extends",
            get(10).stats.reused_tokens
        )
    })
}

fn adapter_keyed_cache(b: &Backend<'_>) -> Result<(), String> {
    let Some(path) = &b.adapter else {
        return Ok(());
    };
    let h = b.model.load_adapter(path).map_err(|e| e.to_string())?;
    let req = GenerateRequest::new(chat(b, "Write one sentence about the sea.")?, 12);
    let mut s = session(b, 1)?;
    let base = gen(s.as_mut(), &req)?;
    // Each step: the adapter to set (None: leave it as it is), and whether the cache is reused.
    type Set = Option<Option<(crate::AdapterHandle, f32)>>;
    let mut step = |set: Set, what: &str, reused: bool| {
        if let Some(adapter) = set {
            s.set_adapter(adapter).map_err(|e| e.to_string())?;
        }
        let g = gen(s.as_mut(), &req)?;
        ensure((g.stats.reused_tokens > 0) == reused, || {
            format!("{what}: reused {}", g.stats.reused_tokens)
        })?;
        Ok::<Generation, String>(g)
    };
    step(Some(Some((h.clone(), 1.0))), "adapter set", false)?;
    step(None, "same adapter again", true)?;
    step(Some(Some((h, 0.5))), "scale changed", false)?;
    let back = step(Some(None), "unset", false)?;
    ensure(back.text == base.text, || {
        format!("{:?} after unsetting vs {:?} before", back.text, base.text)
    })
}

/// A stream's result for one key.
type Done = (u64, Result<Generation, crate::LlmError>);

/// Runs `reqs` in one stream on `s`; each result by key, in finishing order.
fn stream_all(s: &mut dyn Session, reqs: Vec<crate::Keyed>) -> Result<Vec<Done>, String> {
    let mut done = Vec::new();
    s.generate_stream(reqs, &mut |key, g| {
        done.push((key, g));
        Vec::new()
    })
    .map_err(|e| e.to_string())?;
    Ok(done)
}

/// Each of `reqs` alone on a fresh one-sequence session.
fn alone_each(b: &Backend<'_>, reqs: &[GenerateRequest]) -> Result<Vec<Generation>, String> {
    let mut one = session(b, 1)?;
    let mut out = Vec::new();
    for r in reqs {
        one.clear().map_err(|e| e.to_string())?;
        out.push(gen(one.as_mut(), r)?);
    }
    Ok(out)
}

/// Each of `got` starts as its request alone did (`how`: the way `got` was made).
fn starts_match(got: &[Generation], singles: &[Generation], how: &str) -> Result<(), String> {
    for (i, (g, alone)) in got.iter().zip(singles).enumerate() {
        ensure(same_start(&g.text, &alone.text), || {
            format!("request {i}: {:?} {how} vs {:?} alone", g.text, alone.text)
        })?;
    }
    Ok(())
}

fn batch_32(b: &Backend<'_>) -> Result<(), String> {
    let subjects = ["a colour", "an animal", "a city", "a fruit"];
    let reqs = (0..32)
        .map(|i| {
            let user = format!("Name {} (request {i}).", subjects[i % 4]);
            Ok(GenerateRequest::new(chat(b, &user)?, 8))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut s = session(b, 32)?;
    let batched = s.generate_batch(&reqs).map_err(|e| e.to_string())?;
    starts_match(&batched, &alone_each(b, &reqs)?, "on 32 lanes")
}

fn lane_refill(b: &Backend<'_>) -> Result<(), String> {
    let mut long = GenerateRequest::new(chat(b, "Tell a long story.")?, 48);
    long.ignore_eos = true;
    let mut reqs = vec![(0, long)];
    for k in 1..=4u64 {
        let mut r = GenerateRequest::new(chat(b, &format!("Say a number ({k})."))?, 2);
        r.ignore_eos = true;
        reqs.push((k, r));
    }
    let mut s = session(b, 2)?;
    let lanes = s.info().map_err(|e| e.to_string())?.lanes;
    let done = stream_all(s.as_mut(), reqs)?;
    let order: Vec<u64> = done.iter().map(|(k, _)| *k).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    ensure(sorted == [0, 1, 2, 3, 4], || format!("finished {order:?}"))?;
    ensure(done.iter().all(|(_, g)| g.is_ok()), || {
        "a request failed".into()
    })?;
    // With two lanes, the short requests take turns in the second lane while the long one
    // runs in the first: all four finish before it. One lane runs them in order.
    let expected: &[u64] = if lanes >= 2 {
        &[1, 2, 3, 4, 0]
    } else {
        &[0, 1, 2, 3, 4]
    };
    ensure(order == expected, || {
        format!("finished in the order {order:?} on {lanes} lane(s), expected {expected:?}")
    })
}

fn cancel_one(b: &Backend<'_>) -> Result<(), String> {
    let token = crate::CancelToken::new();
    let mk = |user: &str, n: u32| -> Result<GenerateRequest, String> {
        let mut r = GenerateRequest::new(chat(b, user)?, n);
        r.ignore_eos = true;
        Ok(r)
    };
    let short = mk("Say yes.", 2)?;
    let mut cancelled = mk("Tell a long story about a ship.", 40)?;
    cancelled.cancel = Some(token.clone());
    let mut late = mk("Tell a long story about a tree.", 40)?;
    late.deadline = Some(std::time::Instant::now());
    let others = vec![mk("Name a colour.", 10)?, mk("Name an animal.", 10)?];
    let mut reqs = vec![(0, short), (1, cancelled), (2, late)];
    reqs.extend(
        others
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, r)| (3 + i as u64, r)),
    );
    let mut s = session(b, 4)?;
    let mut done: Vec<(u64, Generation)> = Vec::new();
    let mut failed = Vec::new();
    s.generate_stream(reqs, &mut |key, g| {
        match g {
            // The first to finish cancels request 1, which is running or waiting.
            Ok(g) => {
                if key == 0 {
                    token.cancel();
                }
                done.push((key, g));
            }
            Err(e) => failed.push(format!("{key}: {e}")),
        }
        Vec::new()
    })
    .map_err(|e| e.to_string())?;
    ensure(failed.is_empty(), || failed.join("; "))?;
    let get = |k: u64| done.iter().find(|(key, _)| *key == k).map(|(_, g)| g);
    let c = get(1).ok_or("request 1 never finished")?;
    ensure(
        c.finish == FinishReason::Cancelled && c.stats.generated_tokens < 40,
        || {
            format!(
                "cancelled request: {:?} after {} tokens",
                c.finish, c.stats.generated_tokens
            )
        },
    )?;
    let d = get(2).ok_or("request 2 never finished")?;
    ensure(
        d.finish == FinishReason::Deadline && d.stats.generated_tokens == 0,
        || {
            format!(
                "past its deadline: {:?} after {} tokens",
                d.finish, d.stats.generated_tokens
            )
        },
    )?;
    let alone = alone_each(b, &others)?;
    for (i, a) in alone.iter().enumerate() {
        let g = get(3 + i as u64).ok_or("a neighbour never finished")?;
        ensure(g.finish == a.finish && same_start(&g.text, &a.text), || {
            format!(
                "neighbour {i}: {:?} {:?} vs {:?} {:?} alone",
                g.finish, g.text, a.finish, a.text
            )
        })?;
    }
    Ok(())
}

fn oversized_alone(b: &Backend<'_>) -> Result<(), String> {
    let opts = SessionOptions {
        sequences: Some(2),
        context_size: Some(256),
        ..b.opts.clone()
    };
    let mut s = b.model.session(&opts).map_err(|e| e.to_string())?;
    let huge = GenerateRequest::new(chat(b, &"word ".repeat(600))?, 8);
    let ok = vec![
        GenerateRequest::new(chat(b, "Name a colour.")?, 8),
        GenerateRequest::new(chat(b, "Name an animal.")?, 8),
    ];
    let reqs = vec![(0, ok[0].clone()), (1, huge), (2, ok[1].clone())];
    let done = stream_all(s.as_mut(), reqs)?;
    let get = |k: u64| done.iter().find(|(key, _)| *key == k).map(|(_, g)| g);
    match get(1) {
        Some(Err(crate::LlmError::PromptTooLong { .. })) => {}
        other => return Err(format!("the oversized prompt gave {other:?}")),
    }
    let alone = alone_each(b, &ok)?;
    for (i, k) in [0u64, 2].into_iter().enumerate() {
        match get(k) {
            Some(Ok(g)) if same_start(&g.text, &alone[i].text) => {}
            other => {
                return Err(format!(
                    "request {k}: {other:?} vs {:?} alone",
                    alone[i].text
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripted::ScriptedModel;

    #[test]
    fn the_scripted_model_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let adapter = dir.path().join("a.gguf");
        std::fs::write(&adapter, b"any").unwrap();
        let model = ScriptedModel::generative();
        let failures = run(&Backend {
            model: &model,
            opts: SessionOptions::default(),
            adapter: Some(adapter),
        });
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn a_backend_that_ignores_stop_strings_fails_the_suite_by_name() {
        struct NoStops(ScriptedModel);
        struct S(Box<dyn Session>);
        impl Session for S {
            fn generate(
                &mut self,
                req: &GenerateRequest,
                on_token: &mut (dyn FnMut(&str) -> bool + Send),
            ) -> Result<Generation, crate::LlmError> {
                let mut r = req.clone();
                r.stop.clear();
                self.0.generate(&r, on_token)
            }
            fn set_adapter(
                &mut self,
                a: Option<(crate::AdapterHandle, f32)>,
            ) -> Result<(), crate::LlmError> {
                self.0.set_adapter(a)
            }
            fn clear(&mut self) -> Result<(), crate::LlmError> {
                self.0.clear()
            }
            fn info(&self) -> Result<crate::SessionInfo, crate::LlmError> {
                self.0.info()
            }
        }
        impl LanguageModel for NoStops {
            fn name(&self) -> &str {
                "no-stops"
            }
            fn tokenize(
                &self,
                t: &str,
                b: bool,
                p: bool,
            ) -> Result<Vec<crate::Token>, crate::LlmError> {
                self.0.tokenize(t, b, p)
            }
            fn detokenize(&self, t: &[crate::Token]) -> Result<String, crate::LlmError> {
                self.0.detokenize(t)
            }
            fn chat_prompt(
                &self,
                m: &[crate::ChatMessage],
                a: bool,
            ) -> Result<String, crate::LlmError> {
                self.0.chat_prompt(m, a)
            }
            fn session(&self, o: &SessionOptions) -> Result<Box<dyn Session>, crate::LlmError> {
                Ok(Box::new(S(self.0.session(o)?)))
            }
            fn load_adapter(
                &self,
                p: &std::path::Path,
            ) -> Result<crate::AdapterHandle, crate::LlmError> {
                self.0.load_adapter(p)
            }
        }
        let model = NoStops(ScriptedModel::generative());
        let failures = run(&Backend {
            model: &model,
            opts: SessionOptions::default(),
            adapter: None,
        });
        assert_eq!(failures.len(), 1, "{failures:#?}");
        assert!(failures[0].starts_with("generation stops before a stop string"));
    }
}
