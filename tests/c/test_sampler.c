/* test_sampler.c -- the sampler chain against an independent reference written here.
 *
 * Every check runs llm_sampler_sample_logits on seeded random logits of odd sizes: greedy
 * and top_k(1) are the argmax; seeds make the draws reproducible; over many draws the set of
 * tokens drawn equals the reference's kept set and the frequencies pass a chi-square test
 * against softmax(logits / T) restricted to that set; penalties move the argmax exactly as
 * the reference formula does. */
#include "libllm.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_RNG_SEED 0x1234567887654321ull
#include "test_common.h"

/* ---- test randomness (independent of the sampler's generator) ---- */

static double rnd_unit(void) { return (double)(rnd_u64() >> 11) / 9007199254740992.0; }

static double rnd_normal(void) {
    double u1 = rnd_unit(), u2 = rnd_unit();
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void fill_logits(float *x, int n, double scale, double shift) {
    for (int i = 0; i < n; i++) x[i] = (float)(rnd_normal() * scale + shift);
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (x[i] > x[best]) best = i;
    }
    return best;
}

/* ---- the reference chain ---- */

typedef enum { OP_TOP_K, OP_TOP_P, OP_MIN_P, OP_TEMP } op_kind;

typedef struct op {
    op_kind kind;
    double v;     /* k, p or t */
    int min_keep;
} op;

static const double *g_sort_logits;

static int cmp_idx_desc(const void *pa, const void *pb) {
    int a = *(const int *)pa, b = *(const int *)pb;
    if (g_sort_logits[a] > g_sort_logits[b]) return -1;
    if (g_sort_logits[a] < g_sort_logits[b]) return 1;
    return a < b ? -1 : a > b;
}

/* Runs ops over logits (double copies). Sets keep[i] and prob[i] (the final distribution).
 * Returns 0 when a filter decision lies too close to its threshold to be trusted across the
 * float / double difference, 1 otherwise. */
static int reference(const float *logits, int n, const op *ops, int n_ops, unsigned char *keep,
                     double *prob) {
    double *l = malloc((size_t)n * sizeof *l);
    int *idx = malloc((size_t)n * sizeof *idx);
    int ok = 1;
    for (int i = 0; i < n; i++) {
        l[i] = logits[i];
        keep[i] = 1;
    }
    for (int o = 0; o < n_ops; o++) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (keep[i]) idx[m++] = i;
        }
        g_sort_logits = l;
        qsort(idx, (size_t)m, sizeof *idx, cmp_idx_desc);
        double mx = l[idx[0]], sum = 0.0;
        for (int j = 0; j < m; j++) sum += exp(l[idx[j]] - mx);
        if (ops[o].kind == OP_TOP_K) {
            int k = (int)ops[o].v;
            if (k > 0 && k < m) {
                if (l[idx[k - 1]] - l[idx[k]] < 1e-5) ok = 0;
                for (int j = k; j < m; j++) keep[idx[j]] = 0;
            }
        } else if (ops[o].kind == OP_TOP_P) {
            double p = ops[o].v, cum = 0.0;
            if (p < 1.0) {
                int last = m;
                for (int j = 0; j < m; j++) {
                    double q = exp(l[idx[j]] - mx) / sum;
                    cum += q;
                    if (fabs(cum - p) < 1e-5) ok = 0;
                    if (cum >= p && j + 1 >= ops[o].min_keep) {
                        last = j + 1;
                        break;
                    }
                }
                for (int j = last; j < m; j++) keep[idx[j]] = 0;
            }
        } else if (ops[o].kind == OP_MIN_P) {
            double p = ops[o].v;
            if (p > 0.0) {
                int kept = 0;
                for (int j = 0; j < m; j++) {
                    double r = exp(l[idx[j]] - mx);
                    if (fabs(r - p) < 1e-5 * p) ok = 0;
                    kept += r >= p;
                }
                if (kept < ops[o].min_keep) kept = ops[o].min_keep < m ? ops[o].min_keep : m;
                for (int j = kept; j < m; j++) keep[idx[j]] = 0;
            }
        } else {
            double t = ops[o].v;
            if (t <= 0.0) {
                for (int j = 1; j < m; j++) keep[idx[j]] = 0;
            } else {
                for (int i = 0; i < n; i++) l[i] /= t;
            }
        }
    }
    double mx = -INFINITY, sum = 0.0;
    for (int i = 0; i < n; i++) {
        if (keep[i] && l[i] > mx) mx = l[i];
    }
    for (int i = 0; i < n; i++) {
        prob[i] = keep[i] ? exp(l[i] - mx) : 0.0;
        sum += prob[i];
    }
    for (int i = 0; i < n; i++) prob[i] /= sum;
    free(l);
    free(idx);
    return ok;
}

