//! The HumanEval data through the real sandbox: every reference solution passes its hidden
//! tests and an empty body fails them, so the hidden-test program, the loader and the sandbox
//! agree with the benchmark's own definition of a pass.

use retroformer_envs::humaneval::{hidden_test_program, load, Problem};
use retroformer_sandbox::{Outcome, Pool, Sandbox, SandboxConfig};

fn problems() -> Vec<Problem> {
    load(retroformer_envs::humaneval::source(None)).unwrap_or_else(|e| panic!("{e}"))
}

fn pool() -> Pool {
    let sandbox = Sandbox::new(SandboxConfig {
        wall_ms: 15_000,
        cpu_seconds: 15,
        ..SandboxConfig::default()
    })
    .expect("python3 runs in the sandbox");
    Pool::new(sandbox, 2).unwrap()
}

#[test]
fn every_reference_solution_passes_its_hidden_tests_in_the_sandbox() {
    let problems = problems();
    assert_eq!(problems.len(), 164);
    let programs = problems
        .iter()
        .map(|p| {
            let solution = format!(
                "{}{}",
                p.prompt,
                p.canonical_solution
                    .as_deref()
                    .expect("HumanEval has solutions")
            );
            hidden_test_program(p, &solution)
        })
        .collect();
    let reports = pool().run_all(programs);
    let failures: Vec<String> = problems
        .iter()
        .zip(&reports)
        .filter(|(_, r)| r.outcome != Outcome::Passed)
        .map(|(p, r)| format!("{}: {} {}", p.task_id, r.outcome.name(), r.stderr))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn an_empty_body_fails_the_hidden_tests() {
    let problems = problems();
    let programs: Vec<String> = problems
        .iter()
        .take(20)
        .map(|p| hidden_test_program(p, &format!("{}    pass\n", p.prompt)))
        .collect();
    let reports = pool().run_all(programs);
    for (p, r) in problems.iter().zip(&reports) {
        assert!(
            matches!(r.outcome, Outcome::Failed | Outcome::Error),
            "{}: {:?}",
            p.task_id,
            r.outcome
        );
    }
}
