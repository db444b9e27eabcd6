/* Errors, attributes, tensors and UTF-8 cleaning for the libllm ONNX Runtime ops. */
#include "ort_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------ */

OrtStatus *ort_fail(const OrtApi *api, OrtErrorCode code, const char *op, const char *fmt, ...) {
    char msg[1024];
    int n = snprintf(msg, sizeof msg, "%s: ", op);
    if (n < 0 || (size_t)n >= sizeof msg) n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    return api->CreateStatus(code, msg);
}

OrtStatus *ort_fail_llm(const OrtApi *api, const char *op, int32_t status, const char *what) {
    const char *detail = llm_last_error();
    if (!detail || !*detail) detail = "no details";
    OrtErrorCode code = status == LLM_STATUS_IO ? ORT_NO_SUCHFILE
                        : status == LLM_STATUS_INVALID_ARGUMENT ? ORT_INVALID_ARGUMENT
                                                                 : ORT_FAIL;
    return ort_fail(api, code, op, "%s: %s (%s)", what, detail, llm_status_str(status));
}

void ort_status_free(const OrtApi *api, OrtStatus *status) {
    if (status) api->ReleaseStatus(status);
}

/* ---------------------------------------------------------------------------------------------
 * Attributes
 * ------------------------------------------------------------------------------------------ */

OrtStatus *ort_attr_int(const OrtApi *api, const OrtKernelInfo *info, const char *op,
                        const char *name, int64_t def, int64_t lo, int64_t hi, int64_t *out) {
    int64_t v = 0;
    OrtStatus *st = api->KernelInfoGetAttribute_int64(info, name, &v);
    if (st) {
        ort_status_free(api, st);
        float f = 0;
        st = api->KernelInfoGetAttribute_float(info, name, &f);
        if (!st) {
            return ort_fail(api, ORT_INVALID_ARGUMENT, op,
                            "attribute %s must be an integer, got the float %g", name, (double)f);
        }
        ort_status_free(api, st);
        v = def;
    }
    if (v < lo || v > hi) {
        return ort_fail(api, ORT_INVALID_ARGUMENT, op,
                        "attribute %s = %lld is outside [%lld, %lld]", name, (long long)v,
                        (long long)lo, (long long)hi);
    }
    *out = v;
    return NULL;
}

OrtStatus *ort_attr_float(const OrtApi *api, const OrtKernelInfo *info, const char *op,
                          const char *name, float def, float *out) {
    float f = 0;
    OrtStatus *st = api->KernelInfoGetAttribute_float(info, name, &f);
    if (st) {
        ort_status_free(api, st);
        int64_t v = 0;
        st = api->KernelInfoGetAttribute_int64(info, name, &v);
        if (st) {
            ort_status_free(api, st);
            f = def;
        } else {
            f = (float)v;
        }
    }
    if (f != f) {
        return ort_fail(api, ORT_INVALID_ARGUMENT, op, "attribute %s is NaN", name);
    }
    *out = f;
    return NULL;
}

OrtStatus *ort_attr_string(const OrtApi *api, const OrtKernelInfo *info, const char *op,
                           const char *name, const char *def, char **out) {
    *out = NULL;
    size_t size = 0;
    OrtStatus *st = api->KernelInfoGetAttribute_string(info, name, NULL, &size);
    if (st || size == 0) {
        ort_status_free(api, st);
        if (!def) {
            return ort_fail(api, ORT_INVALID_ARGUMENT, op,
                            "attribute %s (a string) is required", name);
        }
        *out = strdup(def);
        if (!*out) return ort_fail(api, ORT_FAIL, op, "out of memory");
        return NULL;
    }
    char *buf = malloc(size + 1);
    if (!buf) return ort_fail(api, ORT_FAIL, op, "out of memory");
    st = api->KernelInfoGetAttribute_string(info, name, buf, &size);
    if (st) {
        free(buf);
        return st;
    }
    buf[size] = '\0';   /* size counts the runtime's terminating NUL; this one is a guard */
    *out = buf;
    return NULL;
}

