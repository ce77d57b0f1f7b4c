use super::*;

#[test]
fn outcomes_are_classified_from_exit_status_signal_and_traceback() {
    let tb = |last: &str| {
        format!("Traceback (most recent call last):\n  File \"main.py\", line 1\n{last}\n")
    };
    assert_eq!(classify(Some(0), None, "", false), Outcome::Passed);
    assert_eq!(
        classify(Some(1), None, &tb("AssertionError"), false),
        Outcome::Failed
    );
    assert_eq!(
        classify(Some(1), None, &tb("AssertionError: 3 != 4"), false),
        Outcome::Failed
    );
    assert_eq!(
        classify(
            Some(1),
            None,
            &tb("ZeroDivisionError: division by zero"),
            false
        ),
        Outcome::Error
    );
    assert_eq!(
        classify(Some(1), None, &tb("MemoryError"), false),
        Outcome::MemoryLimit
    );
    assert_eq!(
        classify(None, Some(libc::SIGXCPU), "", false),
        Outcome::Timeout
    );
    assert_eq!(
        classify(None, Some(libc::SIGKILL), "", true),
        Outcome::Timeout
    );
    assert_eq!(
        classify(None, Some(libc::SIGSEGV), "", false),
        Outcome::KilledBySignal
    );
    assert_eq!(classify(Some(3), None, "", false), Outcome::Error);
}

#[test]
fn the_exception_line_skips_source_and_caret_lines() {
    let r = RunReport {
        outcome: Outcome::Error,
        exit_code: Some(1),
        signal: None,
        stdout: String::new(),
        stderr: "Traceback (most recent call last):\n  File \"main.py\", line 3, in <module>\n    f()\n    ^^^\nKeyError: 'x'\n".into(),
        truncated: false,
        wall_ms: 1.0,
        detail: None,
    };
    assert_eq!(r.exception_line(), Some("KeyError: 'x'"));
}
