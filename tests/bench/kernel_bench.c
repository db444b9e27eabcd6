/* kernel_bench.c -- one thread's matmul tile speed of a weight type, for kernel work.
 *
 *   kernel_bench TYPE N T [T ...]     e.g. kernel_bench Q4_K 2048 1 8
 *
 * Random rows of TYPE (test_common.h's rnd_rows), N values long, ROWS of them (environment,
 * default 256: the weights stay in L2; 65536 streams them from memory), times tiles of 4
 * rows by T tokens over all rows, the token counts interleaved in one process, and prints
 * the best time per row, token and 256 values. The kernels are those cpu_kernels_get picks
 * (at most LIBLLM_CPU_LEVEL). Built with the tests (LLM_BUILD_TESTS); not a test itself. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <math.h>
#include <stdbool.h>

#include "backend/cpu/kernels.h"
#include "quant.h"
#include "util.h"

#define LLM_TEST_WEIGHTS
#include "test_common.h"     /* tests/c: random rows of every type */

enum { MAX_T = MM_TILE_TOKS_MAX, MAX_RUNS = 8, REPS = 40 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int type_by_name(const char *name) {
    for (uint32_t t = 0; t < 64; t++) {
        const type_traits *tt = type_traits_get(t);
        if (tt && tt->name && strcmp(tt->name, name) == 0) return (int)t;
    }
    return -1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: kernel_bench TYPE N T [T ...]   (ROWS=... in the environment)\n");
        return 2;
    }
    int type = type_by_name(argv[1]);
    int64_t n = atoll(argv[2]);
    int rows = getenv("ROWS") ? atoi(getenv("ROWS")) : 256, n_runs = LLM_MIN(argc - 3, MAX_RUNS);
    const cpu_kernels *k = cpu_kernels_get();
    const mm_kernel *mk = type < 0 ? NULL : cpu_kernels_mm(k, (uint32_t)type);
    uint64_t rb;
    if (!mk || n <= 0 || rows < 4 || !type_row_bytes((uint32_t)type, n, &rb)) {
        fprintf(stderr, "kernel_bench: no %s kernel at level %s for rows of %lld\n", argv[1],
                k->name, (long long)n);
        return 2;
    }
    int ts[MAX_RUNS];
    for (int i = 0; i < n_runs; i++) ts[i] = LLM_MAX(1, LLM_MIN(atoi(argv[3 + i]), mm_max_toks(mk)));
    uint8_t *w = rnd_rows((uint32_t)type, n, rows, &rb, NULL);
    float *x = rnd_floats(n * MAX_T, 1.0f);
    size_t as = mk->act_bytes ? (size_t)mk->act_bytes(n) : sizeof(float) * (size_t)n;
    /* 64-byte aligned activation rows, as the backend's scratch holds them */
    uint8_t *a = aligned_alloc(64, (as * MAX_T + 63) / 64 * 64);
    if (!w || !x || !a) return 1;
    for (int t = 0; t < MAX_T; t++) {
        if (mk->act_bytes) mk->quantize(x + t * n, a + t * as, n);
        else memcpy(a + t * as, x + t * n, sizeof(float) * (size_t)n);
    }
    double best[MAX_RUNS];
    float y[MAX_T * MM_TILE_ROWS];
    for (int i = 0; i < n_runs; i++) best[i] = 1e30;
    for (int rep = 0; rep < REPS; rep++) {
        for (int i = 0; i < n_runs; i++) {
            double t0 = now();
            for (int r = 0; r + MM_TILE_ROWS <= rows; r += MM_TILE_ROWS) {
                mk->tile(n, w + (uint64_t)r * rb, rb, MM_TILE_ROWS, a, as, ts[i], y, MM_TILE_ROWS);
            }
            double dt = (now() - t0) / ts[i];
            best[i] = dt < best[i] ? dt : best[i];
        }
    }
    for (int i = 0; i < n_runs; i++) {
        printf("%s %s n=%lld rows=%d T=%d: %.2f ns per row, token and 256 values\n", k->name,
               argv[1], (long long)n, rows, ts[i], best[i] * 1e9 / rows / ((double)n / 256.0));
    }
    free(w);
    free(x);
    free(a);
    return 0;
}
