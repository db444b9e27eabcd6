/* sampler.c -- the sampler chain of the public ABI.
 *
 * A chain is a list of steps applied, in the order they were added, to a candidate array
 * (id, logit, p) built from one row of logits. Filters shrink the array, transforms change
 * logits, selectors (greedy, dist) shrink it to the one chosen candidate. Whatever is left
 * after the last step is resolved greedily, so a chain without a selector picks the argmax
 * and a selector in the middle of a chain simply leaves one candidate for the later steps.
 *
 * Semantics follow llama.cpp's samplers:
 *  - penalties: over the last `last_n` accepted tokens, for a token seen `count` > 0 times:
 *      logit <= 0 ? logit *= repeat : logit /= repeat;  logit -= count * frequency + presence.
 *    last_n == 0 turns the step off, and so do repeat == 1, frequency == 0, presence == 0.
 *    last_n == -1 means the whole history accepted since the last reset (llama.cpp's sampler
 *    clamps negatives to 0; its command line uses -1 for "the context size", which is what an
 *    unbounded history amounts to). The history is a ring buffer that grows geometrically up
 *    to last_n entries, so accepting allocates O(log n) times, never per token once full.
 *  - top_k: keeps the k largest logits (k <= 0 or k >= n: off), by selection, not a full sort.
 *  - top_p: softmax, then the smallest prefix of the descending order whose cumulative
 *    probability reaches p, at least min_keep tokens. p == 1: off. The order is produced
 *    incrementally (select the next chunk, sort only that chunk), so a small nucleus of a large
 *    vocabulary costs about O(n) rather than O(n log n).
 *  - min_p: keeps the tokens with probability >= p * p_max, at least min_keep. p <= 0: off.
 *  - temp: divides the logits by t. t <= 0 keeps only the best candidate (greedy).
 *  - greedy: the largest logit; ties go to the lowest token id.
 *  - dist: softmax, then one draw from a seeded xoshiro256** generator. The same seed gives
 *    the same sequence of draws. LLM_SAMPLER_SEED_RANDOM (0xFFFFFFFF, llama.cpp's
 *    LLAMA_DEFAULT_SEED) means "a fresh random seed" taken from the clock, the step's address
 *    and a process-wide counter; reset then draws a new random seed as well.
 *
 * Candidate order: ties are always broken by token id (lower first), so every step is
 * deterministic. NaN logits are read as -inf. When every remaining logit is infinite with the
 * same sign, the tied candidates share the probability mass equally instead of producing NaN.
 *
 * Memory: the candidate buffer and a per-token count array are allocated on the first sample
 * for n_vocab and reused; a later call with a larger n_vocab grows them once. Sampling itself
 * never allocates after that.
 */
#include "util.h"

#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LLM_SAMPLER_SEED_RANDOM 0xFFFFFFFFu

typedef struct cand {
    llm_token id;
    float logit;
    float p;              /* softmax weight, unnormalised (see softmax_weights) */
} cand;

typedef enum step_kind {
    STEP_PENALTIES,
    STEP_TOP_K,
    STEP_TOP_P,
    STEP_MIN_P,
    STEP_TEMP,
    STEP_GREEDY,
    STEP_DIST
} step_kind;

typedef struct step {
    step_kind kind;
    int32_t k;            /* top_k */
    float p;              /* top_p, min_p */
    int32_t min_keep;     /* top_p, min_p; >= 1 */
    float temp;           /* temp */

    /* penalties: ring buffer of the last accepted tokens, oldest at hist[head] */
    int32_t last_n;       /* > 0, or -1 for the whole history */
    float repeat, freq, presence;
    llm_token *hist;
    int32_t hist_cap, hist_len, hist_head;

    /* dist */
    uint32_t seed;        /* as given; reset reseeds from it */
    uint64_t rng[4];      /* xoshiro256** state */
} step;

struct llm_sampler {
    step *steps;
    int32_t n_steps, cap_steps;

