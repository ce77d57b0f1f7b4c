//! Integration tests of the llama.cpp LLM layer with the real SmolLM2-135M-Instruct model.

use retroformer::core::records::keys::BASE_SHA256;
use retroformer_e2e::{chat, opts, run, smollm2, write_adapter};
use retroformer_gguf::GgufWriter;
use retroformer_llama::{LlamaModel, LoadOptions};
use retroformer_llm::target::TargetProfile;
use retroformer_llm::{FinishReason, GenerateRequest, LanguageModel, LlmError, SessionOptions};

/// Batched logits can differ from one-at-a-time ones in the last bits (another batch shape,
/// other cells), which can flip a near-tie late in a greedy run; the start must agree. A lane
/// with wrong cells (a bad copy, wrong positions) goes wrong from its first tokens.
fn assert_same_start(batched: &str, alone: &str, what: &str) {
    let words = |t: &str| {
        t.split_whitespace()
            .take(6)
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert!(!alone.trim().is_empty(), "{what}: empty");
    assert_eq!(
        words(batched),
        words(alone),
        "{what}: {batched:?} vs {alone:?}"
    );
}

#[test]
fn greedy_generation_is_deterministic_across_sessions() {
    let model = smollm2();
    let req = GenerateRequest::new(chat(&model, "Write one sentence about the sea."), 32);
    let a = run(model.session(&opts()).unwrap().as_mut(), &req);
    let b = run(model.session(&opts()).unwrap().as_mut(), &req);
    assert!(!a.text.trim().is_empty());
    assert_eq!(a.text, b.text);
    assert_eq!(a.stats.generated_tokens, b.stats.generated_tokens);
}

#[test]
fn the_chat_template_from_the_gguf_is_chatml() {
    let model = smollm2();
    let p = chat(&model, "hi");
    assert!(p.contains("<|im_start|>user\nhi<|im_end|>"), "{p}");
    assert!(p.ends_with("<|im_start|>assistant\n"), "{p}");
}

#[test]
fn max_tokens_is_respected_exactly() {
    let model = smollm2();
    let mut s = model.session(&opts()).unwrap();
    let g = run(
        s.as_mut(),
        &GenerateRequest::new(chat(&model, "Count from one to fifty in words."), 7),
    );
    assert_eq!(g.stats.generated_tokens, 7);
    assert_eq!(g.finish, FinishReason::MaxTokens);
}

#[test]
fn generation_stops_before_a_stop_string_and_streams_the_same_text() {
    let model = smollm2();
    let prompt = chat(
        &model,
        "Count from one to ten in words, separated by commas.",
    );
    let mut s = model.session(&opts()).unwrap();
    let full = run(s.as_mut(), &GenerateRequest::new(prompt.clone(), 40));
    // Stop at three characters taken from the middle of the unconstrained answer.
    let space = full.text[3..]
        .find(' ')
        .expect("the answer has several words")
        + 3;
    let stop = full.text[space..].chars().take(3).collect::<String>();
    let comma = full.text.find(&stop).unwrap();
    let req = GenerateRequest::new(prompt, 40).stop(stop.clone());
    let mut streamed = String::new();
    let g = s
        .generate(&req, &mut |t| {
            streamed.push_str(t);
            true
        })
        .unwrap();
    assert_eq!(g.text, full.text[..comma]);
    assert_eq!(streamed, g.text);
    assert_eq!(g.finish, FinishReason::Stop(stop));
}

#[test]
fn a_session_evaluates_only_the_appended_tokens_and_matches_a_fresh_context() {
    let model = smollm2();
    let base = chat(&model, "Explain in two sentences why the sky is blue.");
    let mut s = model.session(&opts()).unwrap();
    let first = run(s.as_mut(), &GenerateRequest::new(base.clone(), 24));
    assert_eq!(first.stats.reused_tokens, 0);

    // The next agent step: the previous prompt, the answer, and a new turn.
    let next = format!("{base}{}<|im_end|>\n<|im_start|>user\nNow say it in five words.<|im_end|>\n<|im_start|>assistant\n", first.text);
    let second = run(s.as_mut(), &GenerateRequest::new(next.clone(), 24));
    let n_base = model.tokenize(&base, true, true).unwrap().len() as u32;
    assert_eq!(
        second.stats.prompt_tokens,
        model.tokenize(&next, true, true).unwrap().len() as u32
    );
    assert!(
        second.stats.reused_tokens >= n_base,
        "reused {} < base prompt {n_base}",
        second.stats.reused_tokens
    );
    assert_eq!(
        second.stats.evaluated_tokens,
        second.stats.prompt_tokens - second.stats.reused_tokens
    );
    assert!(
        second.stats.evaluated_tokens < 40,
        "evaluated {}",
        second.stats.evaluated_tokens
    );

    let fresh = run(
        model.session(&opts()).unwrap().as_mut(),
        &GenerateRequest::new(next, 24),
    );
    assert_eq!(fresh.stats.reused_tokens, 0);
    assert_eq!(second.text, fresh.text);

    // The same prompt again reuses everything but the last token.
    let again = run(s.as_mut(), &GenerateRequest::new(base, 24));
    assert_eq!(again.stats.evaluated_tokens, 1);
    assert_eq!(again.text, first.text);
    assert_eq!(s.info().unwrap().context_size, 2048);
}

#[test]
fn a_batch_decodes_its_requests_together_and_matches_them_one_at_a_time() {
    let model = smollm2();
    let sea = chat(&model, "Write one sentence about the sea.");
    let count = chat(
        &model,
        "Count from one to ten in words, separated by commas.",
    );
    let mut sampled = GenerateRequest::new(sea.clone(), 16);
    sampled.sampling.temperature = 0.9;
    sampled.sampling.top_p = 0.95;
    sampled.sampling.seed = 7;
    let reqs = vec![
        GenerateRequest::new(sea.clone(), 16),
        sampled,
        GenerateRequest::new(count.clone(), 16),
        GenerateRequest::new(sea.clone(), 16),
        GenerateRequest::new(count.clone(), 40).stop(" of"),
        GenerateRequest::new(sea.clone(), 0),
    ];
    let mut one = model.session(&opts()).unwrap();
    let singles: Vec<_> = reqs
        .iter()
        .map(|r| {
            one.clear().unwrap();
            run(one.as_mut(), r)
        })
        .collect();
    // Four lanes for six requests: two groups.
    let mut b = model
        .session(&SessionOptions {
            sequences: Some(4),
            ..opts()
        })
        .unwrap();
    let batch = b.generate_batch(&reqs).unwrap();
    assert_eq!(batch.len(), reqs.len());
    for i in [0, 2, 3, 4] {
        assert_same_start(
            &batch[i].text,
            &singles[i].text,
            &format!("greedy request {i}"),
        );
    }
    assert_same_start(&batch[3].text, &batch[0].text, "twin requests 0 and 3");
    assert!(!batch[1].text.is_empty() && batch[1].stats.generated_tokens <= 16);
    assert!(batch.iter().take(4).all(|g| g.stats.generated_tokens <= 16));
    assert!(
        matches!(batch[4].finish, FinishReason::Stop(_)),
        "{:?} {:?}",
        batch[4].finish,
        batch[4].text
    );
    assert_eq!(batch[5].stats.generated_tokens, 0);
    assert_eq!(batch[5].finish, FinishReason::MaxTokens);
    // A group evaluates its prompts' common prefix once, and a prompt it holds twice once:
    // requests 1 and 3 repeat request 0's prompt and take its cells and logits.
    let a = model.tokenize(&sea, true, true).unwrap();
    let c = model.tokenize(&count, true, true).unwrap();
    let common = a.iter().zip(&c).take_while(|(x, y)| x == y).count() as u32;
    assert!(common > 0);
    assert_eq!(batch[0].stats.evaluated_tokens, a.len() as u32);
    assert_eq!(batch[2].stats.reused_tokens, common);
    assert_eq!(batch[2].stats.evaluated_tokens, c.len() as u32 - common);
    for i in [1, 3, 5] {
        assert_eq!(batch[i].stats.evaluated_tokens, 0, "request {i}");
        assert_eq!(batch[i].stats.reused_tokens, a.len() as u32, "request {i}");
    }
    for g in &batch {
        assert!(g.stats.total_ms >= g.stats.prefill_ms + g.stats.decode_ms - 1e-6);
    }
    // The session goes on with one request at a time, reusing the prefix the batch left.
    let after = run(b.as_mut(), &reqs[0]);
    assert_same_start(&after.text, &singles[0].text, "after the batch");
    assert!(after.stats.reused_tokens >= common);
    let e = model
        .session(&SessionOptions {
            sequences: Some(0),
            ..opts()
        })
        .err()
        .expect("zero sequences are refused");
    assert!(e.to_string().contains("sequences"), "{e}");
}

/// One greedy generation: its text and each token's log-probability, bit for bit.
type Trace = (String, Vec<Option<u32>>);

fn trace(g: retroformer_llm::Generation) -> Trace {
    let bits = g
        .tokens
        .iter()
        .map(|t| t.logprob.map(f32::to_bits))
        .collect();
    (g.text, bits)
}

/// Greedy traces of `prompts` decoded one at a time and as one batch of `lanes` lanes
/// (refilled as requests end), on SmolLM2 loaded with the target profile `target`.
fn alone_and_batched(target: &str, prompts: &[&str], lanes: u32) -> (Vec<Trace>, Vec<Trace>) {
    let profile = TargetProfile::load(target).unwrap();
    let path = retroformer_e2e::smollm2_path();
    let model = LlamaModel::load(&path, LoadOptions::new(profile)).unwrap();
    // Lengths differ, so lanes end and refill at different steps: many batch shapes occur.
    let reqs: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut r = GenerateRequest::new(chat(&model, p), 40 + 8 * (i as u32 % 4));
            r.logprobs = Some(1);
            r
        })
        .collect();
    // Two threads, as a user runs it.
    let opts = || SessionOptions {
        threads: Some(2),
        ..opts()
    };
    let mut one = model.session(&opts()).unwrap();
    let alone = reqs
        .iter()
        .map(|r| {
            one.clear().unwrap();
            trace(run(one.as_mut(), r))
        })
        .collect();
    let mut b = model
        .session(&SessionOptions {
            sequences: Some(lanes),
            ..opts()
        })
        .unwrap();
    let batched = b.generate_batch(&reqs).unwrap();
    (alone, batched.into_iter().map(trace).collect())
}

