/* The part of ONNX Runtime's C ABI that the libllm op library uses, declared by hand.
 *
 * ONNX Runtime's C API is a table of function pointers (OrtApi) handed out by
 * OrtApiBase::GetApi(version). Slots are only ever appended, so a slot's index is fixed
 * forever once shipped; every slot used here is in the version-1 block (indices 0..101),
 * which every runtime has. The custom-op description (OrtCustomOp) is a struct that the op
 * library fills and the runtime reads up to the fields its `version` says exist; this header
 * declares it up to KernelComputeV2 (version 16).
 *
 * Only names, slot indices, field order and enum values are taken from ONNX Runtime's public
 * onnxruntime_c_api.h; the static assertions at the end pin the layout, and check_abi.sh
 * compares it with the real header. Unused slots are `void *` padding.
 *
 * Not a public header of libllm: only plugins/onnxruntime includes it.
 */
#ifndef LLM_ORT_ABI_H
#define LLM_ORT_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef _WIN32
#  define ORT_API_CALL __stdcall
#else
#  define ORT_API_CALL
#endif

/* The OrtApi version asked for, and the OrtCustomOp version declared: 16 is the first with
 * CreateKernelV2 / KernelComputeV2 (kernels that return a status), i.e. ONNX Runtime 1.16. */
#define LLM_ORT_API_VERSION 16

/* Opaque runtime objects. */
typedef struct OrtStatus OrtStatus;
typedef struct OrtValue OrtValue;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtCustomOpDomain OrtCustomOpDomain;
typedef struct OrtKernelInfo OrtKernelInfo;
typedef struct OrtKernelContext OrtKernelContext;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef struct OrtCustomOp OrtCustomOp;    /* defined below */

typedef enum ONNXTensorElementDataType {
    ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED = 0,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT = 1,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 = 2,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8 = 3,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16 = 4,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16 = 5,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 = 6,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 = 7,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING = 8,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL = 9,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 = 10,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE = 11
} ONNXTensorElementDataType;

typedef enum OrtErrorCode {
    ORT_OK = 0,
    ORT_FAIL = 1,
    ORT_INVALID_ARGUMENT = 2,
    ORT_NO_SUCHFILE = 3,
    ORT_NO_MODEL = 4,
    ORT_ENGINE_ERROR = 5,
    ORT_RUNTIME_EXCEPTION = 6,
    ORT_INVALID_PROTOBUF = 7,
    ORT_MODEL_LOADED = 8,
    ORT_NOT_IMPLEMENTED = 9,
    ORT_INVALID_GRAPH = 10,
    ORT_EP_FAIL = 11
} OrtErrorCode;

typedef enum OrtMemType {
    OrtMemTypeCPUInput = -2,
    OrtMemTypeCPUOutput = -1,
    OrtMemTypeDefault = 0
} OrtMemType;

typedef enum OrtCustomOpInputOutputCharacteristic {
    INPUT_OUTPUT_REQUIRED = 0,
    INPUT_OUTPUT_OPTIONAL = 1,
    INPUT_OUTPUT_VARIADIC = 2
} OrtCustomOpInputOutputCharacteristic;

/* Every fallible slot returns NULL on success or a status the caller must release. */
typedef OrtStatus *OrtStatusPtr;

/* The function table, with only the slots used named. The number after each slot is its
 * index in the table (byte offset / sizeof(void *)). */