    cand *cands;          /* cap_vocab entries, reused by every sample */
    int32_t *counts;      /* cap_vocab zeros between calls; penalty scratch */
    int32_t cap_vocab;

    /* working set of the current sample */
    int32_t n_vocab;
    int32_t n;            /* live candidates: cands[0, n) */
    int32_t sorted;       /* cands[0, sorted) are the `sorted` best of the live set, in order */
};

/* ---- random numbers ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static uint64_t xoshiro_next(uint64_t st[4]) {
    const uint64_t result = rotl64(st[1] * 5, 7) * 9;
    const uint64_t t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl64(st[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t st[4]) {
    return (double)(xoshiro_next(st) >> 11) * (1.0 / 9007199254740992.0);
}

static _Atomic uint64_t g_seed_counter;

static void dist_seed(step *st) {
    uint64_t x;
    if (st->seed == LLM_SAMPLER_SEED_RANDOM) {
        struct timespec ts;
        memset(&ts, 0, sizeof ts);
        timespec_get(&ts, TIME_UTC);
        uint64_t c = atomic_fetch_add(&g_seed_counter, 1);
        x = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^
            ((uint64_t)(uintptr_t)st << 16) ^ (c * 0xD6E8FEB86659FD93ull);
    } else {
        x = st->seed;
    }
    for (int i = 0; i < 4; i++) st->rng[i] = splitmix64(&x);
    /* splitmix64 never yields four zeros in a row, so the state is valid. */
}

/* ---- candidate ordering ---- */

/* True when a ranks before b: larger logit first, then lower id. A total order, since NaN
 * never enters the candidate array. */
