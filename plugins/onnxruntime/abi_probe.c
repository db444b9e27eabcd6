/* Prints the layout facts ort_abi.h declares: OrtApi slot indices, OrtCustomOp field offsets
 * and enum values. check_abi.sh builds it twice, once against ort_abi.h and once against
 * ONNX Runtime's own onnxruntime_c_api.h (-DLLM_PROBE_REAL), and compares the two outputs. */
#include <stddef.h>
#include <stdio.h>

#ifdef LLM_PROBE_REAL
#  include "onnxruntime_c_api.h"
#else
#  include "ort_abi.h"
#endif

#define SLOT(name) printf("slot %s %zu\n", #name, offsetof(OrtApi, name) / sizeof(void *))
#define FIELD(name) printf("field %s %zu\n", #name, offsetof(OrtCustomOp, name))
#define VALUE(name) printf("enum %s %d\n", #name, (int)(name))

int main(void) {
    SLOT(CreateStatus);
    SLOT(CreateCustomOpDomain);
    SLOT(CustomOpDomain_Add);
    SLOT(AddCustomOpDomain);
    SLOT(GetTensorMutableData);
    SLOT(FillStringTensor);
    SLOT(GetStringTensorDataLength);
    SLOT(GetStringTensorContent);
    SLOT(GetTensorElementType);
    SLOT(GetDimensionsCount);
    SLOT(GetDimensions);
    SLOT(GetTensorShapeElementCount);
    SLOT(GetTensorTypeAndShape);
    SLOT(KernelInfoGetAttribute_float);
    SLOT(KernelInfoGetAttribute_int64);
    SLOT(KernelInfoGetAttribute_string);
    SLOT(KernelContext_GetInputCount);
    SLOT(KernelContext_GetOutputCount);
    SLOT(KernelContext_GetInput);
    SLOT(KernelContext_GetOutput);
    SLOT(ReleaseStatus);
    SLOT(ReleaseTensorTypeAndShapeInfo);

    printf("field OrtApiBase.GetApi %zu\n", offsetof(OrtApiBase, GetApi));
    printf("field OrtApiBase.GetVersionString %zu\n", offsetof(OrtApiBase, GetVersionString));
    FIELD(version);
    FIELD(CreateKernel);
    FIELD(GetName);
    FIELD(GetExecutionProviderType);
    FIELD(GetInputType);
    FIELD(GetInputTypeCount);
    FIELD(GetOutputType);
    FIELD(GetOutputTypeCount);
    FIELD(KernelCompute);
    FIELD(KernelDestroy);
    FIELD(GetInputCharacteristic);
    FIELD(GetOutputCharacteristic);
    FIELD(GetInputMemoryType);
    FIELD(GetVariadicInputMinArity);
    FIELD(GetVariadicInputHomogeneity);
    FIELD(GetVariadicOutputMinArity);
    FIELD(GetVariadicOutputHomogeneity);
    FIELD(CreateKernelV2);
    FIELD(KernelComputeV2);

    VALUE(ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED);
    VALUE(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
    VALUE(ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8);
    VALUE(ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8);
    VALUE(ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16);
    VALUE(ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16);
    VALUE(ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32);
    VALUE(ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64);
    VALUE(ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING);
    VALUE(ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL);
    VALUE(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16);
    VALUE(ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE);
    VALUE(ORT_OK);
    VALUE(ORT_FAIL);
    VALUE(ORT_INVALID_ARGUMENT);
    VALUE(ORT_NO_SUCHFILE);
    VALUE(ORT_NO_MODEL);
    VALUE(ORT_ENGINE_ERROR);
    VALUE(ORT_RUNTIME_EXCEPTION);
    VALUE(ORT_INVALID_PROTOBUF);
    VALUE(ORT_MODEL_LOADED);
    VALUE(ORT_NOT_IMPLEMENTED);
    VALUE(ORT_INVALID_GRAPH);
    VALUE(ORT_EP_FAIL);
    VALUE(OrtMemTypeCPUInput);
    VALUE(OrtMemTypeCPUOutput);
    VALUE(OrtMemTypeDefault);
    VALUE(INPUT_OUTPUT_REQUIRED);
    VALUE(INPUT_OUTPUT_OPTIONAL);
    VALUE(INPUT_OUTPUT_VARIADIC);
    return 0;
}