/// Twenty-four prompts: more than 12 lanes in flight, where llama.cpp's fast kernels change
/// tiles with the batch.
fn prompts() -> Vec<String> {
    let topics = [
        "the sea",
        "a cat",
        "the moon",
        "autumn",
        "tea",
        "a train",
        "bread",
        "rain",
        "a library",
        "snow",
        "a bridge",
        "the desert",
        "bees",
        "a violin",
        "a lighthouse",
        "chess",
        "a forest",
        "coffee",
        "a volcano",
        "the wind",
        "a clock",
        "salt",
        "a river",
        "the stars",
    ];
    topics
        .iter()
        .map(|t| {
            // A long tail of its own: the lanes' prompts are evaluated in chunks that share
            // llama_decode calls, cut where the batch's room ends.
            let facts: String = (1..=12)
                .map(|k| format!("Fact {k} about {t}: it is worth a sentence. "))
                .collect();
            format!("{facts}Write two sentences about {t}.")
        })
        .collect()
}

#[test]
fn the_batch_invariant_profile_decodes_a_batch_exactly_as_one_request_at_a_time() {
    let prompts = prompts();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let (alone, batched) = alone_and_batched("cpu-batch-invariant", &prompts, 16);
    for (i, (a, b)) in alone.iter().zip(&batched).enumerate() {
        assert!(!a.0.trim().is_empty(), "request {i}: empty");
        assert!(a.1.iter().all(Option::is_some), "request {i}: logprobs");
        assert_eq!(b, a, "request {i}: batched vs alone");
    }
}