static inline bool better(const cand *a, const cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static inline void swap_cand(cand *a, cand *b) {
    cand t = *a;
    *a = *b;
    *b = t;
}

static void insertion_sort(cand *a, size_t n) {
    for (size_t i = 1; i < n; i++) {
        cand x = a[i];
        size_t j = i;
        while (j > 0 && better(&x, &a[j - 1])) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

/* A heap over a[0, n) whose root is the worst element: every parent ranks after its
 * children. */
static void sift_down_worst(cand *a, size_t n, size_t i) {
    const cand x = a[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && better(&a[c], &a[c + 1])) c++; /* the worse child */
        if (!better(&x, &a[c])) break;
        a[i] = a[c];
        i = c;
    }
    a[i] = x;
}

static void heapify_worst(cand *a, size_t n) {
    for (size_t i = n / 2; i-- > 0;) sift_down_worst(a, n, i);
}

/* Heap sort, best first: popping the worst root to the back fills the array from its end. */
static void heap_sort_desc(cand *a, size_t n) {
    heapify_worst(a, n);
    for (size_t m = n; m > 1; m--) {
        swap_cand(&a[0], &a[m - 1]);
        sift_down_worst(a, m - 1, 0);
    }
}

/* Median of a[lo], a[mid], a[hi - 1] moved to a[hi - 1], the pivot slot. */
static void median_to_end(cand *a, size_t lo, size_t hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (better(&a[mid], &a[lo])) swap_cand(&a[mid], &a[lo]);
    if (better(&a[hi - 1], &a[lo])) swap_cand(&a[hi - 1], &a[lo]);
    if (better(&a[hi - 1], &a[mid])) swap_cand(&a[hi - 1], &a[mid]);
    swap_cand(&a[mid], &a[hi - 1]);
}

/* Partitions a[lo, hi) around the pivot a[hi - 1]; returns its final index. */
static size_t partition(cand *a, size_t lo, size_t hi) {
    const cand pivot = a[hi - 1];
    size_t store = lo;
    for (size_t i = lo; i < hi - 1; i++) {
        if (better(&a[i], &pivot)) swap_cand(&a[i], &a[store++]);
    }
    swap_cand(&a[store], &a[hi - 1]);
    return store;
}

static int depth_limit(size_t n) {
    int d = 0;
    for (; n > 1; n >>= 1) d += 2;
    return d;
}

static void intro_sort(cand *a, size_t n, int depth) {
    while (n > 16) {
        if (depth-- <= 0) {
            heap_sort_desc(a, n);
            return;
        }
        median_to_end(a, 0, n);
        size_t p = partition(a, 0, n);
        /* recurse into the smaller side, loop on the larger */
        if (p < n - p - 1) {
            intro_sort(a, p, depth);
            a += p + 1;
            n -= p + 1;
        } else {
            intro_sort(a + p + 1, n - p - 1, depth);
            n = p;
        }
    }
    insertion_sort(a, n);
}

/* Sorts a[0, n) best first. */
static void sort_desc(cand *a, size_t n) { intro_sort(a, n, depth_limit(n)); }

/* Moves the k best of a[0, n) into a[0, k) (in no particular order), 0 < k < n.
 * Small k: a worst-rooted heap of k slides over the rest, O(n log k) in the worst case and
 * about one comparison per element on typical logits. Large k: quickselect, expected O(n),
 * falling back to a full sort past a depth limit. */
static void select_best(cand *a, size_t n, size_t k) {
    if (k <= 4096 || k <= n / 16) {
        heapify_worst(a, k);
        for (size_t i = k; i < n; i++) {
            if (better(&a[i], &a[0])) {
                swap_cand(&a[i], &a[0]);
                sift_down_worst(a, k, 0);
            }
        }
        return;
    }
    size_t lo = 0, hi = n;
    int depth = depth_limit(n);
    /* Invariant: a[0, lo) rank before a[lo, n); a[0, hi) rank before a[hi, n); lo <= k <= hi. */
    while (hi - lo > 16) {
        if (depth-- <= 0) {
            sort_desc(a + lo, hi - lo);
            return;
        }
        median_to_end(a, lo, hi);
        const size_t p = partition(a, lo, hi);
        /* a[lo, p) rank before the pivot at p, which ranks before a[p + 1, hi) */
        if (k == p || k == p + 1) return;
        if (k < p) {
            hi = p;
        } else {
            lo = p + 1;
        }
    }
    insertion_sort(a + lo, hi - lo);
}

/* Makes cands[0, k) the k best live candidates in descending order (k clamped to n). */
static void ensure_sorted(llm_sampler *s, int32_t k) {
    if (k > s->n) k = s->n;
    if (k <= s->sorted) return;
    cand *rest = s->cands + s->sorted;
    size_t n_rest = (size_t)(s->n - s->sorted);
    size_t want = (size_t)(k - s->sorted);
    if (want < n_rest) select_best(rest, n_rest, want);
    sort_desc(rest, want);
    s->sorted = k;
}

static float max_logit(const llm_sampler *s) {
    if (s->sorted > 0) return s->cands[0].logit;
    float m = -INFINITY;
    for (int32_t i = 0; i < s->n; i++) {
        if (s->cands[i].logit > m) m = s->cands[i].logit;
    }
    return m;
}

/* Sets p to the unnormalised softmax weight exp(logit - max) of each live candidate and
 * returns their sum (>= 1: the maximum weighs exp(0)). */
static double softmax_weights(llm_sampler *s) {
    cand *c = s->cands;
    const float m = max_logit(s);
    double sum = 0.0;
    if (isfinite(m)) {
        for (int32_t i = 0; i < s->n; i++) {
            c[i].p = expf(c[i].logit - m);
            sum += c[i].p;
        }
    } else {
        /* every live logit is -inf, or some are +inf: the tied maxima share the mass */
        for (int32_t i = 0; i < s->n; i++) {
            c[i].p = c[i].logit == m ? 1.0f : 0.0f;
            sum += c[i].p;
        }
    }
    return sum;
}

/* Leaves only candidate i. */
static void keep_one(llm_sampler *s, int32_t i) {
    s->cands[0] = s->cands[i];
    s->n = 1;
    s->sorted = 1;
}

static void keep_best(llm_sampler *s) {
    int32_t best = 0;
    if (s->sorted == 0) {
        for (int32_t i = 1; i < s->n; i++) {
            if (better(&s->cands[i], &s->cands[best])) best = i;
        }
    }
    keep_one(s, best);
}

/* ---- steps ---- */

static bool penalties_noop(const step *st) {
    return st->last_n == 0 || (st->repeat == 1.0f && st->freq == 0.0f && st->presence == 0.0f);
}

static inline llm_token hist_at(const step *st, int32_t i) {
    int32_t j = st->hist_head + i;
    if (j >= st->hist_cap) j -= st->hist_cap;
    return st->hist[j];
}

static float penalize(const step *st, float logit, int32_t count) {
    if (logit <= 0.0f) {
        logit *= st->repeat;
    } else {
        logit /= st->repeat;
    }
    return logit - ((float)count * st->freq + st->presence);
}

static void apply_penalties(llm_sampler *s, const step *st) {
    if (st->hist_len == 0 || penalties_noop(st)) return;
    int32_t *counts = s->counts;
    cand *c = s->cands;
    /* When the candidates are still in vocabulary order (penalties as the first step, the
     * usual case), a token's candidate is found by index and only the history is walked. */
    bool by_index = true;
    for (int32_t i = 0; i < st->hist_len; i++) {
        const llm_token t = hist_at(st, i);
        if (t < 0 || t >= s->n_vocab) continue;
        counts[t]++;
        if (t >= s->n || c[t].id != t) by_index = false;
    }
    if (by_index) {
        for (int32_t i = 0; i < st->hist_len; i++) {
            const llm_token t = hist_at(st, i);
            if (t < 0 || t >= s->n_vocab || counts[t] == 0) continue;
            c[t].logit = penalize(st, c[t].logit, counts[t]);
            counts[t] = 0;
        }
    } else {
        for (int32_t i = 0; i < s->n; i++) {
            const int32_t n = counts[c[i].id];
            if (n > 0) c[i].logit = penalize(st, c[i].logit, n);
        }
        for (int32_t i = 0; i < st->hist_len; i++) {
            const llm_token t = hist_at(st, i);
            if (t >= 0 && t < s->n_vocab) counts[t] = 0;
        }
    }
    s->sorted = 0;
}

static void apply_top_k(llm_sampler *s, const step *st) {
    if (st->k <= 0 || st->k >= s->n) return;
    ensure_sorted(s, st->k);
    s->n = st->k;
}

static void apply_top_p(llm_sampler *s, const step *st) {
    if (st->p >= 1.0f || s->n <= 1) return;
    /* cumulative probability >= p, on unnormalised weights: cumulative weight >= p * sum */
    const double target = st->p * softmax_weights(s);
    double cum = 0.0;
    int32_t i = 0;
    int32_t chunk = 64;
    for (;;) {
        const int32_t upto = LLM_MIN(chunk, s->n);
        ensure_sorted(s, upto);
        for (; i < upto; i++) {
            cum += s->cands[i].p;
            if (cum >= target && i + 1 >= st->min_keep) {
                s->n = i + 1;
                s->sorted = LLM_MIN(s->sorted, s->n);
                return;
            }
        }
        if (upto == s->n) return; /* rounding left the sum short of p: keep everything */
        chunk = chunk > s->n / 4 ? s->n : chunk * 4;
    }
}

static void apply_min_p(llm_sampler *s, const step *st) {
    if (st->p <= 0.0f || s->n <= 1) return;
    /* p_i >= p * p_max  <=>  logit_i >= logit_max + log(p) */
    const float thr = max_logit(s) + logf(st->p);
    cand *c = s->cands;
    int32_t kept = 0;
    for (int32_t i = 0; i < s->n; i++) kept += c[i].logit >= thr;
    if (kept >= st->min_keep) {
        /* Stable compaction. The kept part of a sorted prefix is a prefix of it, and it still
         * ranks before every other kept candidate. */
        int32_t j = 0, sorted = 0;
        for (int32_t i = 0; i < s->n; i++) {
            if (c[i].logit >= thr) {
                if (i < s->sorted) sorted++;
                c[j++] = c[i];
            }
        }
        s->n = j;
        s->sorted = sorted;
    } else {
        ensure_sorted(s, st->min_keep);
        s->n = LLM_MIN(s->n, st->min_keep);
    }
}

static void apply_temp(llm_sampler *s, const step *st) {
    if (st->temp <= 0.0f) {
        keep_best(s);
        return;
    }
    if (st->temp == 1.0f) return;
    for (int32_t i = 0; i < s->n; i++) s->cands[i].logit /= st->temp;
    /* the division keeps the order of logits, but rounding can make two of them equal, and
     * equal logits rank by id: the sorted prefix is not trusted any more */
    s->sorted = 0;
}

static void apply_dist(llm_sampler *s, step *st) {
    if (s->n <= 1) return;
    const double sum = softmax_weights(s);
    const double u = rng_uniform(st->rng) * sum;
    double cum = 0.0;
    int32_t pick = -1, last = 0;
    for (int32_t i = 0; i < s->n; i++) {
        if (s->cands[i].p <= 0.0f) continue;
        last = i;
        cum += s->cands[i].p;
        if (u < cum) {
            pick = i;
            break;
        }
    }
    keep_one(s, pick >= 0 ? pick : last); /* rounding left cum below u: the last possible one */
}

static void run_chain(llm_sampler *s, const float *logits, int32_t n_vocab) {
    cand *c = s->cands;
    for (int32_t i = 0; i < n_vocab; i++) {
        const float l = logits[i];
        c[i].id = i;
        c[i].logit = isnan(l) ? -INFINITY : l; /* p is written before any step reads it */
    }
    s->n_vocab = n_vocab;
    s->n = n_vocab;
    s->sorted = 0;
    for (int32_t i = 0; i < s->n_steps; i++) {
        step *st = &s->steps[i];
        switch (st->kind) {
        case STEP_PENALTIES: apply_penalties(s, st); break;
        case STEP_TOP_K: apply_top_k(s, st); break;
        case STEP_TOP_P: apply_top_p(s, st); break;
        case STEP_MIN_P: apply_min_p(s, st); break;
        case STEP_TEMP: apply_temp(s, st); break;
        case STEP_GREEDY: keep_best(s); break;
        case STEP_DIST: apply_dist(s, st); break;
        }
    }
    if (s->n > 1) keep_best(s);
}

static int32_t reserve_vocab(llm_sampler *s, int32_t n_vocab) {
    if (n_vocab <= s->cap_vocab) return LLM_STATUS_OK;
    cand *cands = llm_malloc((size_t)n_vocab * sizeof *cands);
    int32_t *counts = llm_calloc((size_t)n_vocab, sizeof *counts);
    if (!cands || !counts) {
        llm_free(cands);
        llm_free(counts);
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "sampler: cannot allocate candidates for %d tokens",
                         (int)n_vocab);
    }
    llm_free(s->cands);
    llm_free(s->counts);
    s->cands = cands;
    s->counts = counts;
    s->cap_vocab = n_vocab;
    return LLM_STATUS_OK;
}

static int32_t sample_row(llm_sampler *s, const float *logits, int32_t n_vocab, llm_token *out) {
    int32_t rc = reserve_vocab(s, n_vocab);
    if (rc != LLM_STATUS_OK) return rc;
    run_chain(s, logits, n_vocab);
    *out = s->cands[0].id;
    return LLM_STATUS_OK;
}

static void hist_push(step *st, llm_token t) {
    if (st->hist_len == st->hist_cap) {
        const int32_t limit = st->last_n > 0 ? st->last_n : INT32_MAX;
        if (st->hist_cap < limit) {
            int32_t cap = st->hist_cap < 32 ? 64 : (st->hist_cap > limit / 2 ? limit : st->hist_cap * 2);
            if (cap > limit) cap = limit;
            llm_token *h = llm_malloc((size_t)cap * sizeof *h);
            if (h) {
                for (int32_t i = 0; i < st->hist_len; i++) h[i] = hist_at(st, i);
                llm_free(st->hist);
                st->hist = h;
                st->hist_cap = cap;
                st->hist_head = 0;
            } else if (st->hist_cap == 0) {
                llm_log(LLM_LOG_WARN, "sampler: out of memory for the penalty history; token dropped");
                return;
            } else {
                llm_log(LLM_LOG_WARN, "sampler: out of memory growing the penalty history; "
                                      "keeping the last %d tokens", (int)st->hist_cap);
            }
        }
        if (st->hist_len == st->hist_cap) { /* full: overwrite the oldest */
            st->hist[st->hist_head] = t;
            st->hist_head = st->hist_head + 1 == st->hist_cap ? 0 : st->hist_head + 1;
            return;
        }
    }
    int32_t j = st->hist_head + st->hist_len;
    if (j >= st->hist_cap) j -= st->hist_cap;
    st->hist[j] = t;
    st->hist_len++;
}

static int32_t add_step(llm_sampler *s, const step *proto, const char *who) {
    if (!s) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "%s: sampler is NULL", who);
    if (s->n_steps == s->cap_steps) {
        const int32_t cap = s->cap_steps ? s->cap_steps * 2 : 8;
        step *steps = llm_realloc(s->steps, (size_t)cap * sizeof *steps);
        if (!steps) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "%s: out of memory", who);
        s->steps = steps;
        s->cap_steps = cap;
    }
    s->steps[s->n_steps++] = *proto;
    return LLM_STATUS_OK;
}

