//! HotPotQA against data: the SQuAD normalisation fixture (expected values computed by the
//! published Python function) and the real 100-question sample bundled with the environments.

use retroformer_e2e::data_dir;
use retroformer_envs::hotpotqa::{self, Docstore, Episode, Explorer};

#[test]
fn normalisation_agrees_with_the_python_reference_on_every_fixture_row() {
    let text = std::fs::read_to_string(data_dir().join("hotpotqa/normalize.jsonl")).unwrap();
    let mut checked = 0;
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (Some(input), Some(want)) = (v["input"].as_str(), v["expected"].as_str()) else {
            continue;
        };
        assert_eq!(
            hotpotqa::normalize_answer(input),
            want,
            "line {}: {input:?}",
            i + 1
        );
        checked += 1;
    }
    assert_eq!(checked, 200);
}

fn sample() -> Vec<hotpotqa::Question> {
    hotpotqa::load(hotpotqa::source(None)).unwrap()
}

#[test]
fn the_bundled_sample_loads_and_every_supporting_fact_can_be_found() {
    let qs = sample();
    assert_eq!(qs.len(), 100);
    assert!(qs.iter().all(|q| q.pages.len() == 10));
    let global = Docstore::global(&qs);
    assert_eq!(global.len(), 1000);
    for q in &qs {
        let local = Docstore::for_question(q);
        for (title, sent) in &q.supporting_facts {
            let page = local
                .find(title)
                .unwrap_or_else(|| panic!("{}: no page {title}", q.id));
            let sentence = page.sentences[*sent].trim();
            // Searching the title shows a paragraph containing the supporting sentence.
            let mut e = Explorer::new(&global);
            assert!(e.search(title).contains(sentence), "{}: {title}", q.id);
        }
        assert_eq!(
            q.supporting_context().len(),
            q.supporting_facts.len(),
            "{}",
            q.id
        );
    }
}

#[test]
fn finishing_with_the_gold_answer_is_correct_for_every_question() {
    let qs = sample();
    let global = Docstore::global(&qs);
    for q in &qs {
        let mut ep = Episode::new(q, &global);
        let r = ep.step(&format!("Finish[{}]", q.answer));
        assert!(r.done && ep.success(), "{}: {:?}", q.id, q.answer);
    }
}
