"""libllm inside ONNX Runtime: the custom-op library and ready-made ONNX models that use it.

The wheel ships ``libllm_ort.so`` next to ``libllm.so``: a custom-op library with the ops of
domain ``ai.libllm`` (Tokenize, Detokenize, Generate, Logits, DecodeStep; see
docs/onnxruntime.md). This module finds it, registers it into session options, and builds the
small ONNX graphs that call the ops::

    import onnxruntime as ort
    from libllm import onnxruntime as lort

    proto = lort.text_generation_model("model.gguf", max_new_tokens=32)
    sess = ort.InferenceSession(proto.SerializeToString(), lort.session_options())
    (text,) = sess.run(None, {"text": np.array(["Once upon a time"], dtype=object)})

``onnxruntime`` and ``onnx`` are optional dependencies (``pip install libllm[onnx]``); they
are imported only by the functions that need them.
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx
    import onnxruntime

DOMAIN = "ai.libllm"
DOMAIN_VERSION = 1
# IR version 8 and opset 17 load in every ONNX Runtime the ops support (1.16 and newer).
IR_VERSION = 8
ONNX_OPSET = 17

_ENV = "LIBLLM_ORT_LIBRARY"


def _library_names() -> list[str]:
    if sys.platform == "win32":
        return ["llm_ort.dll", "libllm_ort.dll"]
    if sys.platform == "darwin":
        return ["libllm_ort.dylib", "libllm_ort.so"]
    return ["libllm_ort.so"]


def library_path() -> str:
    """The path of the custom-op library: ``$LIBLLM_ORT_LIBRARY`` when set, else the file
    installed in this package. Raises FileNotFoundError when neither exists."""
    override = os.environ.get(_ENV)
    if override:
        if not os.path.isfile(override):
            raise FileNotFoundError(f"{_ENV}={override!r} is not a file")
        return os.path.abspath(override)
    package = resources.files("libllm")
    for name in _library_names():
        candidate = package / name
        if candidate.is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"the libllm ONNX Runtime op library ({_library_names()[0]}) is not installed in the "
        f"libllm package; build the wheel with it or set {_ENV}"
    )


def session_options(
    options: onnxruntime.SessionOptions | None = None, **settings: Any
) -> onnxruntime.SessionOptions:
    """Session options with the libllm ops registered.

    Args:
        options: options to register into (a new ``SessionOptions`` when None).
        settings: attributes to set on the options first, e.g. ``intra_op_num_threads=1``.
    """
    import onnxruntime as ort

    so = options if options is not None else ort.SessionOptions()
    for name, value in settings.items():
        if not hasattr(so, name):
            raise AttributeError(f"SessionOptions has no attribute {name!r}")
        setattr(so, name, value)
    so.register_custom_ops_library(library_path())
    return so


def inference_session(
    model: onnx.ModelProto | bytes | str, options: onnxruntime.SessionOptions | None = None
) -> onnxruntime.InferenceSession:
    """An InferenceSession on the CPU provider for a model built here (or any model that uses
    the libllm ops), with the ops registered."""
    import onnxruntime as ort

    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    return ort.InferenceSession(model, session_options(options), providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------------------
# Model builders
# ------------------------------------------------------------------------------------------


def _attrs(model_path: str | os.PathLike[str], **values: Any) -> dict[str, Any]:
    """ONNX attributes: ints stay ints, floats are floats, None values are left out (the op's
    default then applies)."""
    out: dict[str, Any] = {"model_path": os.fspath(model_path)}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        out[name] = value
    return out


def _context_attrs(
    n_ctx: int, n_threads: int, n_gpu_layers: int, n_batch: int, n_ubatch: int
) -> dict[str, Any]:
    return {
        "n_ctx": int(n_ctx),
        "n_threads": int(n_threads),
        "n_gpu_layers": int(n_gpu_layers),
        "n_batch": int(n_batch),
        "n_ubatch": int(n_ubatch),
    }


def _sampling_attrs(
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    repeat_penalty: float,
    penalty_last_n: int,
    seed: int,
) -> dict[str, Any]:
    return {
        "temperature": float(temperature),
        "top_k": int(top_k),
        "top_p": float(top_p),
        "min_p": float(min_p),
        "repeat_penalty": float(repeat_penalty),
        "penalty_last_n": int(penalty_last_n),
        "seed": int(seed),
    }


def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any], name: str) -> onnx.ModelProto:
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", ONNX_OPSET),
            helper.make_opsetid(DOMAIN, DOMAIN_VERSION),
        ],
        producer_name="libllm",
    )
    model.ir_version = IR_VERSION
    return model


def _tensor(name: str, elem: int, shape: list[Any]) -> Any:
    from onnx import helper

    return helper.make_tensor_value_info(name, elem, shape)


def tokenize_model(
    model_path: str | os.PathLike[str],
    *,
    add_bos: bool = True,
    parse_special: bool = True,
    pad_id: int = 0,
) -> onnx.ModelProto:
    """text string[batch] -> ids int64[batch, len] (padded with pad_id), lengths int64[batch]."""
    from onnx import TensorProto, helper

    node = helper.make_node(
        "Tokenize",
        ["text"],
        ["ids", "lengths"],
        domain=DOMAIN,
        **_attrs(model_path, add_bos=add_bos, parse_special=parse_special, pad_id=int(pad_id)),
    )
    return _model(
        [node],
        [_tensor("text", TensorProto.STRING, ["batch"])],
        [
            _tensor("ids", TensorProto.INT64, ["batch", "len"]),
            _tensor("lengths", TensorProto.INT64, ["batch"]),
        ],
        "libllm_tokenize",
    )


def detokenize_model(
    model_path: str | os.PathLike[str],
    *,
    mode: str = "text",
    remove_special: bool = False,
    unparse_special: bool = False,
) -> onnx.ModelProto:
    """ids int64[batch, len], lengths int64[batch] -> text string[batch]. ``mode`` "text" is
    Model.detokenize; "pieces" concatenates the token pieces (the text LLM.generate streams)."""
    from onnx import TensorProto, helper

    node = helper.make_node(
        "Detokenize",
        ["ids", "lengths"],
        ["text"],
        domain=DOMAIN,
        **_attrs(
            model_path, mode=mode, remove_special=remove_special, unparse_special=unparse_special
        ),
    )
    return _model(
        [node],
        [
            _tensor("ids", TensorProto.INT64, ["batch", "len"]),
            _tensor("lengths", TensorProto.INT64, ["batch"]),
        ],
        [_tensor("text", TensorProto.STRING, ["batch"])],
        "libllm_detokenize",
    )


def _generate_node(
    model_path: str | os.PathLike[str],
    inputs: list[str],
    outputs: list[str],
    *,
    max_new_tokens: int,
    n_ctx: int,
    n_threads: int,
    n_gpu_layers: int,
    n_batch: int,
    n_ubatch: int,
    n_seq_max: int,
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    repeat_penalty: float,
    penalty_last_n: int,
    seed: int,
    pad_id: int,
) -> Any:
    from onnx import helper

    return helper.make_node(
        "Generate",
        inputs,
        outputs,
        domain=DOMAIN,
        **_attrs(
            model_path,
            max_new_tokens=int(max_new_tokens),
            n_seq_max=int(n_seq_max),
            pad_id=int(pad_id),
            **_context_attrs(n_ctx, n_threads, n_gpu_layers, n_batch, n_ubatch),
            **_sampling_attrs(
                temperature, top_k, top_p, min_p, repeat_penalty, penalty_last_n, seed
            ),
        ),
    )


def generate_model(
    model_path: str | os.PathLike[str],
    *,
    max_new_tokens: int = 32,
    n_ctx: int = 2048,
    n_threads: int = 0,
    n_gpu_layers: int = 0,
    n_batch: int = 512,
    n_ubatch: int = 512,
    n_seq_max: int = 8,
    temperature: float = 0.0,
    top_k: int = 40,
    top_p: float = 0.95,
    min_p: float = 0.05,
    repeat_penalty: float = 1.0,
    penalty_last_n: int = 64,
    seed: int = -1,
    pad_id: int = 0,
) -> onnx.ModelProto:
    """input_ids int64[batch, len], lengths int64[batch] -> output_ids int64[batch, n]
    (generated tokens only, padded with pad_id), output_lengths int64[batch].

    Rows are decoded together as one multi-sequence batch (n_seq_max rows at a time, in a
    context of n_ctx KV cells). temperature <= 0 is greedy; seed -1 draws a random seed."""
    from onnx import TensorProto

    node = _generate_node(
        model_path,
        ["input_ids", "lengths"],
        ["output_ids", "output_lengths"],
        max_new_tokens=max_new_tokens,
        n_ctx=n_ctx,
        n_threads=n_threads,
        n_gpu_layers=n_gpu_layers,
        n_batch=n_batch,
        n_ubatch=n_ubatch,
        n_seq_max=n_seq_max,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repeat_penalty=repeat_penalty,
        penalty_last_n=penalty_last_n,
        seed=seed,
        pad_id=pad_id,
    )
    return _model(
        [node],
        [
            _tensor("input_ids", TensorProto.INT64, ["batch", "len"]),
            _tensor("lengths", TensorProto.INT64, ["batch"]),
        ],
        [
            _tensor("output_ids", TensorProto.INT64, ["batch", "new_len"]),
            _tensor("output_lengths", TensorProto.INT64, ["batch"]),
        ],
        "libllm_generate",
    )


def text_generation_model(
    model_path: str | os.PathLike[str],
    *,
    max_new_tokens: int = 32,
    n_ctx: int = 2048,
    n_threads: int = 0,
    n_gpu_layers: int = 0,
    n_batch: int = 512,
    n_ubatch: int = 512,
    n_seq_max: int = 8,
    temperature: float = 0.0,
    top_k: int = 40,
    top_p: float = 0.95,
    min_p: float = 0.05,
    repeat_penalty: float = 1.0,
    penalty_last_n: int = 64,
    seed: int = -1,
) -> onnx.ModelProto:
    """text string[batch] -> text string[batch] (the generated continuation), as
    Tokenize -> Generate -> Detokenize (mode "pieces"). Each row gives what
    ``LLM.generate(prompt, ...)`` gives with the same settings."""
    from onnx import TensorProto, helper

    tokenize = helper.make_node(
        "Tokenize",
        ["text"],
        ["prompt_ids", "prompt_lengths"],
        domain=DOMAIN,
        **_attrs(model_path, add_bos=1, parse_special=1),
    )
    generate = _generate_node(
        model_path,
        ["prompt_ids", "prompt_lengths"],
        ["output_ids", "output_lengths"],
        max_new_tokens=max_new_tokens,
        n_ctx=n_ctx,
        n_threads=n_threads,
        n_gpu_layers=n_gpu_layers,
        n_batch=n_batch,
        n_ubatch=n_ubatch,
        n_seq_max=n_seq_max,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repeat_penalty=repeat_penalty,
        penalty_last_n=penalty_last_n,
        seed=seed,
        pad_id=0,
    )
    detokenize = helper.make_node(
        "Detokenize",
        ["output_ids", "output_lengths"],
        ["generated"],
        domain=DOMAIN,
        **_attrs(model_path, mode="pieces"),
    )
    return _model(
        [tokenize, generate, detokenize],
        [_tensor("text", TensorProto.STRING, ["batch"])],
        [_tensor("generated", TensorProto.STRING, ["batch"])],
        "libllm_text_generation",
    )


def logits_model(
    model_path: str | os.PathLike[str],
    *,
    output: str = "all",
    n_ctx: int = 2048,
    n_threads: int = 0,
    n_gpu_layers: int = 0,
    n_batch: int = 512,
    n_ubatch: int = 512,
    n_seq_max: int = 8,
) -> onnx.ModelProto:
    """input_ids int64[batch, len], lengths int64[batch] -> logits float[batch, len, n_vocab]
    (output "all"; zeros past each row's length) or float[batch, n_vocab] (output "last")."""
    from onnx import TensorProto, helper

    node = helper.make_node(
        "Logits",
        ["input_ids", "lengths"],
        ["logits"],
        domain=DOMAIN,
        **_attrs(
            model_path,
            output=output,
            n_seq_max=int(n_seq_max),
            **_context_attrs(n_ctx, n_threads, n_gpu_layers, n_batch, n_ubatch),
        ),
    )
    shape: list[Any] = ["batch", "len", "n_vocab"] if output == "all" else ["batch", "n_vocab"]
    return _model(
        [node],
        [
            _tensor("input_ids", TensorProto.INT64, ["batch", "len"]),
            _tensor("lengths", TensorProto.INT64, ["batch"]),
        ],
        [_tensor("logits", TensorProto.FLOAT, shape)],
        "libllm_logits",
    )


def decode_step_model(
    model_path: str | os.PathLike[str],
    *,
    n_ctx: int = 2048,
    max_sequences: int = 8,
    n_threads: int = 0,
    n_gpu_layers: int = 0,
    n_batch: int = 512,
    n_ubatch: int = 512,
    temperature: float = 0.0,
    top_k: int = 40,
    top_p: float = 0.95,
    min_p: float = 0.05,
    repeat_penalty: float = 1.0,
    penalty_last_n: int = 64,
    seed: int = -1,
) -> onnx.ModelProto:
    """Stateful decoding: seq_ids int64[n], tokens int64[n, len], lengths int64[n],
    reset bool[n] -> logits float[n, n_vocab], next_tokens int64[n], n_past int64[n].

    The session keeps each sequence's cache between runs; feed next_tokens back to go on,
    set reset to drop a sequence. n_ctx KV cells are shared by the live sequences."""
    from onnx import TensorProto, helper

    node = helper.make_node(
        "DecodeStep",
        ["seq_ids", "tokens", "lengths", "reset"],
        ["logits", "next_tokens", "n_past"],
        domain=DOMAIN,
        **_attrs(
            model_path,
            max_sequences=int(max_sequences),
            **_context_attrs(n_ctx, n_threads, n_gpu_layers, n_batch, n_ubatch),
            **_sampling_attrs(
                temperature, top_k, top_p, min_p, repeat_penalty, penalty_last_n, seed
            ),
        ),
    )
    return _model(
        [node],
        [
            _tensor("seq_ids", TensorProto.INT64, ["n"]),
            _tensor("tokens", TensorProto.INT64, ["n", "len"]),
            _tensor("lengths", TensorProto.INT64, ["n"]),
            _tensor("reset", TensorProto.BOOL, ["n"]),
        ],
        [
            _tensor("logits", TensorProto.FLOAT, ["n", "n_vocab"]),
            _tensor("next_tokens", TensorProto.INT64, ["n"]),
            _tensor("n_past", TensorProto.INT64, ["n"]),
        ],
        "libllm_decode_step",
    )


__all__ = [
    "DOMAIN",
    "DOMAIN_VERSION",
    "IR_VERSION",
    "decode_step_model",
    "detokenize_model",
    "generate_model",
    "inference_session",
    "library_path",
    "logits_model",
    "session_options",
    "text_generation_model",
    "tokenize_model",
]
