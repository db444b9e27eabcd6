/* RegisterCustomOps, the library's only export, and the callbacks every op shares.
 *
 * The runtime loads the library (SessionOptions.register_custom_ops_library in Python,
 * RegisterCustomOpsLibrary in C) and calls RegisterCustomOps with its OrtApiBase; the library
 * adds one domain, "ai.libllm", holding the ops, to the session options. Kernels are created
 * when a session is created and may then run on several threads at once.
 */
#include "ort_util.h"

#include <stdio.h>

#define OP(p) ((const llm_ort_op *)(p))

static const char *ORT_API_CALL op_name(const OrtCustomOp *op) {
    return OP(op)->name;
}

static const char *ORT_API_CALL op_provider(const OrtCustomOp *op) {
    (void)op;
    return NULL;    /* the CPU execution provider */
}

static ONNXTensorElementDataType ORT_API_CALL op_input_type(const OrtCustomOp *op, size_t i) {
    return i < OP(op)->n_inputs ? OP(op)->input_types[i] : ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}

static size_t ORT_API_CALL op_input_count(const OrtCustomOp *op) {
    return OP(op)->n_inputs;
}

static ONNXTensorElementDataType ORT_API_CALL op_output_type(const OrtCustomOp *op, size_t i) {
    return i < OP(op)->n_outputs ? OP(op)->output_types[i]
                                 : ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}

static size_t ORT_API_CALL op_output_count(const OrtCustomOp *op) {
    return OP(op)->n_outputs;
}

static OrtCustomOpInputOutputCharacteristic ORT_API_CALL op_input_kind(const OrtCustomOp *op,
                                                                       size_t i) {
    return i < OP(op)->n_required_inputs ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
}

static OrtCustomOpInputOutputCharacteristic ORT_API_CALL op_output_kind(const OrtCustomOp *op,
                                                                        size_t i) {
    return i < OP(op)->n_required_outputs ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
}

static OrtMemType ORT_API_CALL op_input_memory(const OrtCustomOp *op, size_t i) {
    (void)op;
    (void)i;
    return OrtMemTypeDefault;
}

static int ORT_API_CALL op_variadic_min_arity(const OrtCustomOp *op) {
    (void)op;
    return 1;
}

static int ORT_API_CALL op_variadic_homogeneous(const OrtCustomOp *op) {
    (void)op;
    return 1;
}

static OrtStatus *ORT_API_CALL op_create_kernel(const OrtCustomOp *op, const OrtApi *api,
                                                const OrtKernelInfo *info, void **kernel) {
    *kernel = NULL;
    OrtStatus *st = OP(op)->create(api, info, kernel);
    if (st) return st;
    ort_kernel_head *head = *kernel;
    head->api = api;
    head->op = OP(op);
    return NULL;
}

static OrtStatus *ORT_API_CALL op_compute(void *kernel, OrtKernelContext *ctx) {
    const ort_kernel_head *head = kernel;
    return head->op->compute(kernel, ctx);
}

static void ORT_API_CALL op_destroy(void *kernel) {
    if (!kernel) return;
    const ort_kernel_head *head = kernel;
    head->op->destroy(kernel);
}

static const llm_ort_op *const OPS[] = {
    &llm_ort_op_tokenize, &llm_ort_op_detokenize, &llm_ort_op_generate,
    &llm_ort_op_logits,   &llm_ort_op_decode_step,
};
#define N_OPS (sizeof OPS / sizeof OPS[0])

/* The callbacks of the runtime-facing struct; filled into each op's base at registration. */
static void fill_base(OrtCustomOp *base) {
    base->version = LLM_ORT_API_VERSION;
    base->CreateKernel = NULL;     /* version 16: the runtime uses CreateKernelV2 */
    base->GetName = op_name;
    base->GetExecutionProviderType = op_provider;
    base->GetInputType = op_input_type;
    base->GetInputTypeCount = op_input_count;
    base->GetOutputType = op_output_type;
    base->GetOutputTypeCount = op_output_count;
    base->KernelCompute = NULL;    /* likewise KernelComputeV2 */
    base->KernelDestroy = op_destroy;
    base->GetInputCharacteristic = op_input_kind;
    base->GetOutputCharacteristic = op_output_kind;
    base->GetInputMemoryType = op_input_memory;
    base->GetVariadicInputMinArity = op_variadic_min_arity;
    base->GetVariadicInputHomogeneity = op_variadic_homogeneous;
    base->GetVariadicOutputMinArity = op_variadic_min_arity;
    base->GetVariadicOutputHomogeneity = op_variadic_homogeneous;
    base->CreateKernelV2 = op_create_kernel;
    base->KernelComputeV2 = op_compute;
}

/* The runtime reads the ops through pointers it keeps, so they live in static storage; they
 * are filled once (the same values on every call, so a racing second fill is harmless). */
static llm_ort_op g_ops[N_OPS];
static pthread_once_t g_ops_once = PTHREAD_ONCE_INIT;

static void init_ops(void) {
    for (size_t i = 0; i < N_OPS; i++) {
        g_ops[i] = *OPS[i];
        fill_base(&g_ops[i].base);
    }
}

__attribute__((visibility("default"))) OrtStatus *ORT_API_CALL
RegisterCustomOps(OrtSessionOptions *options, const OrtApiBase *base) {
    if (!options || !base || !base->GetApi) return NULL;   /* nothing to report it through */
    const OrtApi *api = base->GetApi(LLM_ORT_API_VERSION);
    if (!api) {
        /* Without an OrtApi there is no way to build a status; the runtime is older than 1.16
         * and the ops would not load anyway. Returning NULL would hide that, so fail through
         * the version-1 table, which every runtime has. */
        api = base->GetApi(1);
        if (!api) return NULL;
        char msg[160];
        snprintf(msg, sizeof msg, "libllm ops need ONNX Runtime 1.16 or newer (this is %s)",
                 base->GetVersionString ? base->GetVersionString() : "an unknown version");
        return api->CreateStatus(ORT_FAIL, msg);
    }
    if (llm_abi_version() != LLM_ABI_VERSION) {
        return api->CreateStatus(ORT_FAIL, "libllm ops: the loaded libllm has another ABI version");
    }
    pthread_once(&g_ops_once, init_ops);
    OrtCustomOpDomain *domain = NULL;
    OrtStatus *st = api->CreateCustomOpDomain(LLM_ORT_DOMAIN, &domain);
    if (st) return st;
    for (size_t i = 0; i < N_OPS && !st; i++) st = api->CustomOpDomain_Add(domain, &g_ops[i].base);
    if (!st) st = api->AddCustomOpDomain(options, domain);
    /* The domain must outlive every session created from these options; the runtime does not
     * take ownership, so it is kept (a few hundred bytes per registration) until exit. */
    return st;
}
