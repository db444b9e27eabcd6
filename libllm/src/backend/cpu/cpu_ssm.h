/* cpu_ssm.h -- the scalar references of the CPU state-space ops (cpu_ssm.c). They compute
 * what backend.h says of ssm_conv, ssm_scan and ssm_gated_norm one value at a time, in the
 * order of the formulas, with libm's expf / log1pf; the fast paths the CPU backend installs
 * are tested against them (tests/c/test_ssm.c). Same arguments as the backend ops. */
#ifndef LLM_CPU_SSM_H
#define LLM_CPU_SSM_H

#include "../backend.h"

void cpu_ssm_conv_ref(const ssm_conv_args *args);
void cpu_ssm_scan_ref(const ssm_scan_args *args);
void cpu_ssm_gated_norm_ref(const float *y, int64_t ldy, const float *z, int64_t ldz, int n_tok,
                            int n, int n_group, const float *w, float eps, float *out,
                            int64_t ldo);

#endif
