/* cpu_dispatch.c -- picks the kernel level once: the best one this build has and this CPU
 * runs, lowered by the environment variable LIBLLM_CPU_LEVEL=scalar|avx2|avx512|neon. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static bool x86_has_avx2(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
#else
    return false;
#endif
}

static bool x86_has_avx512(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return x86_has_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
#else
    return false;
#endif
}

const cpu_kernels *cpu_kernels_get_level(cpu_level level) {
    switch (level) {
    case CPU_LEVEL_SCALAR: return cpu_kernels_scalar();
    case CPU_LEVEL_AVX2: return x86_has_avx2() ? cpu_kernels_avx2() : NULL;
    case CPU_LEVEL_AVX512: return x86_has_avx512() ? cpu_kernels_avx512() : NULL;
    case CPU_LEVEL_NEON: return cpu_kernels_neon();   /* NULL unless built for aarch64 */
    default: return NULL;
    }
}

static const cpu_kernels *g_kernels;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void choose(void) {
    const char *env = getenv("LIBLLM_CPU_LEVEL");
    cpu_level cap = CPU_LEVEL_COUNT;
    if (env && strcmp(env, "scalar") == 0) cap = CPU_LEVEL_SCALAR;
    if (env && strcmp(env, "avx2") == 0) cap = CPU_LEVEL_AVX2;
    if (env && strcmp(env, "avx512") == 0) cap = CPU_LEVEL_AVX512;
    if (env && strcmp(env, "neon") == 0) cap = CPU_LEVEL_NEON;
    static const cpu_level best_first[] = {CPU_LEVEL_AVX512, CPU_LEVEL_AVX2, CPU_LEVEL_NEON};
    g_kernels = cpu_kernels_scalar();
    for (size_t i = 0; i < sizeof best_first / sizeof best_first[0]; i++) {
        if (best_first[i] > cap) continue;
        const cpu_kernels *k = cpu_kernels_get_level(best_first[i]);
        if (k) {
            g_kernels = k;
            break;
        }
    }
}

const cpu_kernels *cpu_kernels_get(void) {
    pthread_once(&g_once, choose);
    return g_kernels;
}

static const mm_kernel *mm_for_type(const cpu_kernels *k, uint32_t type) {
    switch (type) {
    case TYPE_F32: return &k->f32;
    case TYPE_F16: return &k->f16;
    case TYPE_BF16: return &k->bf16;
    case TYPE_Q8_0: return &k->q8_0;
    case TYPE_Q4_0: return &k->q4_0;
    case TYPE_Q4_K: return &k->q4_k;
    case TYPE_Q5_K: return &k->q5_k;
    case TYPE_Q6_K: return &k->q6_k;
    default: return NULL;
    }
}

/* a level that leaves a type's kernel empty sends it to the scalar reference path */
const mm_kernel *cpu_kernels_mm(const cpu_kernels *k, uint32_t type) {
    const mm_kernel *m = mm_for_type(k, type);
    return m && m->tile ? m : NULL;
}