static llm_sampler *make_chain(const op *ops, int n_ops, uint32_t seed) {
    llm_sampler *s = NULL;
    if (llm_sampler_chain_create(&s) != LLM_STATUS_OK) return NULL;
    for (int o = 0; o < n_ops; o++) {
        int32_t rc = LLM_STATUS_OK;
        switch (ops[o].kind) {
        case OP_TOP_K: rc = llm_sampler_add_top_k(s, (int32_t)ops[o].v); break;
        case OP_TOP_P: rc = llm_sampler_add_top_p(s, (float)ops[o].v, ops[o].min_keep); break;
        case OP_MIN_P: rc = llm_sampler_add_min_p(s, (float)ops[o].v, ops[o].min_keep); break;
        case OP_TEMP: rc = llm_sampler_add_temp(s, (float)ops[o].v); break;
        }
        if (rc != LLM_STATUS_OK) {
            llm_sampler_free(s);
            return NULL;
        }
    }
    if (llm_sampler_add_dist(s, seed) != LLM_STATUS_OK) {
        llm_sampler_free(s);
        return NULL;
    }
    return s;
}

/* Draws n_draws tokens and compares support and frequencies with the reference. */
static void check_distribution(const char *name, int n, const op *ops, int n_ops, double scale,
                               int n_draws) {
    float *logits = malloc((size_t)n * sizeof *logits);
    unsigned char *keep = malloc((size_t)n);
    double *prob = malloc((size_t)n * sizeof *prob);
    long *hits = calloc((size_t)n, sizeof *hits);
    int tries = 0;
    double min_q = 0.0;
    for (;;) {
        fill_logits(logits, n, scale, 0.5);
        int ok = reference(logits, n, ops, n_ops, keep, prob);
        min_q = 1.0;
        for (int i = 0; i < n; i++) {
            if (keep[i] && prob[i] < min_q) min_q = prob[i];
        }
        /* every kept token should be expected at least 15 times so that support is testable */
        if (ok && min_q * n_draws >= 15.0) break;
        if (++tries > 200) break;
    }
    CHECK(tries <= 200, "%s: no usable logits found", name);

    llm_sampler *s = make_chain(ops, n_ops, 1234u + (uint32_t)n);
    CHECK(s != NULL, "%s: chain creation failed: %s", name, llm_last_error());
    if (s) {
        int bad_rc = 0;
        for (int d = 0; d < n_draws; d++) {
            llm_token t = -1;
            if (llm_sampler_sample_logits(s, logits, n, &t) != LLM_STATUS_OK || t < 0 || t >= n) {
                bad_rc++;
                continue;
            }
            hits[t]++;
        }
        CHECK(bad_rc == 0, "%s: %d draws failed", name, bad_rc);
        int outside = 0, missing = 0, m = 0;
        double chi2 = 0.0;
        for (int i = 0; i < n; i++) {
            if (!keep[i]) {
                outside += hits[i] != 0;
                continue;
            }
            m++;
            missing += hits[i] == 0;
            double e = prob[i] * n_draws, dlt = (double)hits[i] - e;
            chi2 += dlt * dlt / e;
        }
        int df = m > 1 ? m - 1 : 1;
        double limit = df + 6.0 * sqrt(2.0 * df) + 10.0;
        CHECK(outside == 0, "%s: %d tokens drawn outside the kept set", name, outside);
        CHECK(missing == 0, "%s: %d kept tokens never drawn", name, missing);
        CHECK(m <= 1 || chi2 < limit, "%s: chi2 %.1f over %d kept tokens (limit %.1f)", name,
              chi2, m, limit);
        llm_sampler_free(s);
    }
    free(logits);
    free(keep);
    free(prob);
    free(hits);
}

/* ---- tests ---- */

static const int k_sizes[] = {1, 2, 3, 7, 33, 101, 257, 1001, 4099, 32003};
#define N_SIZES ((int)(sizeof k_sizes / sizeof k_sizes[0]))

static void test_greedy_is_argmax(void) {
    llm_sampler *greedy = NULL, *empty = NULL, *topk1 = NULL, *cold = NULL, *mid = NULL;
    CHECK(llm_sampler_chain_create(&greedy) == 0 && llm_sampler_add_greedy(greedy) == 0,
          "greedy chain");
    CHECK(llm_sampler_chain_create(&empty) == 0, "empty chain");
    CHECK(llm_sampler_chain_create(&topk1) == 0 && llm_sampler_add_top_k(topk1, 1) == 0 &&
              llm_sampler_add_dist(topk1, 7) == 0,
          "top_k 1 chain");
    /* temperature <= 0 picks greedily even before dist */
    CHECK(llm_sampler_chain_create(&cold) == 0 && llm_sampler_add_temp(cold, 0.0f) == 0 &&
              llm_sampler_add_dist(cold, 9) == 0,
          "temp 0 chain");
    /* a selector in the middle fixes the token for the rest of the chain */
    CHECK(llm_sampler_chain_create(&mid) == 0 && llm_sampler_add_greedy(mid) == 0 &&
              llm_sampler_add_temp(mid, 5.0f) == 0 && llm_sampler_add_dist(mid, 3) == 0,
          "greedy then dist chain");
    llm_sampler *all[] = {greedy, empty, topk1, cold, mid};
    const char *names[] = {"greedy", "empty", "top_k 1", "temp 0", "greedy+dist"};
    for (int si = 0; si < N_SIZES; si++) {
        int n = k_sizes[si];
        float *x = malloc((size_t)n * sizeof *x);
        for (int trial = 0; trial < 5; trial++) {
            fill_logits(x, n, 3.0, trial - 2.0);
            int want = argmax(x, n);
            for (int c = 0; c < 5; c++) {
                llm_token t = -1;
                int32_t rc = llm_sampler_sample_logits(all[c], x, n, &t);
                CHECK(rc == 0 && t == want, "%s n=%d: got %d want %d (%s)", names[c], n, (int)t,
                      want, llm_last_error());
            }
        }
        free(x);
    }
    for (int c = 0; c < 5; c++) llm_sampler_free(all[c]);
}