#[test]
fn a_stream_starts_follow_ups_in_the_lane_they_extend_and_matches_one_at_a_time() {
    let model = smollm2();
    let first = vec![
        (0, GenerateRequest::new(chat(&model, "Name a colour."), 12)),
        (1, GenerateRequest::new(chat(&model, "Name an animal."), 12)),
        (2, GenerateRequest::new(chat(&model, "Name a city."), 12)),
    ];
    // Request 0's answer is followed by a second turn: a prompt that extends the first.
    let next_turn = |prompt: &str, answer: &str| {
        format!("{prompt}{answer}<|im_end|>\n<|im_start|>user\nAnd another one?<|im_end|>\n<|im_start|>assistant\n")
    };
    let mut s = model
        .session(&SessionOptions {
            sequences: Some(2),
            ..opts()
        })
        .unwrap();
    let prompts: Vec<String> = first.iter().map(|(_, r)| r.prompt.clone()).collect();
    let mut done: Vec<(u64, retroformer_llm::Generation)> = Vec::new();
    s.generate_stream(first.clone(), &mut |key, g| {
        let g = g.expect("every request of this stream runs");
        let follow = if key == 0 {
            vec![(
                10,
                GenerateRequest::new(next_turn(&prompts[0], &g.text), 12),
            )]
        } else {
            Vec::new()
        };
        done.push((key, g));
        follow
    })
    .unwrap();
    let mut keys: Vec<u64> = done.iter().map(|(k, _)| *k).collect();
    keys.sort();
    assert_eq!(keys, [0, 1, 2, 10]);
    let get = |k: u64| &done.iter().find(|(key, _)| *key == k).unwrap().1;
    // Each matches the same request alone (greedy), the follow-up included.
    let mut one = model.session(&opts()).unwrap();
    for (k, r) in &first {
        one.clear().unwrap();
        assert_same_start(
            &get(*k).text,
            &run(one.as_mut(), r).text,
            &format!("request {k}"),
        );
    }
    let follow = GenerateRequest::new(next_turn(&prompts[0], &get(0).text), 12);
    one.clear().unwrap();
    assert_same_start(
        &get(10).text,
        &run(one.as_mut(), &follow).text,
        "the follow-up",
    );
    // The follow-up reused its lane's cache: the first turn's prompt and answer.
    let first_turn = model.tokenize(&prompts[0], true, true).unwrap().len() as u32;
    assert!(
        get(10).stats.reused_tokens > first_turn,
        "reused {} of a prompt that extends {first_turn} cached tokens",
        get(10).stats.reused_tokens
    );
    // Afterwards the session works one request at a time as before.
    let again = run(s.as_mut(), &first[1].1);
    assert_same_start(&again.text, &get(1).text, "after the stream");
}

