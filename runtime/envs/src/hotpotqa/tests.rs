use super::*;

fn page(title: &str, sentences: &[&str]) -> Page {
    Page {
        title: title.into(),
        sentences: sentences.iter().map(|s| s.to_string()).collect(),
    }
}

fn store() -> Docstore {
    Docstore::new([
        page(
            "Milhouse Van Houten",
            &[
                "Milhouse Mussolini Van Houten is a recurring character in the Fox animated television series The Simpsons.",
                " He is voiced by Pamela Hayden.",
                " Matt Groening named the character after President Richard Nixon's middle name.",
            ],
        ),
        page("Richard Nixon", &["Richard Milhous Nixon was the 37th President of the United States."]),
        page("The Simpsons", &["The Simpsons is an American animated sitcom."]),
        page("Nixon (film)", &["Nixon is a 1995 film."]),
    ])
}

#[test]
fn search_returns_the_paragraph_of_an_exact_title() {
    let s = store();
    let mut e = Explorer::new(&s);
    assert_eq!(
        e.search("Richard Nixon"),
        "Richard Milhous Nixon was the 37th President of the United States."
    );
    // Falls back to a case-insensitive match.
    assert_eq!(
        e.search("the simpsons"),
        "The Simpsons is an American animated sitcom."
    );
    // Sentences are joined as written (their leading spaces separate them).
    assert!(e
        .search("Milhouse Van Houten")
        .contains("The Simpsons. He is voiced by Pamela Hayden. Matt Groening"));
}

#[test]
fn a_failed_search_lists_similar_titles_as_a_python_list() {
    let s = store();
    let mut e = Explorer::new(&s);
    let obs = e.search("President Nixon");
    assert!(
        obs.starts_with("Could not find [President Nixon]. Similar: ['"),
        "{obs}"
    );
    assert!(
        obs.contains("'Nixon (film)'") && obs.contains("'Richard Nixon'"),
        "{obs}"
    );
    assert!(!obs.contains("Simpsons"), "{obs}");
    assert_eq!(e.search("zzzz"), "Could not find [zzzz]. Similar: []");
    assert_eq!(python_list(&["it's", "a'b\"c"]), "[\"it's\", 'a\\'b\"c']");
}

#[test]
fn a_title_without_its_parenthetical_finds_the_one_page_with_it() {
    let s = store();
    let mut e = Explorer::new(&s);
    assert_eq!(e.search("Nixon"), "Nixon is a 1995 film.");
    assert_eq!(
        e.search("Richard Nixon (president)"),
        "Richard Milhous Nixon was the 37th President of the United States."
    );
    let two = Docstore::new([
        page("Rob Thomas (musician)", &["A singer."]),
        page("Rob Thomas (writer)", &["A writer."]),
    ]);
    let mut e = Explorer::new(&two);
    let obs = e.search("Rob Thomas");
    assert!(obs.starts_with("Could not find [Rob Thomas]."), "{obs}");
    assert!(obs.contains("'Rob Thomas (musician)'") && obs.contains("'Rob Thomas (writer)'"));
}

#[test]
fn titles_that_share_only_stopwords_with_a_query_are_not_similar() {
    let s = store();
    let mut e = Explorer::new(&s);
    let obs = e.search("The Wire of the Night");
    assert_eq!(obs, "Could not find [The Wire of the Night]. Similar: []");
}

#[test]
fn lookup_walks_the_matching_sentences_then_says_no_more() {
    let s = store();
    let mut e = Explorer::new(&s);
    assert_eq!(e.lookup("nixon"), None, "no page found yet");
    e.search("Milhouse Van Houten");
    assert_eq!(
        e.lookup("the").as_deref(),
        Some("(Result 1/2) Milhouse Mussolini Van Houten is a recurring character in the Fox animated television series The Simpsons.")
    );
    assert_eq!(
        e.lookup("the").as_deref(),
        Some("(Result 2/2) Matt Groening named the character after President Richard Nixon's middle name.")
    );
    assert_eq!(e.lookup("the").as_deref(), Some("No More Results"));
    // A new keyword starts over; case does not matter.
    assert_eq!(
        e.lookup("PAMELA").as_deref(),
        Some("(Result 1/1) He is voiced by Pamela Hayden.")
    );
    assert_eq!(e.lookup("kangaroo").as_deref(), Some("No Results"));
    // A failed search forgets the page.
    e.search("nothing like it");
    assert_eq!(e.lookup("the"), None);
}