static void test_ties(void) {
    float x[9] = {0.5f, 1.0f, -2.0f, 3.0f, 0.0f, 3.0f, 1.0f, 3.0f, 2.0f};
    llm_sampler *s = NULL, *k = NULL;
    llm_sampler_chain_create(&s);
    llm_sampler_add_greedy(s);
    llm_token t = -1;
    CHECK(llm_sampler_sample_logits(s, x, 9, &t) == 0 && t == 3, "greedy tie: got %d", (int)t);
    /* top_k 2 over the three tied maxima keeps ids 3 and 5; a following greedy picks 3 */
    llm_sampler_chain_create(&k);
    llm_sampler_add_top_k(k, 2);
    llm_sampler_add_dist(k, 5);
    int seen[9] = {0};
    for (int i = 0; i < 400; i++) {
        CHECK(llm_sampler_sample_logits(k, x, 9, &t) == 0 && t >= 0 && t < 9, "top_k tie draw");
        if (t >= 0 && t < 9) seen[t]++;
    }
    CHECK(seen[3] > 0 && seen[5] > 0 && seen[7] == 0 && seen[3] + seen[5] == 400,
          "top_k tie set: 3:%d 5:%d 7:%d", seen[3], seen[5], seen[7]);
    llm_sampler_free(s);
    llm_sampler_free(k);
}

static void draw_seq(llm_sampler *s, const float *x, int n, llm_token *out, int count) {
    for (int i = 0; i < count; i++) {
        if (llm_sampler_sample_logits(s, x, n, &out[i]) != 0) out[i] = -1;
    }
}

static void test_seeds(void) {
    enum { N = 301, D = 300 };
    float x[N];
    fill_logits(x, N, 1.0, 0.0);
    const op ops[] = {{OP_TOP_K, 100, 1}, {OP_TEMP, 1.5, 1}};
    llm_sampler *a = make_chain(ops, 2, 42), *b = make_chain(ops, 2, 42), *c = make_chain(ops, 2, 43);
    llm_token sa[D], sb[D], sc[D], sr[D];
    draw_seq(a, x, N, sa, D);
    draw_seq(b, x, N, sb, D);
    draw_seq(c, x, N, sc, D);
    CHECK(memcmp(sa, sb, sizeof sa) == 0, "same seed, same sequence");
    int differ = 0;
    for (int i = 0; i < D; i++) differ += sa[i] != sc[i];
    CHECK(differ > D / 2, "different seed: only %d of %d draws differ", differ, D);
    llm_sampler_reset(a);
    draw_seq(a, x, N, sr, D);
    CHECK(memcmp(sa, sr, sizeof sa) == 0, "reset replays the sequence");
    int distinct = 0;
    for (int i = 1; i < D; i++) distinct += sa[i] != sa[0];
    CHECK(distinct > 0, "draws vary");
    llm_sampler_free(a);
    llm_sampler_free(b);
    llm_sampler_free(c);

    /* the random seed gives working, (almost surely) different chains */
    llm_sampler *r1 = make_chain(ops, 2, 0xFFFFFFFFu), *r2 = make_chain(ops, 2, 0xFFFFFFFFu);
    draw_seq(r1, x, N, sa, D);
    draw_seq(r2, x, N, sb, D);
    differ = 0;
    for (int i = 0; i < D; i++) differ += sa[i] != sb[i];
    CHECK(differ > 0 && sa[0] >= 0, "random seeds differ");
    llm_sampler_free(r1);
    llm_sampler_free(r2);
}

