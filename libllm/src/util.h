/* util.h -- errors, logging and counted allocation shared by every part of the engine. */
#ifndef LLM_UTIL_H
#define LLM_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "libllm.h"

#if defined(__GNUC__)
#  define LLM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#  define LLM_PRINTF(f, a)
#endif

/* Sets this thread's llm_last_error() message and returns status, so a failing path reads
 * `return llm_error(LLM_STATUS_BAD_FORMAT, "...", ...);`. */
int32_t llm_error(int32_t status, const char *fmt, ...) LLM_PRINTF(2, 3);

/* Clears the thread's last error (called at the start of each public entry point). */
void llm_error_clear(void);

void llm_log(int32_t level, const char *fmt, ...) LLM_PRINTF(2, 3);

/* Allocation counting: every heap allocation of the engine goes through llm_malloc and
 * friends. While a counter is installed on a thread (llm_alloc_counter_push), allocations on
 * that thread are added to it -- this is how a context proves that decode does not allocate. */
typedef struct llm_alloc_counter {
    uint64_t n_alloc;
    uint64_t n_bytes;
} llm_alloc_counter;

llm_alloc_counter *llm_alloc_counter_push(llm_alloc_counter *counter); /* returns previous */
void llm_alloc_counter_pop(llm_alloc_counter *previous);

void *llm_malloc(size_t size);
void *llm_calloc(size_t n, size_t size);
void *llm_realloc(void *ptr, size_t size);
/* 64-byte aligned, for compute buffers; free with llm_aligned_free. */
void *llm_aligned_alloc(size_t size);
void llm_aligned_free(void *ptr);
void llm_free(void *ptr);

/* a * b with overflow check: returns 0 and sets *out, or -1 on overflow. */
static inline int llm_mul_overflow(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return -1;
    *out = a * b;
    return 0;
}

#define LLM_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LLM_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