#[test]
fn a_lane_that_moves_down_when_a_lower_one_frees_up_goes_on_as_if_alone() {
    let model = smollm2();
    // Three lanes: the first request ends after two tokens while the other two go on, so the
    // third lane's request moves (its whole KV stream) into the first lane and continues there.
    let reqs = vec![
        GenerateRequest::new(chat(&model, "Name a colour."), 2),
        GenerateRequest::new(chat(&model, "Write one sentence about the sea."), 24),
        GenerateRequest::new(
            chat(
                &model,
                "Count from one to ten in words, separated by commas.",
            ),
            24,
        ),
    ];
    let mut b = model
        .session(&SessionOptions {
            sequences: Some(3),
            ..opts()
        })
        .unwrap();
    let batch = b.generate_batch(&reqs).unwrap();
    let mut one = model.session(&opts()).unwrap();
    for (i, r) in reqs.iter().enumerate() {
        one.clear().unwrap();
        let alone = run(one.as_mut(), r);
        assert_same_start(&batch[i].text, &alone.text, &format!("request {i}"));
    }
    assert_eq!(batch[0].stats.generated_tokens, 2);
    assert!(b.info().unwrap().lane_moves >= 1, "no lane moved");
    // The moved request's words after its first two tokens come from the moved cells.
    assert!(
        batch[2].text.split_whitespace().count() >= 6,
        "{:?}",
        batch[2].text
    );
}