static void test_distributions(void) {
    const op only_temp[] = {{OP_TEMP, 1.3, 1}};
    check_distribution("temp", 37, only_temp, 1, 1.0, 60000);

    const op topk[] = {{OP_TOP_K, 17, 1}, {OP_TEMP, 0.8, 1}};
    check_distribution("top_k", 1001, topk, 2, 1.0, 60000);

    const op topp[] = {{OP_TOP_P, 0.6, 1}, {OP_TEMP, 1.0, 1}};
    check_distribution("top_p", 211, topp, 2, 1.5, 60000);

    const op topp_big[] = {{OP_TOP_P, 0.9, 1}};
    check_distribution("top_p larger vocab", 4099, topp_big, 1, 4.0, 30000);

    const op minp[] = {{OP_MIN_P, 0.1, 1}, {OP_TEMP, 0.7, 1}};
    check_distribution("min_p", 999, minp, 2, 1.2, 60000);

    const op combo[] = {{OP_TOP_K, 40, 1}, {OP_TOP_P, 0.95, 1}, {OP_MIN_P, 0.05, 1}, {OP_TEMP, 0.8, 1}};
    check_distribution("top_k+top_p+min_p+temp", 4099, combo, 4, 1.0, 60000);

    const op keep[] = {{OP_TOP_P, 0.01, 5}, {OP_MIN_P, 0.99, 3}, {OP_TEMP, 3.0, 1}};
    check_distribution("min_keep", 503, keep, 3, 2.0, 30000);

    const op order[] = {{OP_TEMP, 2.0, 1}, {OP_MIN_P, 0.2, 1}, {OP_TOP_K, 9, 1}};
    check_distribution("temp first", 777, order, 3, 1.0, 60000);
}

static int cmp_float_desc(const void *pa, const void *pb) {
    float a = *(const float *)pa, b = *(const float *)pb;
    return a > b ? -1 : a < b;
}

static float kth_largest(const float *x, int n, int k) {
    float *c = malloc((size_t)n * sizeof *c);
    memcpy(c, x, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_float_desc);
    float v = c[k - 1];
    free(c);
    return v;
}

/* penalised logits by the llama.cpp formula, over the last last_n of hist (-1: all) */
static void ref_penalize(float *x, int n, const llm_token *hist, int n_hist, int last_n,
                         float repeat, float freq, float presence) {
    int from = last_n < 0 || last_n > n_hist ? 0 : n_hist - last_n;
    if (last_n == 0) return;
    int *count = calloc((size_t)n, sizeof *count);
    for (int i = from; i < n_hist; i++) count[hist[i]]++;
    for (int i = 0; i < n; i++) {
        if (count[i] == 0) continue;
        if (x[i] <= 0.0f) {
            x[i] *= repeat;
        } else {
            x[i] /= repeat;
        }
        x[i] -= (float)count[i] * freq + presence;
    }
    free(count);
}

