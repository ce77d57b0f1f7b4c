use super::*;
use retroformer_llm::scripted::ScriptedModel;

fn file(lines: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("d.jsonl");
    std::fs::write(&p, lines.join("\n")).unwrap();
    (d, p)
}

#[test]
fn the_three_text_shapes_become_prompt_response_pairs() {
    let (_d, p) = file(&[
        r#"{"prompt": "P", "response": "R", "reward": 0.5}"#,
        "",
        r#"{"task_id": "t", "trial": 0, "prompt": "X\nReflection:", "reflection": " plan ", "rating": 1.0}"#,
        r#"{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], "reward": 1.0, "weight": 2.5}"#,
    ]);
    let ex = read_examples(&p, &ScriptedModel::new(Vec::<String>::new())).unwrap();
    assert_eq!(ex.len(), 3);
    assert_eq!(
        (ex[0].prompt.as_str(), ex[0].response.as_str(), ex[0].reward),
        ("P", "R", 0.5)
    );
    assert!(!ex[0].parse_special);
    assert_eq!(ex[1].response, " plan\n\n");
    assert_eq!(ex[1].reward, 1.0);
    assert!(
        !ex[1].parse_special,
        "as the runtime's reflector reads it by default"
    );
    assert_eq!(ex[2].prompt, "<user>Q</user>\n<assistant>");
    assert_eq!(ex[2].response, "A</assistant>\n");
    assert_eq!(ex[2].weight, 2.5);
    assert!(ex[2].parse_special);
}

