"""Shared fixtures for the Python test suites.

Model files are generated once per test session into a pytest temporary directory (never the
source tree) by modelgen.py; each costs well under a second.
"""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

# modelgen (torch, transformers, gguf) is imported lazily, inside the fixtures, so suites that
# do not generate models collect without those packages.

# variant name -> extra config for modelgen.make_hf_model
VARIANTS = {
    "untied": {},
    "tied": {"tie_word_embeddings": True},
    "rope_linear": {"rope_scaling": {"type": "linear", "factor": 2.0}},
}
SEEDS = {"llama": 1234, "qwen2": 4321}

# (test id, label, numbers) rows printed after the run: the measured errors per arch/type.
MEASURED: list[tuple[str, str]] = []


@pytest.fixture(scope="session")
def lib():
    """The libllm package. A missing library is a failure, never a skip: CI must not pass by
    testing nothing."""
    import libllm

    return libllm


class ModelCase:
    """One generated file: .path (GGUF), .hf (original float32 model), .ref (float64 model with
    the weights as stored in the file), .arch, .variant, .wtype."""

    def __init__(self, arch, variant, wtype, path, hf, ref):
        self.arch, self.variant, self.wtype = arch, variant, wtype
        self.path, self.hf, self.ref = str(path), hf, ref

    def __iter__(self):  # (path, ref) unpacking
        return iter((self.path, self.ref))


@pytest.fixture(scope="session")
def model_factory(tmp_path_factory):
    """model_factory(arch, wtype="f32", variant="untied") -> ModelCase, cached per session."""
    import modelgen

    root = tmp_path_factory.mktemp("models")
    hf_cache: dict = {}
    cache: dict = {}

    def get(arch: str, wtype: str = "f32", variant: str = "untied") -> ModelCase:
        key = (arch, variant, wtype)
        if key not in cache:
            if (arch, variant) not in hf_cache:
                hf_cache[(arch, variant)] = modelgen.make_hf_model(
                    arch, SEEDS[arch], **VARIANTS[variant]
                )
            hf = hf_cache[(arch, variant)]
            path = root / f"{arch}-{variant}-{wtype}.gguf"
            modelgen.write_gguf(hf, path, wtype)
            cache[key] = ModelCase(
                arch, variant, wtype, path, hf, modelgen.reference_model_for(hf, path, wtype)
            )
        return cache[key]

    return get


class _LazyModels(dict):
    def __init__(self, factory, arch):
        super().__init__()
        self._factory, self._arch = factory, arch

    def __missing__(self, wtype):
        case = self._factory(self._arch, wtype)
        self[wtype] = case
        return case


@pytest.fixture(scope="session")
def llama_models(model_factory):
    """wtype -> ModelCase (unpacks as (path, reference model)) of the untied llama."""
    return _LazyModels(model_factory, "llama")


@pytest.fixture(scope="session")
def qwen2_models(model_factory):
    """wtype -> ModelCase (unpacks as (path, reference model)) of the untied qwen2."""
    return _LazyModels(model_factory, "qwen2")


@pytest.fixture
def record_error(request):
    """record_error(text): adds a line to the error table printed at the end of the run."""

    def rec(text: str) -> None:
        MEASURED.append((request.node.name, text))

    return rec


def pytest_terminal_summary(terminalreporter):
    if not MEASURED:
        return
    terminalreporter.section("measured logits error vs transformers")
    for name, text in MEASURED:
        terminalreporter.write_line(f"{name:<60} {text}")
