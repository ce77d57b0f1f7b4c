//! Compiles the C++ exception barrier around llama.cpp calls (feature `llama`).
fn main() {
    println!("cargo:rerun-if-changed=src/llm/llama/shim.cpp");
    if std::env::var_os("CARGO_FEATURE_LLAMA").is_some() {
        cc::Build::new()
            .cpp(true)
            .std("c++17")
            .file("src/llm/llama/shim.cpp")
            .compile("retroformer_llama_shim");
    }
}