/* ---- public API ---- */

LLM_API int32_t llm_sampler_chain_create(llm_sampler **out) {
    llm_error_clear();
    if (!out) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "llm_sampler_chain_create: out is NULL");
    *out = NULL;
    llm_sampler *s = llm_calloc(1, sizeof *s);
    if (!s) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "llm_sampler_chain_create: out of memory");
    *out = s;
    return LLM_STATUS_OK;
}

LLM_API void llm_sampler_free(llm_sampler *sampler) {
    if (!sampler) return;
    for (int32_t i = 0; i < sampler->n_steps; i++) llm_free(sampler->steps[i].hist);
    llm_free(sampler->steps);
    llm_free(sampler->cands);
    llm_free(sampler->counts);
    llm_free(sampler);
}

LLM_API int32_t llm_sampler_add_penalties(llm_sampler *s, int32_t last_n, float repeat,
                                          float frequency, float presence) {
    static const char who[] = "llm_sampler_add_penalties";
    llm_error_clear();
    if (last_n < -1) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT,
                         "%s: last_n must be >= 0, or -1 for the whole history (got %d)", who,
                         (int)last_n);
    }
    if (!isfinite(repeat) || repeat <= 0.0f) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT,
                         "%s: repeat penalty must be finite and > 0 (got %g)", who, (double)repeat);
    }
    if (!isfinite(frequency) || !isfinite(presence)) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT,
                         "%s: frequency and presence penalties must be finite", who);
    }
    step st = {.kind = STEP_PENALTIES, .last_n = last_n, .repeat = repeat, .freq = frequency,
               .presence = presence};
    return add_step(s, &st, who);
}

