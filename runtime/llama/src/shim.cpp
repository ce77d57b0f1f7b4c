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