#[test]
fn actions_parse_like_reflexions_regex() {
    assert_eq!(
        parse_action("Search[Richard Nixon]"),
        Some(("Search", "Richard Nixon"))
    );
    assert_eq!(parse_action("Finish[yes]\n"), Some(("Finish", "yes")));
    // Greedy: the argument runs to the last bracket.
    assert_eq!(parse_action("Lookup[a] b]"), Some(("Lookup", "a] b")));
    assert_eq!(parse_action("Search[]"), None);
    assert_eq!(parse_action("Search Nixon"), None);
    assert_eq!(parse_action("Search[Nixon"), None);
    assert_eq!(parse_action(" Search[Nixon]"), None);
    assert_eq!(parse_action("Search[a\nb]"), None);
    assert_eq!(parse_action("[Nixon]"), None);
}

#[test]
fn words_after_an_action_on_its_line_are_ignored() {
    assert_eq!(
        parse_action("Finish[VIVA Media AG] END OF EXAMPLES"),
        Some(("Finish", "VIVA Media AG"))
    );
    assert_eq!(parse_action("Search[Nixon] now"), Some(("Search", "Nixon")));
    assert_eq!(parse_action("Finish[] yes"), None);
    assert_eq!(parse_action("Finish[a\nb] c"), None);
}

#[test]
fn squad_normalisation_matches_the_published_function() {
    // Cases checked against the SQuAD v1.1 evaluation script's normalize_answer.
    let cases = [
        ("The Beatles", "beatles"),
        ("  A   cat, an apple!  ", "cat apple"),
        ("theory of the  mind", "theory of mind"),
        (
            "Gesellschaft mit beschränkter Haftung",
            "gesellschaft mit beschränkter haftung",
        ),
        ("Jonny\" Craig", "jonny craig"),
        ("U.S.A.", "usa"),
        ("a", ""),
        ("the–end", "–end"),
        ("2 March 1972", "2 march 1972"),
        ("Bath, Maine", "bath maine"),
    ];
    for (input, want) in cases {
        assert_eq!(normalize_answer(input), want, "input {input:?}");
    }
    assert!(exact_match("the Beatles.", "Beatles"));
    assert!(!exact_match("Beatle", "Beatles"));
}

#[test]
fn an_episode_answers_with_reflexions_observation_strings() {
    let q = milhouse();
    let s = Docstore::for_question(&q);
    let mut ep = Episode::new(&q, &s);
    let r = ep.step("Search[Milhouse Van Houten]");
    assert_eq!(
        r.observation,
        "Milhouse is a character. He is voiced by Pamela Hayden."
    );
    assert!(!r.done);
    assert_eq!(
        ep.step("Lookup[voiced]").observation,
        "(Result 1/1) He is voiced by Pamela Hayden."
    );
    assert_eq!(ep.step("Think[hmm]").observation, INVALID_ACTION);
    assert_eq!(ep.step("I think it is Pamela").observation, INVALID_ACTION);
    let r = ep.step("Finish[pamela hayden]");
    assert_eq!(r.observation, ANSWER_CORRECT);
    assert!(r.done && ep.success());
    assert!((r.reward - 1.0).abs() < 1e-6);

    let mut ep = Episode::new(&q, &s);
    assert_eq!(ep.step("Lookup[voiced]").observation, LOOKUP_WITHOUT_PAGE);
    let r = ep.step("Finish[Nancy Cartwright]");
    assert_eq!(r.observation, ANSWER_INCORRECT);
    assert!(r.done && !ep.success());
    assert_eq!(r.reward, 0.0);
    assert_eq!(
        q.supporting_context(),
        vec!["He is voiced by Pamela Hayden.".to_string()]
    );
}

#[test]
fn a_malformed_row_is_reported_with_its_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.jsonl");
    let good = r#"{"id":"a","question":"q","answer":"x","type":"bridge","level":"easy","supporting_facts":{"title":["T"],"sent_id":[0]},"context":{"title":["T"],"sentences":[["s."]]}}"#;
    let mismatched = good.replace(
        r#""title":["T"],"sentences""#,
        r#""title":["T","U"],"sentences""#,
    );
    std::fs::write(&p, format!("{good}\n\n{good}\n{mismatched}\n")).unwrap();
    let e = load(&p).unwrap_err().to_string();
    assert!(
        e.contains("bad.jsonl:4") && e.contains("2 titles but 1 sentence lists"),
        "{e}"
    );
    std::fs::write(&p, format!("{good}\n{{not json\n")).unwrap();
    let e = load(&p).unwrap_err().to_string();
    assert!(e.contains("bad.jsonl:2"), "{e}");
    std::fs::write(&p, format!("{good}\n")).unwrap();
    assert_eq!(load(&p).unwrap().len(), 1);
}