OrtStatus *ort_attr_sampling(const OrtApi *api, const OrtKernelInfo *info, const char *op,
                             ort_sampling *s) {
    OrtStatus *st;
    int64_t top_k, last_n, seed;
    if ((st = ort_attr_float(api, info, op, "temperature", 0.0f, &s->temperature)) ||
        (st = ort_attr_float(api, info, op, "top_p", 0.95f, &s->top_p)) ||
        (st = ort_attr_float(api, info, op, "min_p", 0.05f, &s->min_p)) ||
        (st = ort_attr_float(api, info, op, "repeat_penalty", 1.0f, &s->repeat_penalty)) ||
        (st = ort_attr_float(api, info, op, "frequency_penalty", 0.0f, &s->frequency_penalty)) ||
        (st = ort_attr_float(api, info, op, "presence_penalty", 0.0f, &s->presence_penalty)) ||
        (st = ort_attr_int(api, info, op, "top_k", 40, INT32_MIN, INT32_MAX, &top_k)) ||
        (st = ort_attr_int(api, info, op, "penalty_last_n", 64, -1, INT32_MAX, &last_n)) ||
        (st = ort_attr_int(api, info, op, "seed", -1, -1, (int64_t)UINT32_MAX, &seed))) {
        return st;
    }
    if (s->top_p < 0.0f || s->top_p > 1.0f) {
        return ort_fail(api, ORT_INVALID_ARGUMENT, op, "attribute top_p = %g is outside [0, 1]",
                        (double)s->top_p);
    }
    if (s->min_p < 0.0f || s->min_p > 1.0f) {
        return ort_fail(api, ORT_INVALID_ARGUMENT, op, "attribute min_p = %g is outside [0, 1]",
                        (double)s->min_p);
    }
    s->top_k = (int32_t)top_k;
    s->penalty_last_n = (int32_t)last_n;
    s->seed = seed < 0 ? LLM_DEFAULT_SEED : (uint32_t)seed;
    return NULL;
}

int32_t ort_sampler_create(const ort_sampling *s, llm_sampler **out) {
    llm_sampler *smp = NULL;
    int32_t rc = llm_sampler_chain_create(&smp);
    if (rc != LLM_STATUS_OK) return rc;
    if (s->penalty_last_n != 0 && (s->repeat_penalty != 1.0f || s->frequency_penalty != 0.0f ||
                                   s->presence_penalty != 0.0f)) {
        rc = llm_sampler_add_penalties(smp, s->penalty_last_n, s->repeat_penalty,
                                       s->frequency_penalty, s->presence_penalty);
    }
    if (rc == LLM_STATUS_OK && s->temperature <= 0.0f) {
        rc = llm_sampler_add_greedy(smp);
    } else if (rc == LLM_STATUS_OK) {
        if (rc == LLM_STATUS_OK) rc = llm_sampler_add_top_k(smp, s->top_k);
        if (rc == LLM_STATUS_OK) rc = llm_sampler_add_top_p(smp, s->top_p, 1);
        if (rc == LLM_STATUS_OK) rc = llm_sampler_add_min_p(smp, s->min_p, 1);
        if (rc == LLM_STATUS_OK) rc = llm_sampler_add_temp(smp, s->temperature);
        if (rc == LLM_STATUS_OK) rc = llm_sampler_add_dist(smp, s->seed);
    }
    if (rc != LLM_STATUS_OK) {
        llm_sampler_free(smp);
        return rc;
    }
    *out = smp;
    return LLM_STATUS_OK;
}

OrtStatus *ort_attr_context(const OrtApi *api, const OrtKernelInfo *info, const char *op,
                            const char *seq_attr, int64_t seq_default, ort_context_attrs *a) {
    memset(a, 0, sizeof *a);
    int64_t gpu = 0, n_ctx = 0, n_batch = 0, n_ubatch = 0, n_seq = 0, n_threads = 0;
    OrtStatus *st;
    if ((st = ort_attr_int(api, info, op, "n_gpu_layers", 0, -1, INT32_MAX, &gpu)) ||
        (st = ort_attr_int(api, info, op, "n_ctx", 2048, 0, 1 << 24, &n_ctx)) ||
        (st = ort_attr_int(api, info, op, "n_batch", 512, 1, 1 << 20, &n_batch)) ||
        (st = ort_attr_int(api, info, op, "n_ubatch", 512, 1, 1 << 20, &n_ubatch)) ||
        (st = ort_attr_int(api, info, op, seq_attr, seq_default, 1, 256, &n_seq)) ||
        (st = ort_attr_int(api, info, op, "n_threads", 0, 0, 512, &n_threads))) {
        return st;
    }
    if ((st = ort_attr_string(api, info, op, "model_path", NULL, &a->model_path))) return st;
    a->n_gpu_layers = gpu < 0 ? INT32_MAX : (int32_t)gpu;
    a->n_ctx = (uint32_t)n_ctx;
    a->n_batch = (uint32_t)n_batch;
    a->n_ubatch = (uint32_t)(n_ubatch < n_batch ? n_ubatch : n_batch);
    a->n_seq_max = (uint32_t)n_seq;
    a->n_threads = (int32_t)n_threads;
    return NULL;
}