static void test_penalties(void) {
    enum { N = 97, H = 40 };
    int agree = 0, trials = 0, moved = 0;
    const int last_ns[] = {1, 3, 16, 64, -1};
    for (int trial = 0; trial < 300; trial++) {
        float x[N], want_x[N];
        llm_token hist[H];
        fill_logits(x, N, 1.0, trial % 3 == 0 ? -1.5 : 0.3);
        int n_hist = (int)(rnd_u64() % H) + 1;
        /* histories concentrated on the top tokens so that penalties decide the argmax */
        for (int i = 0; i < n_hist; i++) {
            hist[i] = (rnd_u64() % 2) ? argmax(x, N) : (llm_token)(rnd_u64() % N);
        }
        int last_n = last_ns[trial % 5];
        float repeat = 1.0f + (float)rnd_unit() * 1.5f;
        float freq = (trial % 4 == 1) ? 0.0f : (float)rnd_unit() * 0.5f;
        float presence = (trial % 4 == 2) ? 0.0f : (float)rnd_unit() * 0.8f;
        memcpy(want_x, x, sizeof x);
        ref_penalize(want_x, N, hist, n_hist, last_n, repeat, freq, presence);
        /* odd trials put top_k(K) before the penalties: only the K best raw logits compete */
        const int K = 30, pre_top_k = trial % 2;
        if (pre_top_k) {
            float kth = kth_largest(x, N, K);
            for (int i = 0; i < N; i++) {
                if (x[i] < kth) want_x[i] = -INFINITY;
            }
        }
        int want = argmax(want_x, N);
        /* skip near-ties between the two best penalised logits */
        float best = want_x[want], second = -INFINITY;
        for (int i = 0; i < N; i++) {
            if (i != want && want_x[i] > second) second = want_x[i];
        }
        if (best - second < 1e-4f) continue;
        llm_sampler *s = NULL;
        llm_sampler_chain_create(&s);
        if (pre_top_k) llm_sampler_add_top_k(s, K);
        CHECK(llm_sampler_add_penalties(s, last_n, repeat, freq, presence) == 0, "add_penalties");
        llm_sampler_add_greedy(s);
        for (int i = 0; i < n_hist; i++) llm_sampler_accept(s, hist[i]);
        llm_token t = -1;
        llm_sampler_sample_logits(s, x, N, &t);
        trials++;
        agree += t == want;
        moved += want != argmax(x, N);
        if (t != want) {
            fprintf(stderr, "penalties trial %d: got %d want %d (last_n %d)\n", trial, (int)t,
                    want, last_n);
        }
        /* reset forgets the history */
        llm_sampler_reset(s);
        llm_sampler_sample_logits(s, x, N, &t);
        CHECK(t == argmax(x, N), "after reset: got %d want %d", (int)t, argmax(x, N));
        llm_sampler_free(s);
    }
    CHECK(trials > 200 && agree == trials, "penalties: %d of %d trials agree", agree, trials);
    CHECK(moved > trials / 5, "penalties moved the argmax in only %d of %d trials", moved, trials);

    /* exact ring window: with last_n 3 only the last three accepted tokens count */
    {
        float x[6] = {5.0f, 4.9f, 4.8f, 0.0f, 0.0f, 0.0f};
        llm_sampler *s = NULL;
        llm_sampler_chain_create(&s);
        llm_sampler_add_penalties(s, 3, 1.0f, 0.0f, 1.0f);
        llm_sampler_add_greedy(s);
        llm_token t = -1;
        const llm_token seq[] = {1, 1, 0, 2, 2};
        for (int i = 0; i < 5; i++) llm_sampler_accept(s, seq[i]);
        /* window {0, 2, 2}: 0 -> 4.0, 2 -> 3.8, 1 untouched at 4.9 */
        llm_sampler_sample_logits(s, x, 6, &t);
        CHECK(t == 1, "ring window: got %d", (int)t);
        llm_sampler_accept(s, 1); /* window {2, 2, 1} */
        llm_sampler_sample_logits(s, x, 6, &t);
        CHECK(t == 0, "ring window slides: got %d", (int)t);
        /* out-of-range and negative tokens are ignored */
        llm_sampler_accept(s, -5);
        llm_sampler_accept(s, 1000);
        llm_sampler_sample_logits(s, x, 6, &t);
        CHECK(t == 0 || t == 1, "junk tokens harmless: got %d", (int)t);
        llm_sampler_free(s);
    }

    /* repeat multiplies negative logits (pushing them down) and divides positive ones */
    {
        float x[5] = {-1.0f, -1.2f, 2.0f, 1.5f, -3.0f};
        llm_sampler *s = NULL;
        llm_sampler_chain_create(&s);
        llm_sampler_add_penalties(s, 8, 1.5f, 0.0f, 0.0f);
        llm_sampler_add_greedy(s);
        llm_token t = -1;
        llm_sampler_sample_logits(s, x, 5, &t);
        CHECK(t == 2, "no history: got %d", (int)t);
        llm_sampler_accept(s, 2); /* 2.0 / 1.5 = 1.33 < 1.5 */
        llm_sampler_sample_logits(s, x, 5, &t);
        CHECK(t == 3, "positive logit divided: got %d", (int)t);
        llm_sampler_free(s);
        float y[3] = {-1.0f, -1.2f, -5.0f};
        llm_sampler_chain_create(&s);
        llm_sampler_add_penalties(s, 8, 1.5f, 0.0f, 0.0f);
        llm_sampler_add_greedy(s);
        llm_sampler_accept(s, 0); /* -1.0 * 1.5 = -1.5 < -1.2 */
        llm_sampler_sample_logits(s, y, 3, &t);
        CHECK(t == 1, "negative logit multiplied: got %d", (int)t);
        llm_sampler_free(s);
    }

    /* -1 keeps the whole history, across growth of the buffer */
    {
        enum { NV = 11 };
        float x[NV];
        for (int i = 0; i < NV; i++) x[i] = (float)i * 0.01f;
        llm_sampler *s = NULL;
        llm_sampler_chain_create(&s);
        llm_sampler_add_penalties(s, -1, 1.0f, 0.001f, 0.0f);
        llm_sampler_add_greedy(s);
        /* token 10 accepted first, then 5000 others: 10 stays penalised by 0.001 */
        llm_sampler_accept(s, 10);
        for (int i = 0; i < 5000; i++) llm_sampler_accept(s, 0);
        llm_token t = -1;
        llm_sampler_sample_logits(s, x, NV, &t);
        CHECK(t == 10, "whole history: 10 once -> still best, got %d", (int)t); /* 0.099 > 0.09 */
        for (int i = 0; i < 20; i++) llm_sampler_accept(s, 10);
        llm_sampler_sample_logits(s, x, NV, &t);
        CHECK(t == 9, "whole history: 10 x21 -> 9, got %d", (int)t); /* 0.1 - 0.021 < 0.09 */
        llm_sampler_free(s);
    }

    /* the penalised distribution, not only its argmax */
    {
        enum { NV = 41 };
        float x[NV], px[NV];
        fill_logits(x, NV, 1.0, 0.0);
        const llm_token hist[] = {3, 3, 7, argmax(x, NV), 11, 3, 20};
        memcpy(px, x, sizeof x);
        ref_penalize(px, NV, hist, 7, 64, 1.3f, 0.2f, 0.4f);
        unsigned char keep[NV];
        double prob[NV];
        reference(px, NV, NULL, 0, keep, prob);
        llm_sampler *s = NULL;
        llm_sampler_chain_create(&s);
        llm_sampler_add_penalties(s, 64, 1.3f, 0.2f, 0.4f);
        llm_sampler_add_dist(s, 99);
        for (int i = 0; i < 7; i++) llm_sampler_accept(s, hist[i]);
        long hits[NV] = {0};
        const int D = 60000;
        for (int d = 0; d < D; d++) {
            llm_token t = -1;
            llm_sampler_sample_logits(s, x, NV, &t);
            if (t >= 0 && t < NV) hits[t]++;
        }
        double chi2 = 0.0;
        for (int i = 0; i < NV; i++) {
            double e = prob[i] * D, dlt = hits[i] - e;
            chi2 += dlt * dlt / e;
        }
        CHECK(chi2 < 40 + 6 * sqrt(80.0) + 10, "penalised distribution chi2 %.1f", chi2);
        llm_sampler_free(s);
    }

    /* the all-default penalties are a no-op */
    {
        enum { NV = 57 };
        float x[NV];
        fill_logits(x, NV, 1.0, 0.0);
        llm_sampler *s = NULL;
        llm_sampler_chain_create(&s);
        llm_sampler_add_penalties(s, 64, 1.0f, 0.0f, 0.0f);
        llm_sampler_add_greedy(s);
        for (int i = 0; i < 10; i++) llm_sampler_accept(s, argmax(x, NV));
        llm_token t = -1;
        llm_sampler_sample_logits(s, x, NV, &t);
        CHECK(t == argmax(x, NV), "default penalties are a no-op");
        llm_sampler_free(s);
    }
}

