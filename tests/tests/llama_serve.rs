//! `Session::serve` with the real SmolLM2: requests joining a running batch, text streamed
//! through each request's sink, and a conversation's lane cache kept across turns.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use retroformer_e2e::{opts, smollm2};
use retroformer_llm::{
    ChatMessage, GenerateRequest, Generation, Keyed, LanguageModel, LlmError, Session,
    SessionOptions, TextSink,
};

fn chat(model: &dyn LanguageModel, turns: &[(&str, &str)]) -> String {
    let messages: Vec<ChatMessage> = turns
        .iter()
        .map(|(role, text)| ChatMessage::new(role, *text))
        .collect();
    model.chat_prompt(&messages, true).unwrap()
}

/// A request whose streamed text is appended to `into`.
fn streamed(prompt: String, max_tokens: u32, into: &Arc<Mutex<String>>) -> GenerateRequest {
    let mut r = GenerateRequest::new(prompt, max_tokens);
    let sink = Arc::clone(into);
    r.on_text = Some(TextSink::new(move |piece| {
        sink.lock().unwrap().push_str(piece);
        true
    }));
    r
}

type Done = Arc<Mutex<BTreeMap<u64, Result<Generation, LlmError>>>>;

fn serving_session(model: &dyn LanguageModel, lanes: u32) -> Box<dyn Session> {
    model
        .session(&SessionOptions {
            sequences: Some(lanes),
            ..opts()
        })
        .unwrap()
}

#[test]
fn requests_that_arrive_mid_generation_join_the_batch_and_each_streams_its_own_text() {
    let model = smollm2();
    let texts: Vec<Arc<Mutex<String>>> = (0..3).map(|_| Arc::default()).collect();
    let prompts = [
        "Write two sentences about the sea.",
        "Name three colours.",
        "Count from one to five in words.",
    ];
    let reqs: Vec<GenerateRequest> = prompts
        .iter()
        .zip(&texts)
        .map(|(p, t)| streamed(chat(&model, &[("user", p)]), 24, t))
        .collect();
    let mut pending: Vec<Keyed> = reqs
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, r)| (i as u64, r))
        .collect();
    let first = pending.remove(0);
    let a_text = Arc::clone(&texts[0]);
    let mut started = false;
    let mut joined_after = None;
    let done: Done = Arc::default();
    let d = Arc::clone(&done);
    let mut s = serving_session(&model, 3);
    s.serve(
        &mut |_wait| {
            if !started {
                started = true;
                return vec![first.clone()];
            }
            // The others arrive once the first has streamed some text.
            let shown = a_text.lock().unwrap().len();
            if shown > 0 && !pending.is_empty() {
                joined_after = Some(shown);
                return std::mem::take(&mut pending);
            }
            Vec::new()
        },
        &mut |key, g| {
            d.lock().unwrap().insert(key, g);
            Vec::new()
        },
    )
    .unwrap();
    let done = done.lock().unwrap();
    assert_eq!(done.len(), 3, "every request answered");
    let a = done[&0].as_ref().unwrap();
    assert!(
        joined_after.is_some_and(|n| n < a.text.len()),
        "the others joined while the first was generating ({joined_after:?} of {} bytes)",
        a.text.len()
    );
    let mut alone = model.session(&opts()).unwrap();
    for (i, r) in reqs.iter().enumerate() {
        let g = done[&(i as u64)].as_ref().unwrap();
        assert_eq!(
            *texts[i].lock().unwrap(),
            g.text,
            "request {i}: streamed = final"
        );
        assert!(g.stats.generated_tokens > 0, "request {i}");
        alone.clear().unwrap();
        let solo = alone
            .generate(&GenerateRequest::new(r.prompt.clone(), 24), &mut |_| true)
            .unwrap();
        let words = |t: &str| {
            t.split_whitespace()
                .take(5)
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            words(&g.text),
            words(&solo.text),
            "request {i}: as if alone"
        );
    }
}

#[test]
fn a_conversations_next_turn_reuses_its_lane_even_after_a_busy_lane_moved_into_it() {
    let model = smollm2();
    // A's first turn ends after 2 tokens while B goes on in the lane above: B moves down into
    // A's lane, and A's cache must move up, not be overwritten, so that A's next turn (sent
    // while B still runs) takes its whole first prompt from the cache.
    let a1 = chat(&model, &[("user", "Name a colour.")]);
    let b = chat(
        &model,
        &[("user", "Write three sentences about mountains.")],
    );
    let a1_tokens = model.tokenize(&a1, true, true).unwrap().len() as u32;
    let done: Done = Arc::default();
    let d = Arc::clone(&done);
    let (mut started, mut second, mut polls_after_a1) = (false, false, 0);
    let mut s = serving_session(&model, 2);
    s.serve(
        &mut |wait| {
            if !started {
                started = true;
                return vec![
                    (0, GenerateRequest::new(a1.clone(), 2)),
                    (1, GenerateRequest::new(b.clone(), 48)),
                ];
            }
            let reply = match d.lock().unwrap().get(&0) {
                Some(Ok(g)) if !second => g.text.clone(),
                _ => return Vec::new(),
            };
            // One decode step after A's first turn ends (B moves down then), A's next arrives.
            polls_after_a1 += 1;
            if polls_after_a1 < 2 && !wait {
                return Vec::new();
            }
            second = true;
            let a2 = chat(
                &model,
                &[
                    ("user", "Name a colour."),
                    ("assistant", &reply),
                    ("user", "And another?"),
                ],
            );
            vec![(2, GenerateRequest::new(a2, 8))]
        },
        &mut |key, g| {
            d.lock().unwrap().insert(key, g);
            Vec::new()
        },
    )
    .unwrap();
    let done = done.lock().unwrap();
    let b_gen = done[&1].as_ref().unwrap();
    let a2 = done[&2].as_ref().unwrap();
    assert!(s.info().unwrap().lane_moves >= 1, "B moved down");
    assert!(
        a2.stats.reused_tokens >= a1_tokens,
        "A's second turn reused {} tokens; its first prompt has {a1_tokens}",
        a2.stats.reused_tokens
    );
    assert_eq!(b_gen.stats.generated_tokens, 48, "B went on undisturbed");
}