#[test]
fn a_segments_example_puts_the_loss_on_its_loss_segments_only_even_when_cut_to_fit() {
    let (_d, p) = file(&[
        r#"{"segments": [{"text": "a b c", "loss": false}, {"text": " go x", "loss": true}, {"text": " you see y z", "loss": false}, {"text": " take y", "loss": true}], "weight": 2.0}"#,
    ]);
    let m = ScriptedModel::new(Vec::<String>::new());
    let ex = read_examples(&p, &m).unwrap();
    assert_eq!(ex[0].prompt, "a b c");
    assert_eq!(ex[0].response, " go x you see y z take y");
    assert_eq!(ex[0].weight, 2.0);
    let t = tokenize(&ex[0], &m, 100).unwrap();
    let n = |s: &str| m.tokenize(s, false, false).unwrap().len();
    assert_eq!(t.prompt_len, n("a b c"));
    let mut want = vec![true; n(" go x")];
    want.extend(vec![false; n(" you see y z")]);
    want.extend(vec![true; n(" take y")]);
    assert_eq!(t.mask.as_deref(), Some(&want[..]));
    assert_eq!(t.response_len(), want.len());
    // Cut to fit: the end of the prompt, the response's start, the mask cut with it.
    let short = tokenize(&ex[0], &m, t.prompt_len + 3).unwrap();
    assert_eq!(short.tokens.len(), t.prompt_len + 3);
    let kept = short.response_len();
    assert_eq!(short.mask.as_deref(), Some(&want[..kept]));
    // The other shapes carry no mask.
    let plain = tokenize(
        &example(r#"{"prompt": "P", "response": "R"}"#, Some(&m)).unwrap(),
        &m,
        9,
    );
    assert_eq!(plain.unwrap().mask, None);
}

#[test]
fn a_segments_example_without_a_prompt_or_without_a_loss_segment_is_refused() {
    let m = ScriptedModel::new(Vec::<String>::new());
    for (line, why) in [
        (r#"{"segments": []}"#, "empty"),
        (
            r#"{"segments": [{"text": "a", "loss": true}]}"#,
            "first segment",
        ),
        (
            r#"{"segments": [{"text": "a", "loss": false}, {"text": "b", "loss": false}]}"#,
            "no segment after the first",
        ),
        (r#"{"segments": [{"text": "a"}]}"#, "loss"),
    ] {
        let err = example(line, Some(&m)).unwrap_err();
        assert!(err.contains(why), "{line}: {err}");
    }
}

#[test]
fn a_cut_keeps_half_the_length_for_the_prompt_its_first_token_and_the_responses_start() {
    let ex = Example {
        prompt: String::new(),
        response: String::new(),
        reward: 1.0,
        weight: 1.0,
        parse_special: false,
        ids: None,
        segments: Vec::new(),
        line: 0,
    };
    let seq = |p: i32, r: i32| -> Vec<i32> { (0..p).chain(1000..1000 + r).collect() };
    // A long response: the whole short prompt stays, the response's tail goes.
    let t = fit(seq(10, 100), 10, Some(vec![true; 100]), 20, &ex);
    assert_eq!(t.prompt_len, 10);
    assert_eq!(
        t.tokens,
        seq(10, 10).iter().map(|&x| x as u32).collect::<Vec<_>>()
    );
    assert_eq!(t.mask, Some(vec![true; 10]));
    // A long prompt: its first token and its end, then the whole short response.
    let t = fit(seq(100, 5), 100, None, 20, &ex);
    assert_eq!(t.prompt_len, 15);
    let want: Vec<u32> = [0].into_iter().chain(86..100).chain(1000..1005).collect();
    assert_eq!(t.tokens, want);
    // Both long: half each.
    let t = fit(seq(100, 100), 100, None, 20, &ex);
    assert_eq!((t.prompt_len, t.tokens.len()), (10, 20));
    assert_eq!(t.tokens[10], 1000, "the response starts where it did");
}

#[test]
fn a_line_is_checked_without_a_model_as_the_trainer_would_read_it() {
    for ok in [
        "",
        r#"{"prompt": "P", "response": "R"}"#,
        r#"{"prompt": "P", "reflection": "y", "rating": 0.5}"#,
        r#"{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "reward": 1.0, "weight": 1.0}"#,
        r#"{"segments": [{"text": "a", "loss": false}, {"text": "b", "loss": true}]}"#,
    ] {
        assert_eq!(check_line(ok), Ok(()), "{ok}");
    }
    for (bad, why) in [
        (r#"{"i": 1}"#, "expected"),
        (r#"{"prompt": "P", "response": ""}"#, "empty"),
        (
            r#"{"prompt": "P", "response": "R", "weight": -1}"#,
            "weight",
        ),
        (
            r#"{"messages": [{"role": "user", "content": "q"}], "reward": 1.0, "weight": 1.0}"#,
            "assistant",
        ),
        ("not json", "expected"),
    ] {
        let e = check_line(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn a_chat_rating_record_is_templated_by_the_trainers_model_and_keeps_its_rating() {
    // As HumanEval writes it: `prompt` in the generating model's template, `messages`
    // template-free, the reflection as the last assistant turn.
    let (_d, p) = file(&[
        r#"{"task_id": "HumanEval/0", "trial": 0, "prompt": "<|im_start|>user\nI<|im_end|>\n<|im_start|>assistant\n", "reflection": "Use +.", "rating": 0.5, "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "I"}, {"role": "assistant", "content": "Use +."}]}"#,
    ]);
    let ex = read_examples(&p, &ScriptedModel::new(Vec::<String>::new())).unwrap();
    assert_eq!(
        ex[0].prompt,
        "<system>S</system>\n<user>I</user>\n<assistant>"
    );
    assert_eq!(ex[0].response, "Use +.</assistant>\n");
    assert_eq!(ex[0].reward, 0.5);
    assert!(ex[0].parse_special);
}

#[test]
fn a_captured_turn_trains_on_its_own_token_ids_only_under_the_model_they_belong_to() {
    let line = r#"{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], "reward": 1.0, "tokens": {"model_sha256": "base", "prompt": [5, 6, 7], "completion": [8, 2]}}"#;
    let (_d, p) = file(&[line, line]);
    let model = ScriptedModel::new(Vec::<String>::new());
    let mut ex = read_examples(&p, &model).unwrap();
    assert_eq!(keep_ids_of(&mut ex[..1], "base"), 0);
    assert_eq!(keep_ids_of(&mut ex[1..], "other"), 1);
    let ids = tokenize(&ex[0], &model, 64).unwrap();
    assert_eq!((ids.tokens, ids.prompt_len), (vec![5, 6, 7, 8, 2], 3));
    let text = tokenize(&ex[1], &model, 64).unwrap();
    assert_ne!(
        text.tokens,
        vec![5, 6, 7, 8, 2],
        "another model's ids are not used"
    );
    let cut = tokenize(&ex[0], &model, 3).unwrap();
    assert_eq!((cut.tokens, cut.prompt_len), (vec![7, 8, 2], 1));
}

#[test]
fn an_example_that_fails_to_tokenise_is_named_by_its_file_and_line() {
    // Whitespace tokenises to nothing under the scripted model; the blank line counts.
    let (_d, p) = file(&[
        r#"{"prompt": "P", "response": "R"}"#,
        "",
        r#"{"prompt": "P", "response": " "}"#,
    ]);
    let model = ScriptedModel::new(Vec::<String>::new());
    let ex = read_examples(&p, &model).unwrap();
    assert_eq!((ex[0].line, ex[1].line), (1, 3));
    assert_eq!(tokenize_all(&ex[..1], &model, 64, &p).unwrap().len(), 1);
    let err = tokenize_all(&ex, &model, 64, &p).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}:3: ", p.display())), "{err}");
    assert!(err.contains("tokenises to nothing"), "{err}");
}

#[test]
fn every_malformed_line_is_named_in_one_pass_each_on_a_line_of_its_own() {
    let (_d, p) = file(&[
        "not json",
        r#"{"prompt": "P", "response": "R"}"#,
        r#"{"prompt": "P", "response": ""}"#,
        r#"{"prompt": "P", "response": " "}"#,
        r#"{"prompt": "P", "response": " "}"#,
    ]);
    let model = ScriptedModel::new(Vec::<String>::new());
    let err = read_examples(&p, &model).unwrap_err();
    let TrainerError::DataLines { lines, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 3]);
    let text = err.to_string();
    let named: Vec<&str> = text.lines().collect();
    assert_eq!(named.len(), 2, "{text}");
    assert!(
        named[1].starts_with(&format!("{}:3: ", p.display())),
        "{text}"
    );
    // The parsable lines are read; the two that tokenise to nothing are both named.
    std::fs::write(&p, [r#"{"prompt": "P", "response": " "}"#; 3].join("\n")).unwrap();
    let ex = read_examples(&p, &model).unwrap();
    let err = tokenize_all(&ex, &model, 64, &p).unwrap_err();
    assert!(
        matches!(&err, TrainerError::DataLines { lines, .. } if lines.len() == 3),
        "{err:?}"
    );
}

#[test]
fn a_file_of_bad_lines_is_named_up_to_the_cap_and_crlf_lines_read_as_plain_ones() {
    let (_d, p) = file(&vec!["not json"; MAX_BAD_LINES + 50]);
    let model = ScriptedModel::new(Vec::<String>::new());
    let err = read_examples(&p, &model).unwrap_err();
    let TrainerError::DataLines { lines, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(lines.len(), MAX_BAD_LINES);
    assert_eq!(lines.last().map(|l| l.0), Some(MAX_BAD_LINES));
    let line = r#"{"prompt": "P", "response": "R"}"#;
    std::fs::write(&p, format!("{line}\r\n\r\n{line}\r\n")).unwrap();
    let ex = read_examples(&p, &model).unwrap();
    assert_eq!(ex.iter().map(|e| e.line).collect::<Vec<_>>(), [1, 3]);
}

#[test]
fn the_sft_set_keeps_the_reflections_rated_at_or_above_the_threshold() {
    let (_d, p) = file(&[
        r#"{"prompt": "x1", "reflection": "y1", "rating": 1.0}"#,
        r#"{"prompt": "x2", "reflection": "y2", "rating": 0.0}"#,
        r#"{"prompt": "x3", "reflection": "y3", "rating": -1.0}"#,
        r#"{"prompt": "x4", "reflection": "y4", "rating": 0.5}"#,
    ]);
    let all = read_examples(&p, &ScriptedModel::new(Vec::<String>::new())).unwrap();
    let kept = with_min_reward(all.clone(), 0.5, &p).unwrap();
    let prompts: Vec<&str> = kept.iter().map(|e| e.prompt.as_str()).collect();
    assert_eq!(prompts, ["x1", "x4"]);
    assert_eq!(with_min_reward(all.clone(), -1.0, &p).unwrap().len(), 4);
    let err = with_min_reward(all, 2.0, &p).unwrap_err().to_string();
    assert!(err.contains("--min-reward"), "{err}");
}

#[test]
fn malformed_lines_are_named_by_line_number() {
    for (line, needle) in [
        (r#"{"prompt": "P"}"#, "expected"),
        (r#"{"prompt": "P", "reflection": "y"}"#, "needs \"rating\""),
        (
            r#"{"messages": [{"role": "user", "content": "Q"}]}"#,
            "assistant turn",
        ),
        (r#"{"prompt": "P", "response": ""}"#, "response is empty"),
        (
            r#"{"prompt": "P", "response": "R", "weight": -1}"#,
            "weight",
        ),
        ("not json", "expected"),
    ] {
        let (_d, p) = file(&[r#"{"prompt": "P", "response": "R"}"#, line]);
        let err = read_examples(&p, &ScriptedModel::new(Vec::<String>::new()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("d.jsonl:2:"), "{err}");
        assert!(err.contains(needle), "{line}: {err}");
    }
}