void ort_context_params(const ort_context_attrs *a, llm_context_params *p) {
    llm_context_default_params(p);
    p->n_ctx = a->n_ctx;
    p->n_batch = a->n_batch;
    p->n_ubatch = a->n_ubatch;
    p->n_seq_max = a->n_seq_max;
    p->n_threads = a->n_threads;
}

/* ---------------------------------------------------------------------------------------------
 * Tensors
 * ------------------------------------------------------------------------------------------ */

static const char *type_name(ONNXTensorElementDataType t) {
    switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16: return "uint16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16: return "int16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING: return "string";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return "bool";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "double";
    default: return "another type";
    }
}

OrtStatus *ort_input(const OrtApi *api, const OrtKernelContext *ctx, const char *op,
                     size_t index, const char *name, ONNXTensorElementDataType want,
                     size_t min_rank, size_t max_rank, bool optional, ort_tensor *t) {
    memset(t, 0, sizeof *t);
    size_t n_inputs = 0;
    OrtStatus *st = api->KernelContext_GetInputCount(ctx, &n_inputs);
    if (st) return st;
    const OrtValue *value = NULL;
    if (index < n_inputs && (st = api->KernelContext_GetInput(ctx, index, &value))) return st;
    if (!value) {
        if (optional) return NULL;
        return ort_fail(api, ORT_INVALID_ARGUMENT, op, "input %zu (%s) is required", index, name);
    }
    OrtTensorTypeAndShapeInfo *info = NULL;
    if ((st = api->GetTensorTypeAndShape(value, &info))) return st;
    size_t rank = 0;
    if (!(st = api->GetTensorElementType(info, &t->type)) &&
        !(st = api->GetDimensionsCount(info, &rank)) && rank <= LLM_ORT_MAX_RANK &&
        !(st = api->GetDimensions(info, t->dims, rank))) {
        st = api->GetTensorShapeElementCount(info, &t->count);
    }
    api->ReleaseTensorTypeAndShapeInfo(info);
    if (st) return st;
    if (t->type != want) {
        return ort_fail(api, ORT_INVALID_ARGUMENT, op, "input %s must be a tensor(%s), got tensor(%s)",
                        name, type_name(want), type_name(t->type));
    }
    if (rank < min_rank || rank > max_rank) {
        if (min_rank == max_rank) {
            return ort_fail(api, ORT_INVALID_ARGUMENT, op,
                            "input %s must have rank %zu, got rank %zu", name, min_rank, rank);
        }
        return ort_fail(api, ORT_INVALID_ARGUMENT, op,
                        "input %s must have rank %zu to %zu, got rank %zu", name, min_rank,
                        max_rank, rank);
    }
    t->rank = rank;
    t->value = value;
    if (want != ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING && t->count > 0) {
        /* The runtime hands inputs as const; GetTensorMutableData is its only accessor. */
        if ((st = api->GetTensorMutableData((OrtValue *)value, &t->data))) return st;
    }
    return NULL;
}

OrtStatus *ort_input_strings(const OrtApi *api, const char *op, const ort_tensor *t,
                             char **bytes, size_t **offsets) {
    *bytes = NULL;
    *offsets = NULL;
    size_t total = 0;
    OrtStatus *st = api->GetStringTensorDataLength(t->value, &total);
    if (st) return st;
    char *buf = malloc(total + 1);
    size_t *off = malloc((t->count + 1) * sizeof *off);
    if (!buf || !off) {
        free(buf);
        free(off);
        return ort_fail(api, ORT_FAIL, op, "out of memory");
    }
    if (t->count > 0 && (st = api->GetStringTensorContent(t->value, buf, total, off, t->count))) {
        free(buf);
        free(off);
        return st;
    }
    buf[total] = '\0';
    off[t->count] = total;
    *bytes = buf;
    *offsets = off;
    return NULL;
}

OrtStatus *ort_output(const OrtApi *api, OrtKernelContext *ctx, const char *op, size_t index,
                      const int64_t *dims, size_t rank, void **data) {
    (void)op;
    *data = NULL;
    size_t n_outputs = 0;
    OrtStatus *st = api->KernelContext_GetOutputCount(ctx, &n_outputs);
    if (st) return st;
    if (index >= n_outputs) return NULL;
    OrtValue *value = NULL;
    if ((st = api->KernelContext_GetOutput(ctx, index, dims, rank, &value))) return st;
    if (!value) return NULL;
    size_t count = 1;
    for (size_t i = 0; i < rank; i++) count *= (size_t)dims[i];
    if (count == 0) {
        static char empty;  /* a valid, distinct non-NULL marker for "asked for, no elements" */
        *data = &empty;
        return NULL;
    }
    return api->GetTensorMutableData(value, data);
}

