use super::*;

fn world(json: &str) -> (Layout, State, Task) {
    let spec: WorldSpec = serde_json::from_str(json).expect("json");
    Layout::build(&spec).expect("world")
}

fn run(l: &Layout, s: &mut State, action: &str) -> String {
    let mut out = String::new();
    match l.parse(action) {
        Some(a) if l.apply(s, a) => l.render(s, a, &mut out),
        _ => out.push_str(NOTHING_HAPPENS),
    }
    out
}

const SMALL: &str = r#"{"receptacles": [
    {"name": "cabinet 2", "openable": true, "contents": ["spraybottle 2", "candle 1"]},
    {"name": "cabinet 1", "contents": ["soapbottle 1", "cloth 1", "soapbar 1"]},
    {"name": "toilet 1", "contents": ["soapbottle 2"]},
    {"name": "cabinet 10"}
], "task": "put some spraybottle on toilet."}"#;

#[test]
fn lists_follow_alfworlds_separators_and_order() {
    let mut s = String::new();
    write_list(&mut s, true, std::iter::empty());
    assert_eq!(s, "nothing");
    s.clear();
    write_list(&mut s, true, ["x 1"].into_iter());
    assert_eq!(s, "a x 1");
    s.clear();
    write_list(&mut s, true, ["x 1", "y 2"].into_iter());
    assert_eq!(s, "a x 1, and a y 2");
    s.clear();
    write_list(&mut s, false, ["x 1", "y 2", "z 3"].into_iter());
    assert_eq!(s, "x 1, y 2, and z 3");
    let (l, _, task) = world(SMALL);
    assert_eq!(
        l.intro(&task),
        "You are in the middle of a room. Looking quickly around you, you see a cabinet 10, a cabinet 2, \
         a cabinet 1, and a toilet 1.\nYour task is to: put some spraybottle on toilet."
    );
}

#[test]
fn the_react_put_0_transitions_give_the_prompt_files_observations() {
    let (l, mut s, _) = world(SMALL);
    assert_eq!(
        run(&l, &mut s, "go to cabinet 1"),
        "On the cabinet 1, you see a cloth 1, a soapbar 1, and a soapbottle 1."
    );
    assert_eq!(
        run(&l, &mut s, "go to cabinet 2"),
        "The cabinet 2 is closed."
    );
    assert_eq!(
        run(&l, &mut s, "open cabinet 2"),
        "You open the cabinet 2. The cabinet 2 is open. In it, you see a candle 1, and a spraybottle 2."
    );
    assert_eq!(
        run(&l, &mut s, "take spraybottle 2 from cabinet 2"),
        "You pick up the spraybottle 2 from the cabinet 2."
    );
    assert_eq!(
        run(&l, &mut s, "go to toilet 1"),
        "On the toilet 1, you see a soapbottle 2."
    );
    assert_eq!(
        run(&l, &mut s, "put spraybottle 2 in/on toilet 1"),
        "You put the spraybottle 2 in/on the toilet 1."
    );
}

#[test]
fn bad_names_duplicates_and_bad_tasks_are_errors() {
    let bad =
        |json: &str| Layout::build(&serde_json::from_str::<WorldSpec>(json).expect("json")).err();
    assert_eq!(
        bad(r#"{"receptacles": [{"name": "Cabinet 1"}], "task": "put a x in cabinet"}"#),
        Some(WorldError::BadName("Cabinet 1".into()))
    );
    assert_eq!(
        bad(r#"{"receptacles": [{"name": "cabinet 01"}], "task": "put a x in cabinet"}"#),
        Some(WorldError::BadName("cabinet 01".into()))
    );
    assert_eq!(
        bad(
            r#"{"receptacles": [{"name": "a 1", "contents": ["x 1"]}, {"name": "b 1", "contents": ["x 1"]}], "task": "put a x in b"}"#
        ),
        Some(WorldError::Duplicate("x 1".into()))
    );
    assert_eq!(
        bad(
            r#"{"receptacles": [{"name": "a 1", "with": "b 1"}, {"name": "b 1"}], "task": "put a x in b"}"#
        ),
        Some(WorldError::UnknownWith {
            name: "a 1".into(),
            with: "b 1".into()
        })
    );
    assert_eq!(
        bad(r#"{"receptacles": [{"name": "a 1", "open": true}], "task": "put a x in a"}"#),
        Some(WorldError::OpenNotOpenable("a 1".into()))
    );
    assert_eq!(
        bad(r#"{"receptacles": [{"name": "a 1"}], "task": "dance"}"#),
        Some(WorldError::BadTask("dance".into()))
    );
    assert_eq!(
        bad(r#"{"receptacles": [], "task": "put a x in a"}"#),
        Some(WorldError::NoReceptacles)
    );
}

#[test]
fn an_invalid_action_changes_nothing() {
    let (l, s0, _) = world(SMALL);
    let mut s = s0.clone();
    for a in [
        "open cabinet 2",
        "take candle 1 from cabinet 2",
        "go to cabinet 2",
        "take candle 1 from cabinet 2",
        "close cabinet 1",
        "put candle 1 in cabinet 2",
    ] {
        let before = s.clone();
        if run(&l, &mut s, a) == NOTHING_HAPPENS {
            assert_eq!(s, before, "{a}");
        }
    }
    assert_ne!(s, s0);
}

#[test]
fn the_admissible_actions_are_what_the_world_accepts_in_each_state() {
    let (l, mut s, _) = world(SMALL);
    // In the middle of the room: going to each receptacle, looking, the inventory.
    assert_eq!(
        l.admissible(&s),
        [
            "go to cabinet 1",
            "go to cabinet 10",
            "go to cabinet 2",
            "go to toilet 1",
            "inventory",
            "look"
        ]
    );
    run(&l, &mut s, "go to cabinet 2");
    run(&l, &mut s, "open cabinet 2");
    let here = l.admissible(&s);
    for a in [
        "close cabinet 2",
        "examine cabinet 2",
        "examine candle 1",
        "take candle 1 from cabinet 2",
        "take spraybottle 2 from cabinet 2",
        "go to toilet 1",
    ] {
        assert!(here.contains(&a.to_string()), "{a}: {here:?}");
    }
    assert!(!here.contains(&"go to cabinet 2".to_string()));
    assert!(!here.iter().any(|a| a.starts_with("put ")));
    run(&l, &mut s, "take spraybottle 2 from cabinet 2");
    let held = l.admissible(&s);
    assert!(held.contains(&"put spraybottle 2 in/on cabinet 2".to_string()));
    assert!(held.contains(&"examine spraybottle 2".to_string()));
    assert!(!held.iter().any(|a| a.starts_with("take ")), "{held:?}");
    // Every listed action is accepted, and leaves the world as applying it says.
    for a in &held {
        let mut t = s.clone();
        assert_ne!(run(&l, &mut t, a), NOTHING_HAPPENS, "{a}");
    }
}
