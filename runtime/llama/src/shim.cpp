// Exception barrier between Rust and llama.cpp.
//
// llama_decode and llama_tokenize are declared extern "C" but can throw C++ exceptions
// (graph re-reservation after an adapter change can fail to allocate; a vocabulary without
// byte tokens throws from std::map::at). An exception crossing into Rust aborts the process,
// so every such call goes through these wrappers, which turn it into an error code and message.
//
// The prototypes below mirror llama.h of the pinned llama-cpp-sys-2 (0.1.160).
#include <cstdint>
#include <cstring>
#include <exception>

extern "C" {
struct llama_context;
struct llama_vocab;
typedef int32_t llama_token;
typedef int32_t llama_pos;
typedef int32_t llama_seq_id;

struct llama_batch {
    int32_t n_tokens;
    llama_token * token;
    float * embd;
    llama_pos * pos;
    int32_t * n_seq_id;
    llama_seq_id ** seq_id;
    int8_t * logits;
};

int32_t llama_decode(llama_context * ctx, llama_batch batch);

struct ggml_backend;
struct ggml_backend_sched;
int ggml_backend_sched_get_n_backends(ggml_backend_sched * sched);
ggml_backend * ggml_backend_sched_get_backend(ggml_backend_sched * sched, int i);
bool ggml_backend_is_cpu(ggml_backend * backend);
void ggml_backend_cpu_set_use_ref(ggml_backend * backend, bool use_ref);
int32_t llama_tokenize(const llama_vocab * vocab, const char * text, int32_t text_len,
                       llama_token * tokens, int32_t n_tokens_max, bool add_special,
                       bool parse_special);
}

namespace {
void copy_message(const char * what, char * msg, size_t msg_len) {
    if (msg == nullptr || msg_len == 0) {
        return;
    }
    std::strncpy(msg, what, msg_len - 1);
    msg[msg_len - 1] = '\0';
}
}  // namespace

// Returns llama_decode's code, or INT32_MIN with `msg` set when it threw.
extern "C" int32_t rf_llama_decode(llama_context * ctx, llama_batch batch, char * msg,
                                   size_t msg_len) {
    try {
        return llama_decode(ctx, batch);
    } catch (const std::exception & e) {
        copy_message(e.what(), msg, msg_len);
    } catch (...) {
        copy_message("unknown C++ exception", msg, msg_len);
    }
    return INT32_MIN;
}

// Returns llama_tokenize's result, or INT32_MIN with `msg` set when it threw.
extern "C" int32_t rf_llama_tokenize(const llama_vocab * vocab, const char * text,
                                     int32_t text_len, llama_token * tokens,
                                     int32_t n_tokens_max, bool add_special,
                                     bool parse_special, char * msg, size_t msg_len) {
    try {
        return llama_tokenize(vocab, text, text_len, tokens, n_tokens_max, add_special,
                              parse_special);
    } catch (const std::exception & e) {
        copy_message(e.what(), msg, msg_len);
    } catch (...) {
        copy_message("unknown C++ exception", msg, msg_len);
    }
    return INT32_MIN;
}

// llama.h gives no handle on a context's backends; llama_context::get_sched, an exported member
// of the C++ class behind the opaque type (src/llama-context.h of the pinned llama.cpp), does.
struct llama_context {
    ggml_backend_sched * get_sched() const;
};

// Puts every CPU backend of `ctx` on ggml's reference kernels: a matrix product is one dot
// product per output element, whatever the batch (no tinyBLAS tiles, whose arithmetic depends
// on the tile a token falls in), and no tiled or split flash attention and no op fusion.
// Returns how many CPU backends it set, or -1 when llama.cpp threw.
extern "C" int32_t rf_llama_cpu_reference(llama_context * ctx) {
    try {
        ggml_backend_sched * sched = ctx->get_sched();
        if (sched == nullptr) {
            return 0;
        }
        int32_t set = 0;
        for (int i = 0; i < ggml_backend_sched_get_n_backends(sched); i++) {
            ggml_backend * b = ggml_backend_sched_get_backend(sched, i);
            if (b != nullptr && ggml_backend_is_cpu(b)) {
                ggml_backend_cpu_set_use_ref(b, true);
                set++;
            }
        }
        return set;
    } catch (...) {
        return -1;
    }
}