#[test]
fn an_adapter_changes_the_output_and_unsetting_it_restores_the_base() {
    let model = smollm2();
    let dir = tempfile::tempdir().unwrap();
    let path = write_adapter(dir.path(), &model, 0.5);
    let adapter = model.load_adapter(&path).unwrap();
    let req = GenerateRequest::new(chat(&model, "Name a fruit."), 16);
    let mut s = model.session(&opts()).unwrap();
    let base = run(s.as_mut(), &req);

    s.set_adapter(Some((adapter.clone(), 1.0))).unwrap();
    let adapted = run(s.as_mut(), &req);
    // KV computed without the adapter is never reused under it.
    assert_eq!(adapted.stats.reused_tokens, 0);
    assert_ne!(adapted.text, base.text);

    s.set_adapter(Some((adapter.clone(), 0.25))).unwrap();
    let scaled = run(s.as_mut(), &req);
    assert_eq!(scaled.stats.reused_tokens, 0);
    assert_ne!(scaled.text, adapted.text);

    s.set_adapter(None).unwrap();
    let restored = run(s.as_mut(), &req);
    assert_eq!(restored.stats.reused_tokens, 0);
    assert_eq!(restored.text, base.text);

    // A fresh session that never saw the adapter agrees with the adapted output.
    let mut s2 = model.session(&opts()).unwrap();
    s2.set_adapter(Some((adapter, 1.0))).unwrap();
    assert_eq!(run(s2.as_mut(), &req).text, adapted.text);
}

#[test]
fn a_corrupt_or_mismatched_adapter_is_rejected_before_llama_cpp_sees_it() {
    let model = smollm2();
    let dir = tempfile::tempdir().unwrap();
    let good = write_adapter(dir.path(), &model, 0.1);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        model.load_adapter(&truncated),
        Err(LlmError::Gguf(_))
    ));

    let mut w = GgufWriter::lora_adapter("llama", 1.0);
    w.tensor_f32("blk.0.ffn_down.weight.lora_a", &[7, 2], &[0.0; 14])
        .tensor_f32("blk.0.ffn_down.weight.lora_b", &[2, 576], &[0.0; 1152]);
    let wrong = dir.path().join("wrong-shape.gguf");
    w.write(&wrong).unwrap();
    let e = model.load_adapter(&wrong).unwrap_err().to_string();
    assert!(
        e.contains("wrong-shape.gguf") && e.contains("lora_a"),
        "{e}"
    );

    // The base model file is not an adapter.
    let e = model.load_adapter(model.path()).unwrap_err().to_string();
    assert!(e.contains("general.type"), "{e}");
}