LLM_API int32_t llm_sampler_add_top_k(llm_sampler *s, int32_t k) {
    llm_error_clear();
    step st = {.kind = STEP_TOP_K, .k = k};
    return add_step(s, &st, "llm_sampler_add_top_k");
}

LLM_API int32_t llm_sampler_add_top_p(llm_sampler *s, float p, int32_t min_keep) {
    static const char who[] = "llm_sampler_add_top_p";
    llm_error_clear();
    if (!(p > 0.0f && p <= 1.0f)) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "%s: p must be in (0, 1] (got %g)", who,
                         (double)p);
    }
    if (min_keep < 0) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "%s: min_keep must be >= 0 (got %d)", who,
                         (int)min_keep);
    }
    step st = {.kind = STEP_TOP_P, .p = p, .min_keep = LLM_MAX(min_keep, 1)};
    return add_step(s, &st, who);
}

LLM_API int32_t llm_sampler_add_min_p(llm_sampler *s, float p, int32_t min_keep) {
    static const char who[] = "llm_sampler_add_min_p";
    llm_error_clear();
    if (isnan(p) || p > 1.0f) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "%s: p must be <= 1 (<= 0: off; got %g)", who,
                         (double)p);
    }
    if (min_keep < 0) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "%s: min_keep must be >= 0 (got %d)", who,
                         (int)min_keep);
    }
    step st = {.kind = STEP_MIN_P, .p = p, .min_keep = LLM_MAX(min_keep, 1)};
    return add_step(s, &st, who);
}