static void test_no_alloc_after_first(void) {
    enum { N = 32003 };
    float *x = malloc(N * sizeof *x);
    fill_logits(x, N, 2.0, 0.0);
    llm_sampler *s = NULL;
    llm_sampler_chain_create(&s);
    llm_sampler_add_penalties(s, 64, 1.1f, 0.1f, 0.1f);
    llm_sampler_add_top_k(s, 40);
    llm_sampler_add_top_p(s, 0.95f, 1);
    llm_sampler_add_min_p(s, 0.05f, 1);
    llm_sampler_add_temp(s, 0.8f);
    llm_sampler_add_dist(s, 1);
    llm_token t = -1;
    llm_sampler_accept(s, 5);
    llm_sampler_sample_logits(s, x, N, &t);
    llm_alloc_counter counter = {0, 0};
    llm_alloc_counter *prev = llm_alloc_counter_push(&counter);
    for (int i = 0; i < 100; i++) {
        llm_sampler_sample_logits(s, x, N, &t);
        llm_sampler_accept(s, t);
    }
    llm_alloc_counter_pop(prev);
    CHECK(counter.n_alloc == 0, "%llu allocations after the first sample",
          (unsigned long long)counter.n_alloc);
    /* a smaller vocabulary reuses the buffer too */
    prev = llm_alloc_counter_push(&counter);
    llm_sampler_sample_logits(s, x, 1001, &t);
    llm_alloc_counter_pop(prev);
    CHECK(counter.n_alloc == 0 && t >= 0 && t < 1001, "smaller vocab: %llu allocations, t %d",
          (unsigned long long)counter.n_alloc, (int)t);
    llm_sampler_free(s);
    free(x);
}

static void test_nonfinite(void) {
    enum { N = 15 };
    float x[N];
    fill_logits(x, N, 1.0, 0.0);
    x[0] = NAN;
    x[4] = NAN;
    x[9] = 10.0f;
    x[12] = NAN;
    llm_sampler *g = NULL, *d = NULL;
    llm_sampler_chain_create(&g);
    llm_sampler_add_greedy(g);
    llm_sampler_chain_create(&d);
    llm_sampler_add_top_p(d, 0.99f, 1);
    llm_sampler_add_min_p(d, 0.01f, 1);
    llm_sampler_add_dist(d, 4);
    llm_token t = -1;
    CHECK(llm_sampler_sample_logits(g, x, N, &t) == 0 && t == 9, "NaN skipped: got %d", (int)t);
    for (int i = 0; i < 200; i++) {
        CHECK(llm_sampler_sample_logits(d, x, N, &t) == 0 && t != 0 && t != 4 && t != 12,
              "NaN never drawn: got %d", (int)t);
    }
    /* all NaN: any valid token, no crash */
    for (int i = 0; i < N; i++) x[i] = NAN;
    CHECK(llm_sampler_sample_logits(g, x, N, &t) == 0 && t >= 0 && t < N, "all NaN greedy");
    CHECK(llm_sampler_sample_logits(d, x, N, &t) == 0 && t >= 0 && t < N, "all NaN dist");
    /* +inf logits take all the mass */
    for (int i = 0; i < N; i++) x[i] = (float)i;
    x[3] = INFINITY;
    x[8] = INFINITY;
    x[10] = -INFINITY;
    int seen3 = 0, seen8 = 0, other = 0;
    llm_sampler *u = NULL;
    llm_sampler_chain_create(&u);
    llm_sampler_add_temp(u, 0.5f);
    llm_sampler_add_dist(u, 8);
    for (int i = 0; i < 400; i++) {
        llm_sampler_sample_logits(u, x, N, &t);
        seen3 += t == 3;
        seen8 += t == 8;
        other += t != 3 && t != 8;
    }
    CHECK(seen3 > 100 && seen8 > 100 && other == 0, "+inf share: %d %d %d", seen3, seen8, other);
    CHECK(llm_sampler_sample_logits(g, x, N, &t) == 0 && t == 3, "+inf greedy lowest id");
    llm_sampler_free(g);
    llm_sampler_free(d);
    llm_sampler_free(u);
}

