/* api.c -- library-level entry points: versions, status names, batch allocation. */
#include <stdlib.h>

#include "util.h"

#define LLM_STR2(x) #x
#define LLM_STR(x) LLM_STR2(x)

LLM_API const char *llm_version(void) {
    return LLM_STR(LLM_VERSION_MAJOR) "." LLM_STR(LLM_VERSION_MINOR) "." LLM_STR(LLM_VERSION_PATCH);
}

LLM_API uint32_t llm_abi_version(void) { return LLM_ABI_VERSION; }

LLM_API const char *llm_status_str(int32_t status) {
    switch (status) {
    case LLM_STATUS_OK: return "ok";
    case LLM_STATUS_MEMORY_FULL: return "memory full";
    case LLM_STATUS_ABORTED: return "aborted";
    case LLM_STATUS_CANNOT_REWIND: return "cannot rewind";
    case LLM_STATUS_INVALID_ARGUMENT: return "invalid argument";
    case LLM_STATUS_IO: return "i/o error";
    case LLM_STATUS_BAD_FORMAT: return "bad format";
    case LLM_STATUS_UNSUPPORTED: return "unsupported";
    case LLM_STATUS_OUT_OF_MEMORY: return "out of memory";
    case LLM_STATUS_INTERNAL: return "internal error";
    default: return "unknown status";
    }
}

/* One allocation holds the struct, every array and the per-token sequence id rows. */
LLM_API llm_batch *llm_batch_init(int32_t n_tokens_max, int32_t n_seq_max) {
    llm_error_clear();
    if (n_tokens_max <= 0 || n_seq_max <= 0 || n_tokens_max > (1 << 24) || n_seq_max > 256) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "invalid batch size %d x %d", n_tokens_max,
                  n_seq_max);
        return NULL;
    }
    size_t n = (size_t)n_tokens_max;
    size_t bytes = sizeof(llm_batch) + n * (sizeof(llm_token) + sizeof(llm_pos) + sizeof(int32_t) +
                                            sizeof(llm_seq_id *) + (size_t)n_seq_max *
                                            sizeof(llm_seq_id) + sizeof(int8_t));
    llm_batch *b = llm_calloc(1, bytes);
    if (!b) {
        llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory allocating a batch");
        return NULL;
    }
    /* pointer-aligned arrays first, then 4-byte ones, then bytes */
    b->seq_id = (llm_seq_id **)(b + 1);
    b->token = (llm_token *)(b->seq_id + n);
    b->pos = b->token + n;
    b->n_seq_id = b->pos + n;
    llm_seq_id *rows = b->n_seq_id + n;
    for (size_t i = 0; i < n; i++) b->seq_id[i] = rows + i * (size_t)n_seq_max;
    b->logits = (int8_t *)(rows + n * (size_t)n_seq_max);
    return b;
}

LLM_API void llm_batch_free(llm_batch *batch) { llm_free(batch); }
