/* test_common.h -- what the C test programs (and the kernel benchmark) share: the CHECK
 * counter, a seeded generator, random weight rows of every type, and running a set of
 * backend checks once per CPU level in child processes.
 *
 * Each program is its own translation unit: define TEST_RNG_SEED before including this to
 * give it its own sequence. Everything here is static (inline where a program may not use
 * it), so nothing collides and nothing unused warns. */
#ifndef LLM_TEST_COMMON_H
#define LLM_TEST_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TEST_RNG_SEED
#define TEST_RNG_SEED 0x9E3779B97F4A7C15ull
#endif

static int g_pass __attribute__((unused)), g_fail __attribute__((unused));

/* counts a check; prints the first 30 failures with a printf-style message */
#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (cond) {                                                        \
            g_pass++;                                                      \
        } else {                                                           \
            g_fail++;                                                      \
            if (g_fail < 30) {                                             \
                fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
                fprintf(stderr, __VA_ARGS__);                              \
                fputc('\n', stderr);                                       \
            }                                                              \
        }                                                                  \
    } while (0)

/* ---- seeded data (splitmix64) ---- */

static uint64_t g_rng = TEST_RNG_SEED;

static inline uint64_t rnd_u64(void) {
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#ifdef LLM_TEST_WEIGHTS
/* Random weight rows; needs the engine's internal headers (quant.h, backend/cpu/kernels.h)
 * included before this file. */

/* uniform in [-1, 1), never exactly zero */
static inline float rnd_f(void) {
    float v = (float)((rnd_u64() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    return v == 0.0f ? 0.5f : v;
}

static inline float *rnd_floats(int64_t n, float scale) {
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = rnd_f() * scale;
    return x;
}

static inline bool is_kquant(uint32_t type) {
    return type == TYPE_Q4_K || type == TYPE_Q5_K || type == TYPE_Q6_K;
}

/* A random K-quant row: every byte random (any byte is a valid packed value or scale), the
 * f16 super-block scales set to finite values of realistic size. libllm has no K-quant
 * quantizer: the kernels only read these formats. */
static inline void rnd_kquant_row(uint32_t type, uint8_t *row, int64_t n) {
    size_t bb = type == TYPE_Q4_K ? sizeof(block_q4_k)
              : type == TYPE_Q5_K ? sizeof(block_q5_k) : sizeof(block_q6_k);
    for (size_t i = 0; i < bb * (size_t)(n / QK_K); i++) row[i] = (uint8_t)rnd_u64();
    for (int64_t b = 0; b < n / QK_K; b++) {
        uint8_t *blk = row + b * bb;
        uint16_t d = f32_to_f16(0.002f + 0.004f * fabsf(rnd_f()));
        uint16_t dmin = f32_to_f16(0.01f + 0.02f * fabsf(rnd_f()));
        if (type == TYPE_Q6_K) {
            memcpy(&((block_q6_k *)blk)->d, &d, 2);
        } else {
            memcpy(&((block_q4_k *)blk)->d, &d, 2);      /* same offsets in Q5_K */
            memcpy(&((block_q4_k *)blk)->dmin, &dmin, 2);
        }
    }
}

/* nrows random rows of a type (through quant.c's from_f32), and their exact f32 values
 * (values may be NULL) */
static inline uint8_t *rnd_rows(uint32_t type, int64_t n, int64_t nrows, uint64_t *row_bytes,
                                float **values) {
    type_row_bytes(type, n, row_bytes);
    uint8_t *w = malloc(*row_bytes * (size_t)nrows + 64);
    float *v = values ? malloc(sizeof(float) * (size_t)(n * nrows)) : NULL;
    const type_traits *tt = type_traits_get(type);
    for (int64_t r = 0; r < nrows; r++) {
        if (is_kquant(type)) {
            rnd_kquant_row(type, w + r * *row_bytes, n);
        } else {
            float *x = rnd_floats(n, 1.0f);
            tt->from_f32(x, w + r * *row_bytes, n);
            free(x);
        }
        if (v) tt->to_f32(w + r * *row_bytes, v + r * n, n);
    }
    if (values) *values = v;
    return w;
}
#endif /* LLM_TEST_WEIGHTS */

#ifdef LLM_TEST_LEVELS
/* Runs ops() once per CPU level this build and machine have, each in a child process with
 * LIBLLM_CPU_LEVEL set (the backend picks its level once per process), and counts one check
 * per level: the child passed everything and the backend really picked that level. Needs
 * backend/cpu/kernels.h, <sys/wait.h> and <unistd.h> (with _POSIX_C_SOURCE). */
static inline void run_ops_per_level(const char *what, void (*ops)(void)) {
    static const cpu_level levels[] = {CPU_LEVEL_SCALAR, CPU_LEVEL_AVX2, CPU_LEVEL_AVX512,
                                       CPU_LEVEL_NEON};
    static const char *names[] = {"scalar", "avx2", "avx512", "neon"};
    for (size_t i = 0; i < 4; i++) {
        if (!cpu_kernels_get_level(levels[i])) {
            printf("level %s %s: not available here, skipped\n", names[i], what);
            continue;
        }
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) {
            setenv("LIBLLM_CPU_LEVEL", names[i], 1);
            g_pass = g_fail = 0;
            ops();
            printf("level %s %s (backend picked %s): %d passed, %d failed\n", names[i], what,
                   cpu_kernels_get()->name, g_pass, g_fail);
            fflush(stdout);
            _exit(g_fail == 0 && strcmp(cpu_kernels_get()->name, names[i]) == 0 ? 0 : 1);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s at level %s", what,
              names[i]);
    }
}
#endif /* LLM_TEST_LEVELS */

#endif