static void test_errors(void) {
    llm_sampler *s = NULL;
    float x[3] = {1, 2, 3};
    llm_token t = 0;
    CHECK(llm_sampler_chain_create(NULL) == LLM_STATUS_INVALID_ARGUMENT, "create NULL");
    CHECK(llm_last_error()[0] != '\0', "message set");
    CHECK(llm_sampler_chain_create(&s) == 0 && s, "create");
    CHECK(llm_last_error()[0] == '\0', "message cleared on success");
    CHECK(llm_sampler_sample_logits(NULL, x, 3, &t) == LLM_STATUS_INVALID_ARGUMENT, "NULL s");
    CHECK(llm_sampler_sample_logits(s, NULL, 3, &t) == LLM_STATUS_INVALID_ARGUMENT, "NULL logits");
    CHECK(llm_sampler_sample_logits(s, x, 3, NULL) == LLM_STATUS_INVALID_ARGUMENT, "NULL out");
    CHECK(llm_sampler_sample_logits(s, x, 0, &t) == LLM_STATUS_INVALID_ARGUMENT, "n_vocab 0");
    CHECK(llm_sampler_sample_logits(s, x, -4, &t) == LLM_STATUS_INVALID_ARGUMENT, "n_vocab < 0");
    CHECK(strstr(llm_last_error(), "n_vocab") != NULL, "message names n_vocab: %s",
          llm_last_error());
    CHECK(llm_sampler_add_top_p(s, 0.0f, 1) == LLM_STATUS_INVALID_ARGUMENT, "top_p 0");
    CHECK(llm_sampler_add_top_p(s, 1.5f, 1) == LLM_STATUS_INVALID_ARGUMENT, "top_p 1.5");
    CHECK(llm_sampler_add_top_p(s, NAN, 1) == LLM_STATUS_INVALID_ARGUMENT, "top_p NaN");
    CHECK(llm_sampler_add_top_p(s, 0.5f, -1) == LLM_STATUS_INVALID_ARGUMENT, "top_p min_keep");
    CHECK(llm_sampler_add_min_p(s, 1.5f, 1) == LLM_STATUS_INVALID_ARGUMENT, "min_p 1.5");
    CHECK(llm_sampler_add_min_p(s, NAN, 1) == LLM_STATUS_INVALID_ARGUMENT, "min_p NaN");
    CHECK(llm_sampler_add_temp(s, NAN) == LLM_STATUS_INVALID_ARGUMENT, "temp NaN");
    CHECK(llm_sampler_add_temp(s, INFINITY) == LLM_STATUS_INVALID_ARGUMENT, "temp inf");
    CHECK(llm_sampler_add_penalties(s, -2, 1.1f, 0, 0) == LLM_STATUS_INVALID_ARGUMENT, "last_n -2");
    CHECK(llm_sampler_add_penalties(s, 64, 0.0f, 0, 0) == LLM_STATUS_INVALID_ARGUMENT, "repeat 0");
    CHECK(llm_sampler_add_penalties(s, 64, 1.0f, NAN, 0) == LLM_STATUS_INVALID_ARGUMENT, "freq NaN");
    CHECK(llm_sampler_add_top_k(NULL, 3) == LLM_STATUS_INVALID_ARGUMENT, "top_k NULL");
    CHECK(llm_sampler_add_greedy(NULL) == LLM_STATUS_INVALID_ARGUMENT, "greedy NULL");
    CHECK(llm_sampler_add_dist(NULL, 1) == LLM_STATUS_INVALID_ARGUMENT, "dist NULL");
    CHECK(llm_sampler_add_penalties(NULL, 1, 1, 0, 0) == LLM_STATUS_INVALID_ARGUMENT, "pen NULL");
    CHECK(llm_sampler_sample(NULL, NULL, -1, &t) == LLM_STATUS_INVALID_ARGUMENT, "sample NULL");
    CHECK(llm_sampler_sample(s, NULL, -1, &t) == LLM_STATUS_INVALID_ARGUMENT, "sample NULL ctx");
    /* valid edge values are accepted; a failed add leaves the chain usable */
    CHECK(llm_sampler_add_top_p(s, 1.0f, 0) == 0, "top_p 1 is off");
    CHECK(llm_sampler_add_min_p(s, 0.0f, 0) == 0, "min_p 0 is off");
    CHECK(llm_sampler_add_min_p(s, -1.0f, 1) == 0, "min_p < 0 is off");
    CHECK(llm_sampler_add_top_k(s, -3) == 0, "top_k < 0 is off");
    CHECK(llm_sampler_add_penalties(s, 0, 1.5f, 0, 0) == 0, "last_n 0 is off");
    CHECK(llm_sampler_add_temp(s, -1.0f) == 0, "negative temperature is greedy");
    CHECK(llm_sampler_sample_logits(s, x, 3, &t) == 0 && t == 2, "edge chain works: %d", (int)t);
    llm_sampler_accept(NULL, 3);
    llm_sampler_reset(NULL);
    llm_sampler_free(NULL);
    llm_sampler_free(s);
}

