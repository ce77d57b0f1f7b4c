use super::*;
use retroformer_llm::scripted::ScriptedModel;
use retroformer_llm::{LanguageModel, SessionOptions};
use retroformer_sandbox::{Sandbox, SandboxConfig};

#[test]
fn an_implementation_that_exits_early_with_status_zero_passes_nothing() {
    let problem = Problem {
        task_id: "T/exit".into(),
        prompt: "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n".into(),
        entry_point: "add".into(),
        test: "def check(candidate):\n    assert candidate(2, 3) == 5\n".into(),
        canonical_solution: None,
    };
    let cheat = "import os\nos._exit(0)\ndef add(a, b):\n    return 0\n```";
    let model = ScriptedModel::new(["assert add(2, 3) == 5", cheat]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut coder = HumanevalAgent {
        model: &model,
        session: session.as_mut(),
        reflector: None,
    };
    let pool = Pool::new(Sandbox::new(SandboxConfig::default()).unwrap(), 1).unwrap();
    let cfg = CodingConfig::new("reflexion", 1, "scripted");
    let r = solve(&problem, &cfg, &mut coder, &pool).unwrap().finish();
    assert_eq!(r.iterations[0].tests[0].outcome, Outcome::Error);
    assert_eq!(r.iterations[0].own_pass_rate, 0.0);
    assert!(!r.passed);
    assert_eq!(r.hidden.outcome, Outcome::Error);
}
