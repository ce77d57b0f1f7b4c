//! The HumanEval data through the real sandbox: every reference solution passes its hidden
//! tests and an empty body fails them, so the hidden-test program, the loader and the sandbox
//! agree with the benchmark's own definition of a pass; and the visible tests parsed from the
//! docstrings pass the reference solutions but for the examples HumanEval gets wrong.

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

/// Every docstring test of the bundled prompts (`humaneval::examples`) against the reference
/// solution, in the sandbox: all pass except the examples HumanEval's own docstrings get
/// wrong (HumanEval/47's median of [-10, 4, 6, 1000, 10, 20] is 8.0, not 15.0; HumanEval/116
/// sorts by the count of ones in binary, not by value), which stay as they are: the visible
/// tests are what the model is shown.
#[test]
fn docstring_tests_pass_the_reference_solutions_but_for_the_known_wrong_examples() {
    use retroformer_envs::humaneval::examples::docstring_tests;
    use retroformer_envs::humaneval::programming::py_str;
    let problems = problems();
    let mut total = 0;
    let programs = problems
        .iter()
        .map(|p| {
            let tests = docstring_tests(&p.prompt, &p.entry_point);
            total += tests.len();
            let list: Vec<String> = tests.iter().map(|t| py_str(t)).collect();
            format!(
                "{}{}\nfor __t in [{}]:\n    try:\n        exec(__t)\n    except Exception as __e:\n        print('FAILED', __t, type(__e).__name__)\n",
                p.prompt,
                p.canonical_solution.as_deref().expect("HumanEval has solutions"),
                list.join(", ")
            )
        })
        .collect();
    assert_eq!(total, 432);
    let reports = pool().run_all(programs);
    let mut failed = Vec::new();
    for (p, r) in problems.iter().zip(&reports) {
        assert_eq!(r.outcome, Outcome::Passed, "{}: {}", p.task_id, r.stderr);
        for line in r.stdout.lines().filter(|l| l.starts_with("FAILED ")) {
            failed.push(format!("{}: {}", p.task_id, &line[7..]));
        }
    }
    assert_eq!(
        failed,
        vec![
            "HumanEval/47: assert abs(median([-10, 4, 6, 1000, 10, 20]) - 15.0) < 1e-6 AssertionError",
            "HumanEval/116: assert sort_array([1, 5, 2, 3, 4]) == [1, 2, 3, 4, 5] AssertionError",
            "HumanEval/116: assert sort_array([-2, -3, -4, -5, -6]) == [-6, -5, -4, -3, -2] AssertionError",
        ]
    );
}
