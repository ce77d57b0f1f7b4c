//! Compiles the C++ exception barrier around llama.cpp calls.
fn main() {
    println!("cargo:rerun-if-changed=src/shim.cpp");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("src/shim.cpp")
        .compile("retroformer_llama_shim");
}
