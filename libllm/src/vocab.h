/* vocab.h -- the tokenizer, read from GGUF metadata (tokenizer.ggml.*).
 *
 * Supported: tokenizer.ggml.model == "llama" (SentencePiece BPE with scores, byte fallback
 * tokens <0xNN>, U+2581 as space, optional dummy-prefix space). Other models are a clear
 * LLM_STATUS_UNSUPPORTED at load time. */
#ifndef LLM_VOCAB_H
#define LLM_VOCAB_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf.h"
#include "libllm.h"

typedef struct llm_vocab llm_vocab;

/* Token types as GGUF stores them in tokenizer.ggml.token_type. */
enum vocab_token_type {
    VOCAB_TOKEN_UNDEFINED = 0,
    VOCAB_TOKEN_NORMAL = 1,
    VOCAB_TOKEN_UNKNOWN = 2,
    VOCAB_TOKEN_CONTROL = 3,
    VOCAB_TOKEN_USER_DEFINED = 4,
    VOCAB_TOKEN_UNUSED = 5,
    VOCAB_TOKEN_BYTE = 6
};

/* The vocabulary as plain arrays: what vocab_load reads from tokenizer.ggml.*, and what the
 * unit tests hand over directly. Nothing is kept: vocab_build copies every string. */
typedef struct vocab_params {
    int32_t n_tokens;               /* > 0 */
    const char *const *pieces;      /* n_tokens byte strings ("\xe2\x96\x81" stands for a space) */
    const uint32_t *piece_lens;     /* their byte lengths; NULL: the pieces are NUL-terminated */
    const float *scores;            /* merge priorities, higher first; NULL: all 0 */
    const int32_t *types;           /* enum vocab_token_type; NULL: all NORMAL */
    llm_token bos, eos, unk, pad;   /* -1: none */
    llm_token eot, eom;             /* extra end-of-generation tokens, -1: none */
    bool add_bos;                   /* vocab_tokenize(add_special) prepends BOS */
    bool add_eos;                   /* vocab_tokenize(add_special) appends EOS */
    bool add_space_prefix;          /* a space ("\xe2\x96\x81") starts every text run */
} vocab_params;

/* No arrays, every id -1, add_bos and add_space_prefix true, add_eos false. */
void vocab_params_default(vocab_params *params);

/* Builds a vocabulary from params. Returns an llm_status (LLM_STATUS_BAD_FORMAT for
 * inconsistent input: no tokens, a special id out of range, a BYTE token not spelled <0xNN>);
 * on failure *out is NULL. */
int32_t vocab_build(const vocab_params *params, llm_vocab **out);

/* Builds the vocabulary from the file's metadata (copies what it keeps; the file may be
 * closed afterwards). Returns an llm_status; on failure *out is NULL. */
int32_t vocab_load(const gguf_file *file, llm_vocab **out);
void vocab_free(llm_vocab *vocab);

int32_t vocab_n_tokens(const llm_vocab *vocab);
llm_token vocab_bos(const llm_vocab *vocab);       /* -1 if none */
llm_token vocab_eos(const llm_vocab *vocab);       /* -1 if none */
bool vocab_is_eog(const llm_vocab *vocab, llm_token token);
bool vocab_add_bos(const llm_vocab *vocab);
bool vocab_add_eos(const llm_vocab *vocab);
llm_token vocab_unk(const llm_vocab *vocab);       /* -1 if none */
llm_token vocab_pad(const llm_vocab *vocab);       /* -1 if none */
bool vocab_add_space_prefix(const llm_vocab *vocab);

/* The stored piece of a token (not NUL-terminated), its score and type; false if the id is
 * out of range. Any output pointer may be NULL. */
bool vocab_token_info(const llm_vocab *vocab, llm_token token, const char **text,
                      uint32_t *len, float *score, int32_t *type);

/* The contracts of llm_tokenize, llm_token_to_piece and llm_detokenize in libllm.h. */
int32_t vocab_tokenize(const llm_vocab *vocab, const char *text, int32_t text_len,
                       llm_token *tokens, int32_t n_tokens_max, bool add_special,
                       bool parse_special);
int32_t vocab_token_to_piece(const llm_vocab *vocab, llm_token token, char *buf,
                             int32_t buf_size, bool special);
int32_t vocab_detokenize(const llm_vocab *vocab, const llm_token *tokens, int32_t n_tokens,
                         char *buf, int32_t buf_size, bool remove_special,
                         bool unparse_special);

#endif
