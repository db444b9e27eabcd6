/* threadpool.h -- a persistent pool of compute threads. The calling thread takes part as
 * thread 0, so a pool of n threads starts n - 1 workers once and reuses them for every op. */
#ifndef LLM_THREADPOOL_H
#define LLM_THREADPOOL_H

#include <stdint.h>

typedef struct threadpool threadpool;

/* fn runs once on each of the nth threads with ith in [0, nth). */
typedef void (*pool_task_fn)(void *arg, int ith, int nth);

/* Returns an llm_status; n_threads >= 1. */
int32_t threadpool_create(int n_threads, threadpool **out);
void threadpool_free(threadpool *pool);
int threadpool_n_threads(const threadpool *pool);

/* Runs fn on every thread and returns when all have finished. pool may be NULL (1 thread). */
void threadpool_run(threadpool *pool, pool_task_fn fn, void *arg);

/* The half-open slice [*start, *end) of n items that thread ith of nth takes. */
static inline void pool_split(int64_t n, int ith, int nth, int64_t *start, int64_t *end) {
    int64_t per = n / nth, extra = n % nth;
    *start = ith * per + (ith < extra ? ith : extra);
    *end = *start + per + (ith < extra ? 1 : 0);
}

#endif