typedef struct OrtApi {
    OrtStatus *(ORT_API_CALL *CreateStatus)(OrtErrorCode code, const char *msg);        /* 0 */
    void *unused_1_25[25];
    OrtStatus *(ORT_API_CALL *CreateCustomOpDomain)(const char *domain,
                                                    OrtCustomOpDomain **out);          /* 26 */
    OrtStatus *(ORT_API_CALL *CustomOpDomain_Add)(OrtCustomOpDomain *domain,
                                                  const struct OrtCustomOp *op);       /* 27 */
    OrtStatus *(ORT_API_CALL *AddCustomOpDomain)(OrtSessionOptions *options,
                                                 OrtCustomOpDomain *domain);           /* 28 */
    void *unused_29_50[22];
    OrtStatus *(ORT_API_CALL *GetTensorMutableData)(OrtValue *value, void **out);      /* 51 */
    OrtStatus *(ORT_API_CALL *FillStringTensor)(OrtValue *value, const char *const *s,
                                                size_t s_len);                         /* 52 */
    OrtStatus *(ORT_API_CALL *GetStringTensorDataLength)(const OrtValue *value,
                                                         size_t *len);                 /* 53 */
    OrtStatus *(ORT_API_CALL *GetStringTensorContent)(const OrtValue *value, void *s,
                                                      size_t s_len, size_t *offsets,
                                                      size_t offsets_len);             /* 54 */
    void *unused_55_59[5];
    OrtStatus *(ORT_API_CALL *GetTensorElementType)(const OrtTensorTypeAndShapeInfo *info,
                                                    ONNXTensorElementDataType *out);   /* 60 */
    OrtStatus *(ORT_API_CALL *GetDimensionsCount)(const OrtTensorTypeAndShapeInfo *info,
                                                  size_t *out);                        /* 61 */
    OrtStatus *(ORT_API_CALL *GetDimensions)(const OrtTensorTypeAndShapeInfo *info,
                                             int64_t *dims, size_t dims_len);          /* 62 */
    void *unused_63;
    OrtStatus *(ORT_API_CALL *GetTensorShapeElementCount)(
        const OrtTensorTypeAndShapeInfo *info, size_t *out);                           /* 64 */
    OrtStatus *(ORT_API_CALL *GetTensorTypeAndShape)(const OrtValue *value,
                                                     OrtTensorTypeAndShapeInfo **out); /* 65 */
    void *unused_66_84[19];
    OrtStatus *(ORT_API_CALL *KernelInfoGetAttribute_float)(const OrtKernelInfo *info,
                                                            const char *name,
                                                            float *out);               /* 85 */
    OrtStatus *(ORT_API_CALL *KernelInfoGetAttribute_int64)(const OrtKernelInfo *info,
                                                            const char *name,
                                                            int64_t *out);             /* 86 */
    OrtStatus *(ORT_API_CALL *KernelInfoGetAttribute_string)(const OrtKernelInfo *info,
                                                             const char *name, char *out,
                                                             size_t *size);            /* 87 */
    OrtStatus *(ORT_API_CALL *KernelContext_GetInputCount)(const OrtKernelContext *ctx,
                                                           size_t *out);               /* 88 */
    OrtStatus *(ORT_API_CALL *KernelContext_GetOutputCount)(const OrtKernelContext *ctx,
                                                            size_t *out);              /* 89 */
    OrtStatus *(ORT_API_CALL *KernelContext_GetInput)(const OrtKernelContext *ctx,
                                                      size_t index,
                                                      const OrtValue **out);           /* 90 */
    OrtStatus *(ORT_API_CALL *KernelContext_GetOutput)(OrtKernelContext *ctx, size_t index,
                                                       const int64_t *dims,
                                                       size_t dims_count,
                                                       OrtValue **out);                /* 91 */
    void *unused_92;
    void (ORT_API_CALL *ReleaseStatus)(OrtStatus *status);                             /* 93 */
    void *unused_94_98[5];
    void (ORT_API_CALL *ReleaseTensorTypeAndShapeInfo)(OrtTensorTypeAndShapeInfo *info); /* 99 */
} OrtApi;

typedef struct OrtApiBase {
    const OrtApi *(ORT_API_CALL *GetApi)(uint32_t version); /* NULL if the version is unknown */
    const char *(ORT_API_CALL *GetVersionString)(void);
} OrtApiBase;

/* A custom op as the runtime sees it. The runtime reads the fields its `version` covers. */
struct OrtCustomOp {
    uint32_t version;
    void *(ORT_API_CALL *CreateKernel)(const struct OrtCustomOp *op, const OrtApi *api,
                                       const OrtKernelInfo *info);
    const char *(ORT_API_CALL *GetName)(const struct OrtCustomOp *op);
    const char *(ORT_API_CALL *GetExecutionProviderType)(const struct OrtCustomOp *op);
    ONNXTensorElementDataType (ORT_API_CALL *GetInputType)(const struct OrtCustomOp *op,
                                                           size_t index);
    size_t (ORT_API_CALL *GetInputTypeCount)(const struct OrtCustomOp *op);
    ONNXTensorElementDataType (ORT_API_CALL *GetOutputType)(const struct OrtCustomOp *op,
                                                            size_t index);
    size_t (ORT_API_CALL *GetOutputTypeCount)(const struct OrtCustomOp *op);
    void (ORT_API_CALL *KernelCompute)(void *kernel, OrtKernelContext *ctx);
    void (ORT_API_CALL *KernelDestroy)(void *kernel);
    /* version >= 8 */
    OrtCustomOpInputOutputCharacteristic (ORT_API_CALL *GetInputCharacteristic)(
        const struct OrtCustomOp *op, size_t index);
    OrtCustomOpInputOutputCharacteristic (ORT_API_CALL *GetOutputCharacteristic)(
        const struct OrtCustomOp *op, size_t index);
    /* version >= 13 */
    OrtMemType (ORT_API_CALL *GetInputMemoryType)(const struct OrtCustomOp *op, size_t index);
    /* version >= 14 */
    int (ORT_API_CALL *GetVariadicInputMinArity)(const struct OrtCustomOp *op);
    int (ORT_API_CALL *GetVariadicInputHomogeneity)(const struct OrtCustomOp *op);
    int (ORT_API_CALL *GetVariadicOutputMinArity)(const struct OrtCustomOp *op);
    int (ORT_API_CALL *GetVariadicOutputHomogeneity)(const struct OrtCustomOp *op);
    /* version >= 16 */
    OrtStatusPtr (ORT_API_CALL *CreateKernelV2)(const struct OrtCustomOp *op, const OrtApi *api,
                                                const OrtKernelInfo *info, void **kernel);
    OrtStatusPtr (ORT_API_CALL *KernelComputeV2)(void *kernel, OrtKernelContext *ctx);
};