LLM_API int32_t llm_sampler_add_temp(llm_sampler *s, float temperature) {
    static const char who[] = "llm_sampler_add_temp";
    llm_error_clear();
    if (isnan(temperature) || isinf(temperature)) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "%s: temperature must be finite (got %g)",
                         who, (double)temperature);
    }
    step st = {.kind = STEP_TEMP, .temp = temperature};
    return add_step(s, &st, who);
}

LLM_API int32_t llm_sampler_add_greedy(llm_sampler *s) {
    llm_error_clear();
    step st = {.kind = STEP_GREEDY};
    return add_step(s, &st, "llm_sampler_add_greedy");
}

LLM_API int32_t llm_sampler_add_dist(llm_sampler *s, uint32_t seed) {
    llm_error_clear();
    step st = {.kind = STEP_DIST, .seed = seed};
    int32_t rc = add_step(s, &st, "llm_sampler_add_dist");
    if (rc == LLM_STATUS_OK) dist_seed(&s->steps[s->n_steps - 1]);
    return rc;
}

LLM_API int32_t llm_sampler_sample_logits(llm_sampler *s, const float *logits, int32_t n_vocab,
                                          llm_token *out) {
    static const char who[] = "llm_sampler_sample_logits";
    llm_error_clear();
    if (out) *out = -1;
    if (!s || !logits || !out) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "%s: sampler, logits and out must be non-NULL",
                         who);
    }
    if (n_vocab <= 0) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "%s: n_vocab must be > 0 (got %d)", who,
                         (int)n_vocab);
    }
    return sample_row(s, logits, n_vocab, out);
}