#[test]
fn an_adapter_of_another_base_or_of_no_recorded_base_is_refused_unless_asked_for() {
    let model = smollm2();
    let dir = tempfile::tempdir().unwrap();
    let good = write_adapter(dir.path(), &model, 0.1);
    let bytes = std::fs::read(&good).unwrap();
    let ours = model.sha256().unwrap().to_string();
    let with_base = |name: &str, base: &str| {
        // Same length, so the header's layout is unchanged: only the recorded base differs.
        let p = dir.path().join(name);
        let mut patched = bytes.clone();
        let at = find(&bytes, ours.as_bytes()).expect("the base is recorded");
        patched[at..at + base.len()].copy_from_slice(base.as_bytes());
        std::fs::write(&p, &patched).unwrap();
        p
    };
    let other = with_base("other.gguf", &"0".repeat(64));
    let e = model.load_adapter(&other).unwrap_err().to_string();
    assert!(e.contains("other.gguf") && e.contains("00000000"), "{e}");
    // An empty base reads as none recorded.
    let mut none = GgufWriter::lora_adapter("llama", 1.0);
    none.kv(BASE_SHA256, "")
        .tensor_f32("blk.0.ffn_down.weight.lora_a", &[1536, 2], &[0.0; 3072])
        .tensor_f32("blk.0.ffn_down.weight.lora_b", &[2, 576], &[0.0; 1152]);
    let unrecorded = dir.path().join("unrecorded.gguf");
    none.write(&unrecorded).unwrap();
    let e = model.load_adapter(&unrecorded).unwrap_err().to_string();
    assert!(
        e.contains("records no base") && e.contains("--any-base"),
        "{e}"
    );
    let opts = LoadOptions {
        adapter_base: retroformer_gguf::BasePolicy::AllowUnrecorded,
        ..LoadOptions::new(TargetProfile::load("cpu").unwrap())
    };
    let lenient = LlamaModel::load(model.path(), opts).unwrap();
    lenient.load_adapter(&unrecorded).unwrap();
    assert!(
        lenient.load_adapter(&other).is_err(),
        "another base stays refused"
    );
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn two_models_stay_resident_and_interleave() {
    let actor = smollm2();
    let retro = retroformer_e2e::load(&retroformer_e2e::smollm2_path());
    let mut a = actor.session(&opts()).unwrap();
    let mut r = retro.session(&opts()).unwrap();
    let q = GenerateRequest::new(chat(&actor, "What is two plus two?"), 12);
    let a1 = run(a.as_mut(), &q);
    let r1 = run(r.as_mut(), &q);
    let a2 = run(a.as_mut(), &q);
    assert_eq!(a1.text, r1.text);
    assert_eq!(a1.text, a2.text);
    assert_eq!(a2.stats.evaluated_tokens, 1);
}

#[test]
fn a_prompt_longer_than_the_context_is_a_clear_error_and_the_session_survives() {
    let model = smollm2();
    let mut s = model
        .session(&SessionOptions {
            context_size: Some(256),
            threads: Some(1),
            ..Default::default()
        })
        .unwrap();
    let long = "word ".repeat(400);
    match s.generate(&GenerateRequest::new(long, 4), &mut |_| true) {
        Err(LlmError::PromptTooLong {
            prompt_tokens,
            context_size,
        }) => {
            assert!(prompt_tokens > 256);
            assert_eq!(context_size, 256);
        }
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
    let ok = run(s.as_mut(), &GenerateRequest::new("Hello", 4));
    assert_eq!(ok.stats.generated_tokens, 4);
}

#[test]
fn sampling_with_a_seed_is_reproducible_and_cancellation_stops_early() {
    let model = smollm2();
    let mut req = GenerateRequest::new(chat(&model, "Tell me a story."), 24);
    req.sampling.temperature = 0.9;
    req.sampling.top_k = 40;
    req.sampling.top_p = 0.95;
    req.sampling.seed = 42;
    let a = run(model.session(&opts()).unwrap().as_mut(), &req);
    let b = run(model.session(&opts()).unwrap().as_mut(), &req);
    assert_eq!(a.text, b.text);

    let mut seen = 0;
    let g = model
        .session(&opts())
        .unwrap()
        .generate(&req, &mut |_| {
            seen += 1;
            seen < 3
        })
        .unwrap();
    assert_eq!(g.finish, FinishReason::Cancelled);
    assert!(g.stats.generated_tokens < 24);

    req.sampling.top_p = 1.5;
    let e = model
        .session(&opts())
        .unwrap()
        .generate(&req, &mut |_| true)
        .unwrap_err();
    assert!(e.to_string().contains("top_p"), "{e}");
}

#[test]
fn a_panicking_callback_panics_in_the_caller_and_the_session_survives() {
    let model = smollm2();
    let mut s = model.session(&opts()).unwrap();
    let req = GenerateRequest::new(chat(&model, "Say something."), 8);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.generate(&req, &mut |_| panic!("callback failed"))
    }));
    let payload = r.expect_err("the panic reaches the caller");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"callback failed"));
    let g = s.generate(&req, &mut |_| true).unwrap();
    assert!(g.stats.generated_tokens > 0);
}