/* top_k on orderings that stress selection (ties, sorted runs, few distinct values): every
 * drawn token must lie in the true top k, ties going to the lower ids. */
static void test_selection_patterns(void) {
    enum { N = 9001, D = 300 };
    float *x = malloc(N * sizeof *x);
    float *l = malloc(N * sizeof *l);
    int *idx = malloc(N * sizeof *idx);
    unsigned char *in = malloc(N);
    const int ks[] = {1, 37, 700, 5000};
    const char *pattern[] = {"equal", "ascending", "descending", "sawtooth", "few values"};
    for (int pi = 0; pi < 5; pi++) {
        for (int i = 0; i < N; i++) {
            switch (pi) {
            case 0: x[i] = 1.0f; break;
            case 1: x[i] = (float)i * 1e-3f; break;
            case 2: x[i] = (float)(N - i) * 1e-3f; break;
            case 3: x[i] = (float)(i % 97) * 0.01f; break;
            default: x[i] = (float)(rnd_u64() % 5); break;
            }
        }
        /* reference: indices by (logit desc, id asc) */
        double *dl = malloc(N * sizeof *dl);
        for (int i = 0; i < N; i++) {
            dl[i] = x[i];
            idx[i] = i;
        }
        g_sort_logits = dl;
        qsort(idx, N, sizeof *idx, cmp_idx_desc);
        for (int ki = 0; ki < 4; ki++) {
            const int k = ks[ki];
            memset(in, 0, N);
            for (int j = 0; j < k; j++) in[idx[j]] = 1;
            llm_sampler *s = NULL;
            llm_sampler_chain_create(&s);
            llm_sampler_add_top_k(s, k);
            llm_sampler_add_temp(s, 1e4f); /* nearly uniform over the kept set */
            llm_sampler_add_dist(s, (uint32_t)(pi * 10 + ki));
            int outside = 0, fails = 0;
            memcpy(l, x, N * sizeof *l);
            for (int d = 0; d < D; d++) {
                llm_token t = -1;
                if (llm_sampler_sample_logits(s, x, N, &t) != 0 || t < 0 || t >= N) {
                    fails++;
                    continue;
                }
                outside += !in[t];
            }
            CHECK(fails == 0 && outside == 0, "top_k %d on %s: %d draws outside, %d failed", k,
                  pattern[pi], outside, fails);
            CHECK(memcmp(l, x, N * sizeof *l) == 0, "the logits row is not modified");
            llm_sampler_free(s);
        }
        free(dl);
    }
    free(x);
    free(l);
    free(idx);
    free(in);
}

static void test_large_vocab(void) {
    enum { N = 151936 };
    float *x = malloc(N * sizeof *x);
    fill_logits(x, N, 2.5, 0.0);
    const int want = argmax(x, N);
    x[want] += 0.5f; /* a clear winner: at T = 0.01 the runner-up is e^-50 as likely */
    llm_sampler *s = NULL;
    llm_sampler_chain_create(&s);
    llm_sampler_add_top_k(s, 40);
    llm_sampler_add_temp(s, 0.01f);
    llm_sampler_add_dist(s, 2);
    llm_token t = -1;
    int ok = 0;
    for (int i = 0; i < 50; i++) {
        llm_sampler_sample_logits(s, x, N, &t);
        ok += t == want;
    }
    CHECK(ok == 50, "large vocab low temperature picks the argmax: %d / 50", ok);
    /* a top_k equal to the vocabulary keeps everything */
    llm_sampler *g = NULL;
    llm_sampler_chain_create(&g);
    llm_sampler_add_top_k(g, N);
    llm_sampler_add_top_p(g, 0.999999f, 1);
    CHECK(llm_sampler_sample_logits(g, x, N, &t) == 0 && t == want, "full top_k then greedy");
    llm_sampler_free(g);
    llm_sampler_free(s);
    free(x);
}

int main(void) {
    test_errors();
    test_greedy_is_argmax();
    test_ties();
    test_seeds();
    test_distributions();
    test_penalties();
    test_no_alloc_after_first();
    test_nonfinite();
    test_selection_patterns();
    test_large_vocab();
    printf("test_sampler: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}
