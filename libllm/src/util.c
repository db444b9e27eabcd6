/* util.c -- thread-local errors, the log sink and counted allocation. */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char tl_error[1024];
static _Thread_local llm_alloc_counter *tl_counter;

static llm_log_fn g_log_fn;
static void *g_log_user_data;

int32_t llm_error(int32_t status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_error, sizeof tl_error, fmt, ap);
    va_end(ap);
    return status;
}

void llm_error_clear(void) { tl_error[0] = '\0'; }

LLM_API const char *llm_last_error(void) { return tl_error; }

LLM_API void llm_log_set(llm_log_fn fn, void *user_data) {
    g_log_fn = fn;
    g_log_user_data = user_data;
}

void llm_log(int32_t level, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (g_log_fn) {
        g_log_fn(level, line, g_log_user_data);
    } else if (level >= LLM_LOG_WARN) {
        fprintf(stderr, "libllm: %s\n", line);
    }
}

llm_alloc_counter *llm_alloc_counter_push(llm_alloc_counter *counter) {
    llm_alloc_counter *prev = tl_counter;
    tl_counter = counter;
    return prev;
}

void llm_alloc_counter_pop(llm_alloc_counter *previous) { tl_counter = previous; }

static void count(size_t size) {
    if (tl_counter) {
        tl_counter->n_alloc++;
        tl_counter->n_bytes += size;
    }
}

void *llm_malloc(size_t size) {
    count(size);
    return malloc(size ? size : 1);
}

void *llm_calloc(size_t n, size_t size) {
    count(n * size);
    return calloc(n ? n : 1, size ? size : 1);
}

void *llm_realloc(void *ptr, size_t size) {
    count(size);
    return realloc(ptr, size ? size : 1);
}

void *llm_aligned_alloc(size_t size) {
    count(size);
    size_t rounded = (size + 63) & ~(size_t)63;
    return aligned_alloc(64, rounded ? rounded : 64);
}

void llm_aligned_free(void *ptr) { free(ptr); }

void llm_free(void *ptr) { free(ptr); }