OrtStatus *ort_output_strings(const OrtApi *api, OrtKernelContext *ctx, const char *op,
                              size_t index, const int64_t *dims, size_t rank,
                              const char *const *strings, size_t n) {
    (void)op;
    size_t n_outputs = 0;
    OrtStatus *st = api->KernelContext_GetOutputCount(ctx, &n_outputs);
    if (st) return st;
    if (index >= n_outputs) return NULL;
    OrtValue *value = NULL;
    if ((st = api->KernelContext_GetOutput(ctx, index, dims, rank, &value))) return st;
    if (!value || n == 0) return NULL;
    return api->FillStringTensor(value, strings, n);
}

OrtStatus *ort_lengths(const OrtApi *api, const char *op, const char *name, const ort_tensor *t,
                       int64_t batch, int64_t width, int64_t min_len, int32_t *lengths) {
    if (!t->value) {
        if (width < min_len) {
            return ort_fail(api, ORT_INVALID_ARGUMENT, op,
                            "rows must hold at least %lld token(s), got %lld", (long long)min_len,
                            (long long)width);
        }
        for (int64_t b = 0; b < batch; b++) lengths[b] = (int32_t)width;
        return NULL;
    }
    if (t->rank != 1 || t->dims[0] != batch) {
        return ort_fail(api, ORT_INVALID_ARGUMENT, op,
                        "input %s must have shape [%lld] (one length per row), got %zu-D with %zu "
                        "elements", name, (long long)batch, t->rank, t->count);
    }
    const int64_t *v = t->data;
    for (int64_t b = 0; b < batch; b++) {
        if (v[b] < min_len || v[b] > width) {
            return ort_fail(api, ORT_INVALID_ARGUMENT, op,
                            "%s[%lld] = %lld is outside [%lld, %lld] (the row width)", name,
                            (long long)b, (long long)v[b], (long long)min_len, (long long)width);
        }
        lengths[b] = (int32_t)v[b];
    }
    return NULL;
}

OrtStatus *ort_check_ids(const OrtApi *api, const char *op, const char *name,
                         const int64_t *ids, int64_t batch, int64_t width,
                         const int32_t *lengths) {
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t j = 0; j < lengths[b]; j++) {
            int64_t v = ids[b * width + j];
            if (v < 0 || v > INT32_MAX) {
                return ort_fail(api, ORT_INVALID_ARGUMENT, op,
                                "%s[%lld, %lld] = %lld is not a valid token id", name,
                                (long long)b, (long long)j, (long long)v);
            }
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * UTF-8
 * ------------------------------------------------------------------------------------------ */

char *ort_utf8_clean(const char *text, size_t n) {
    const unsigned char *s = (const unsigned char *)text;
    char *out = malloc(3 * n + 1);   /* each bad byte can become the 3 bytes of U+FFFD */
    if (!out) return NULL;
    size_t o = 0, i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (c) out[o++] = (char)c;
            i++;
            continue;
        }
        /* The continuation count, and the allowed range of the first continuation byte
         * (narrower after E0, ED, F0, F4: no overlongs, surrogates or values past U+10FFFF). */
        int need;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) need = 2, lo = 0xA0;
        else if (c == 0xED) need = 2, hi = 0x9F;
        else if (c >= 0xE1 && c <= 0xEF) need = 2;
        else if (c == 0xF0) need = 3, lo = 0x90;
        else if (c == 0xF4) need = 3, hi = 0x8F;
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else need = 0;
        size_t j = i + 1;
        bool ok = need > 0;
        for (int k = 0; ok && k < need; k++, j++) {
            if (j >= n) {
                ok = false;
                break;
            }
            unsigned b = s[j];
            if (b < (k == 0 ? lo : 0x80) || b > (k == 0 ? hi : 0xBF)) {
                ok = false;
                break;
            }
        }
        if (ok) {
            memcpy(out + o, s + i, j - i);
            o += j - i;
            i = j;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i = need > 0 ? j : i + 1;   /* the offending byte starts the next attempt */
        }
    }
    out[o] = '\0';
    return out;
}
