//! For the sandbox's own tests (unit and integration): one rule for a test whose layer is
//! absent on the machine that runs it.

/// Whether a layer a test needs is here (`available`). If not, the test says it skips (on
/// stderr, shown with `--nocapture`), unless `RETROFORMER_SANDBOX_REQUIRE` (`all`, or layer
/// names separated by commas) requires the layer `name`: then it panics. CI sets `all`, since
/// the README promises every layer on the machines it runs on.
pub fn layer_present(available: bool, name: &str) -> bool {
    let required = std::env::var("RETROFORMER_SANDBOX_REQUIRE").unwrap_or_default();
    if !available {
        assert!(
            !requires(&required, name),
            "the sandbox layer {name:?} is absent here, and RETROFORMER_SANDBOX_REQUIRE={required} requires it"
        );
        eprintln!("skipped: layer absent: {name}");
    }
    available
}

/// Whether the list `required` (`all`, or names separated by commas) names the layer `name`.
fn requires(required: &str, name: &str) -> bool {
    required
        .split(',')
        .any(|r| r.trim() == "all" || r.trim() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_or_the_layer_s_own_name_requires_it_and_nothing_else_does() {
        assert!(requires("all", "IPC namespace"));
        assert!(requires(
            "network namespace, IPC namespace",
            "IPC namespace"
        ));
        assert!(!requires("", "IPC namespace"));
        assert!(!requires("network namespace", "IPC namespace"));
        assert!(!requires("IPC", "IPC namespace"));
        // Present layers never panic, whatever is required.
        assert!(layer_present(true, "anything"));
    }
}
