//! End-to-end tests across crates live in `tests/`; fixtures in `data/`.

/// The fixtures folder.
pub fn data_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}