#[test]
fn out_of_range_threads_context_and_penalty_window_are_clear_errors() {
    let model = smollm2();
    let e = model
        .session(&SessionOptions {
            context_size: Some(1 << 30),
            threads: Some(1),
            ..Default::default()
        })
        .err()
        .expect("a billion-token context is refused");
    assert!(e.to_string().contains("context_size"), "{e}");
    // The largest context for each of the most sequences: ~3 TB of KV cache, refused before
    // llama.cpp allocates it.
    let e = model
        .session(&SessionOptions {
            context_size: Some(1 << 20),
            threads: Some(1),
            sequences: Some(retroformer_llm::MAX_SEQUENCES),
        })
        .err()
        .expect("a KV cache past the memory is refused");
    assert!(e.to_string().contains("MiB of KV cache"), "{e}");
    let e = model
        .session(&SessionOptions {
            context_size: Some(512),
            threads: Some(0),
            ..Default::default()
        })
        .err()
        .expect("zero threads are refused");
    assert!(e.to_string().contains("threads"), "{e}");
    // Far more threads than cores are clamped, not passed to ggml.
    let mut s = model
        .session(&SessionOptions {
            context_size: Some(512),
            threads: Some(100_000),
            ..Default::default()
        })
        .unwrap();
    assert!(s.info().unwrap().threads <= 512);
    let mut req = GenerateRequest::new("Hello", 2);
    req.sampling.repeat_penalty = 1.1;
    req.sampling.repeat_last_n = i32::MAX;
    let e = s.generate(&req, &mut |_| true).unwrap_err();
    assert!(e.to_string().contains("repeat_last_n"), "{e}");
}

#[test]
fn a_text_longer_than_the_tokenizer_takes_is_refused_with_its_length() {
    let model = smollm2();
    let long = "ab ".repeat(100_000);
    let err = model.tokenize(&long, true, false).unwrap_err();
    assert!(matches!(err, LlmError::Tokenize(_)), "{err}");
    assert!(err.to_string().contains("300000 bytes"), "{err}");
    let mut s = model.session(&SessionOptions::default()).unwrap();
    let req = GenerateRequest::new(long, 1);
    assert!(s.generate(&req, &mut |_| true).is_err());
    // Just under the cap is tokenised (and then too long for the context, which is another error).
    let under = "ab ".repeat(80_000);
    assert!(model.tokenize(&under, true, false).unwrap().len() > 4096);
}

fn with_kv(kv: retroformer_llm::target::KvType) -> retroformer_llama::LlamaModel {
    let profile = retroformer_llm::target::TargetProfile::load("cpu")
        .unwrap()
        .with_kv_type(kv, "test")
        .unwrap();
    retroformer_llama::LlamaModel::load(
        &retroformer_e2e::smollm2_path(),
        retroformer_llama::LoadOptions::new(profile),
    )
    .unwrap()
}

#[test]
fn quantized_kv_caches_generate_the_same_start_as_f16() {
    use retroformer_llm::target::KvType;
    let f16 = smollm2();
    let req = GenerateRequest::new(chat(&f16, "Write one sentence about the sea."), 24);
    let base = run(f16.session(&opts()).unwrap().as_mut(), &req);
    for kv in [KvType::Q8_0, KvType::Q4_0] {
        let m = with_kv(kv);
        let g = run(m.session(&opts()).unwrap().as_mut(), &req);
        assert_same_start(&g.text, &base.text, kv.name());
    }
}

#[test]
fn a_kv_type_whose_block_does_not_divide_the_head_size_is_refused_naming_the_field() {
    use retroformer_llm::target::{KvType, TargetProfile};
    // The tiny model's heads are 16 wide; q8_0 and q4_0 store blocks of 32.
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("tiny.gguf");
    retroformer_gguf::TinyModel::llama()
        .writer()
        .write(&path)
        .unwrap();
    let profile = TargetProfile::load("cpu")
        .unwrap()
        .with_kv_type(KvType::Q4_0, "test")
        .unwrap();
    let m =
        retroformer_llama::LlamaModel::load(&path, retroformer_llama::LoadOptions::new(profile))
            .unwrap();
    let e = m.session(&opts()).err().expect("refused");
    let msg = e.to_string();
    assert!(
        msg.contains("kv_type") && msg.contains("q4_0") && msg.contains("16"),
        "{msg}"
    );
}