/* The one symbol an op library exports; the runtime calls it from
 * SessionOptions.register_custom_ops_library / RegisterCustomOpsLibrary. */
typedef OrtStatus *(ORT_API_CALL *RegisterCustomOpsFn)(OrtSessionOptions *options,
                                                        const OrtApiBase *api);

/* Layout pins: a slot index is offsetof / sizeof(void *). */
#define LLM_ORT_SLOT(name) (offsetof(OrtApi, name) / sizeof(void *))
#define LLM_ORT_ASSERT_SLOT(name, index) \
    _Static_assert(LLM_ORT_SLOT(name) == (index) && \
                   offsetof(OrtApi, name) % sizeof(void *) == 0, "OrtApi slot " #name)

LLM_ORT_ASSERT_SLOT(CreateStatus, 0);
LLM_ORT_ASSERT_SLOT(CreateCustomOpDomain, 26);
LLM_ORT_ASSERT_SLOT(CustomOpDomain_Add, 27);
LLM_ORT_ASSERT_SLOT(AddCustomOpDomain, 28);
LLM_ORT_ASSERT_SLOT(GetTensorMutableData, 51);
LLM_ORT_ASSERT_SLOT(FillStringTensor, 52);
LLM_ORT_ASSERT_SLOT(GetStringTensorDataLength, 53);
LLM_ORT_ASSERT_SLOT(GetStringTensorContent, 54);
LLM_ORT_ASSERT_SLOT(GetTensorElementType, 60);
LLM_ORT_ASSERT_SLOT(GetDimensionsCount, 61);
LLM_ORT_ASSERT_SLOT(GetDimensions, 62);
LLM_ORT_ASSERT_SLOT(GetTensorShapeElementCount, 64);
LLM_ORT_ASSERT_SLOT(GetTensorTypeAndShape, 65);
LLM_ORT_ASSERT_SLOT(KernelInfoGetAttribute_float, 85);
LLM_ORT_ASSERT_SLOT(KernelInfoGetAttribute_int64, 86);
LLM_ORT_ASSERT_SLOT(KernelInfoGetAttribute_string, 87);
LLM_ORT_ASSERT_SLOT(KernelContext_GetInputCount, 88);
LLM_ORT_ASSERT_SLOT(KernelContext_GetOutputCount, 89);
LLM_ORT_ASSERT_SLOT(KernelContext_GetInput, 90);
LLM_ORT_ASSERT_SLOT(KernelContext_GetOutput, 91);
LLM_ORT_ASSERT_SLOT(ReleaseStatus, 93);
LLM_ORT_ASSERT_SLOT(ReleaseTensorTypeAndShapeInfo, 99);

#define LLM_ORT_ASSERT_FIELD(name, index) \
    _Static_assert(offsetof(OrtCustomOp, name) == \
                   ((index) == 0 ? 0 : sizeof(void *) * (index)), "OrtCustomOp field " #name)

/* The uint32_t version is padded to pointer alignment; field i (i >= 1) sits at i pointers. */
LLM_ORT_ASSERT_FIELD(version, 0);
LLM_ORT_ASSERT_FIELD(CreateKernel, 1);
LLM_ORT_ASSERT_FIELD(GetName, 2);
LLM_ORT_ASSERT_FIELD(GetExecutionProviderType, 3);
LLM_ORT_ASSERT_FIELD(GetInputType, 4);
LLM_ORT_ASSERT_FIELD(GetInputTypeCount, 5);
LLM_ORT_ASSERT_FIELD(GetOutputType, 6);
LLM_ORT_ASSERT_FIELD(GetOutputTypeCount, 7);
LLM_ORT_ASSERT_FIELD(KernelCompute, 8);
LLM_ORT_ASSERT_FIELD(KernelDestroy, 9);
LLM_ORT_ASSERT_FIELD(GetInputCharacteristic, 10);
LLM_ORT_ASSERT_FIELD(GetOutputCharacteristic, 11);
LLM_ORT_ASSERT_FIELD(GetInputMemoryType, 12);
LLM_ORT_ASSERT_FIELD(GetVariadicInputMinArity, 13);
LLM_ORT_ASSERT_FIELD(GetVariadicInputHomogeneity, 14);
LLM_ORT_ASSERT_FIELD(GetVariadicOutputMinArity, 15);
LLM_ORT_ASSERT_FIELD(GetVariadicOutputHomogeneity, 16);
LLM_ORT_ASSERT_FIELD(CreateKernelV2, 17);
LLM_ORT_ASSERT_FIELD(KernelComputeV2, 18);
_Static_assert(sizeof(OrtCustomOp) == 19 * sizeof(void *), "OrtCustomOp ends at KernelComputeV2");
_Static_assert(sizeof(OrtApiBase) == 2 * sizeof(void *), "OrtApiBase");
_Static_assert(sizeof(ONNXTensorElementDataType) == sizeof(int), "enums are int-sized");

#ifdef __cplusplus
}
#endif

#endif /* LLM_ORT_ABI_H */