LLM_API int32_t llm_sampler_sample(llm_sampler *s, llm_context *ctx, int32_t idx,
                                   llm_token *out) {
    static const char who[] = "llm_sampler_sample";
    llm_error_clear();
    if (out) *out = -1;
    if (!s || !ctx || !out) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "%s: sampler, ctx and out must be non-NULL",
                         who);
    }
    const float *logits = llm_get_logits_ith(ctx, idx);
    if (!logits) return LLM_STATUS_INVALID_ARGUMENT; /* the message is llm_get_logits_ith's */
    const int32_t n_vocab = llm_model_n_vocab(llm_context_model(ctx));
    if (n_vocab <= 0) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "%s: the context's model has no vocabulary",
                         who);
    }
    int32_t rc = sample_row(s, logits, n_vocab, out);
    if (rc != LLM_STATUS_OK) return rc;
    llm_sampler_accept(s, *out);
    return LLM_STATUS_OK;
}

LLM_API void llm_sampler_accept(llm_sampler *s, llm_token token) {
    if (!s || token < 0) return;
    for (int32_t i = 0; i < s->n_steps; i++) {
        step *st = &s->steps[i];
        if (st->kind == STEP_PENALTIES && !penalties_noop(st)) hist_push(st, token);
    }
}

LLM_API void llm_sampler_reset(llm_sampler *s) {
    if (!s) return;
    for (int32_t i = 0; i < s->n_steps; i++) {
        step *st = &s->steps[i];
        if (st->kind == STEP_PENALTIES) {
            st->hist_len = 0;
            st->hist_head = 0;
        } else if (st->kind == STEP_DIST) {
            dist_seed(st);
        }
    }
}
