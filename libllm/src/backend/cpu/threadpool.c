/* threadpool.c -- workers wait on a generation counter: spin briefly (ops come in quick
 * succession during decode), then sleep on a condition variable. */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sched.h>

#include "../../util.h"

#define SPIN_ITERATIONS 20000

struct threadpool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    atomic_uint generation;     /* bumped for every task */
    atomic_int n_pending;       /* workers still running the current task */
    atomic_bool stop;
    pool_task_fn fn;
    void *arg;
};

typedef struct worker_arg {
    threadpool *pool;
    int ith;
} worker_arg;

static void *worker_main(void *p) {
    worker_arg wa = *(worker_arg *)p;
    llm_free(p);
    threadpool *pool = wa.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen &&
               !atomic_load(&pool->stop)) {
            if (++spins < SPIN_ITERATIONS) {
                sched_yield();
                continue;
            }
            pthread_mutex_lock(&pool->mutex);
            while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop)) {
                pthread_cond_wait(&pool->wake, &pool->mutex);
            }
            pthread_mutex_unlock(&pool->mutex);
        }
        if (atomic_load(&pool->stop)) return NULL;
        seen = gen;
        pool->fn(pool->arg, wa.ith, pool->n_threads);
        atomic_fetch_sub_explicit(&pool->n_pending, 1, memory_order_release);
    }
}

int32_t threadpool_create(int n_threads, threadpool **out) {
    *out = NULL;
    if (n_threads < 1) n_threads = 1;
    threadpool *pool = llm_calloc(1, sizeof *pool);
    if (!pool) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory creating thread pool");
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    if (n_threads > 1) {
        pool->threads = llm_calloc((size_t)n_threads - 1, sizeof(pthread_t));
        if (!pool->threads) {
            threadpool_free(pool);
            return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory creating thread pool");
        }
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = llm_malloc(sizeof *wa);
        if (!wa) {
            pool->n_threads = i;
            threadpool_free(pool);
            return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory creating thread pool");
        }
        wa->pool = pool;
        wa->ith = i;
        if (pthread_create(&pool->threads[i - 1], NULL, worker_main, wa) != 0) {
            llm_free(wa);
            pool->n_threads = i;
            threadpool_free(pool);
            return llm_error(LLM_STATUS_INTERNAL, "could not start compute thread %d", i);
        }
    }
    *out = pool;
    return LLM_STATUS_OK;
}

void threadpool_free(threadpool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->stop, true);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->threads[i - 1], NULL);
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->wake);
    llm_free(pool->threads);
    llm_free(pool);
}

int threadpool_n_threads(const threadpool *pool) { return pool ? pool->n_threads : 1; }

void threadpool_run(threadpool *pool, pool_task_fn fn, void *arg) {
    if (!pool || pool->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->n_pending, pool->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    fn(arg, 0, pool->n_threads);
    while (atomic_load_explicit(&pool->n_pending, memory_order_acquire) > 0) sched_yield();
}
