"""LangChain classes over libllm: ``LibLLM`` (a text-completion ``LLM``) and ``ChatLibLLM``
(a ``BaseChatModel`` that formats messages with the model's own chat template).

Installed as ``libllm.langchain``; needs ``pip install libllm[langchain]``.

One libllm context serves one call at a time, so calls on one object are serialised by a
lock; async methods run the engine in a worker thread and never block the event loop.
``batch`` on ``LibLLM`` decodes all prompts together through the engine's multi-sequence
batches (``LLM.generate_batch``) instead of a Python loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.llms import LLM
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import (
    ChatGeneration,
    ChatGenerationChunk,
    ChatResult,
    Generation,
    GenerationChunk,
    LLMResult,
)
from pydantic import BaseModel, ConfigDict, PrivateAttr, model_validator

from ..llm import LLM as _EngineLLM

_DONE = object()


class _EngineOwner(BaseModel):
    """What both classes share: the parameters, the engine built from them, the lock."""

    model_path: str
    n_ctx: int = 2048
    n_threads: int = 0
    n_batch: int = 512
    n_seq_max: int = 4
    n_gpu_layers: int = 0
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    max_tokens: int = 256
    seed: int = 0xFFFFFFFF

    _engine: _EngineLLM | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def _start_engine(self) -> None:
        self._engine = _EngineLLM(
            self.model_path,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            n_batch=self.n_batch,
            n_seq_max=self.n_seq_max,
            seed=self.seed,
            n_gpu_layers=self.n_gpu_layers,
        )

    @property
    def engine(self) -> _EngineLLM:
        if self._engine is None:
            raise RuntimeError("the libllm engine is closed")
        return self._engine

    def close(self) -> None:
        """Frees the model and its context now (otherwise at garbage collection)."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def _sampling(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty,
        }
        for key in list(params) + ["seed"]:
            if key in kwargs:
                params[key] = kwargs[key]
        params["stop"] = list(stop) if stop else None
        return params

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "n_ctx": self.n_ctx,
            "n_gpu_layers": self.n_gpu_layers,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }

    def _pieces(self, prompt: str, stop: list[str] | None, kwargs: dict[str, Any]
                ) -> Iterator[str]:
        """Generated text pieces, holding the lock for the whole generation."""
        params = self._sampling(stop, kwargs)
        with self._lock:
            yield from self.engine.stream(prompt, **params)

    async def _apieces(self, prompt: str, stop: list[str] | None, kwargs: dict[str, Any]
                       ) -> AsyncIterator[str]:
        """The same pieces produced on a worker thread and handed to the event loop."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def produce() -> None:
            try:
                for piece in self._pieces(prompt, stop, kwargs):
                    loop.call_soon_threadsafe(queue.put_nowait, piece)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer, re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, e)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        worker = loop.run_in_executor(None, produce)
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
        await worker


class LibLLM(_EngineOwner, LLM):
    """A LangChain text-completion LLM running a GGUF model with libllm.

    Example:
        llm = LibLLM(model_path="model.gguf", temperature=0)
        (PromptTemplate.from_template("Q: {q}\\nA:") | llm | StrOutputParser()).invoke({"q": ...})
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @model_validator(mode="after")
    def _load(self) -> LibLLM:
        self._start_engine()
        return self

    @property
    def _llm_type(self) -> str:
        return "libllm"

    def _call(self, prompt: str, stop: list[str] | None = None,
              run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> str:
        return "".join(chunk.text for chunk in self._stream(prompt, stop, run_manager, **kwargs))

    def _stream(self, prompt: str, stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                ) -> Iterator[GenerationChunk]:
        for piece in self._pieces(prompt, stop, kwargs):
            chunk = GenerationChunk(text=piece)
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    async def _acall(self, prompt: str, stop: list[str] | None = None,
                     run_manager: AsyncCallbackManagerForLLMRun | None = None,
                     **kwargs: Any) -> str:
        parts = [chunk.text async for chunk in self._astream(prompt, stop, run_manager, **kwargs)]
        return "".join(parts)

    async def _astream(self, prompt: str, stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
                       ) -> AsyncIterator[GenerationChunk]:
        async for piece in self._apieces(prompt, stop, kwargs):
            chunk = GenerationChunk(text=piece)
            if run_manager is not None:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    def _generate(self, prompts: list[str], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                  ) -> LLMResult:
        if len(prompts) == 1:
            text = self._call(prompts[0], stop, run_manager, **kwargs)
            return LLMResult(generations=[[Generation(text=text)]])
        params = self._sampling(stop, kwargs)
        with self._lock:
            texts = self.engine.generate_batch(list(prompts), **params)
        return LLMResult(generations=[[Generation(text=t)] for t in texts])


_ROLES: dict[type[BaseMessage], str] = {
    SystemMessage: "system",
    HumanMessage: "user",
    AIMessage: "assistant",
    ToolMessage: "tool",
}


def _to_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        role = m.role if isinstance(m, ChatMessage) else _ROLES.get(type(m))
        if role is None:
            raise TypeError(f"unsupported message type {type(m).__name__}")
        if not isinstance(m.content, str):
            raise TypeError("only text message content is supported")
        out.append({"role": role, "content": m.content})
    return out


class ChatLibLLM(_EngineOwner, BaseChatModel):
    """A LangChain chat model: messages are formatted with the model's chat template
    (GGUF ``tokenizer.chat_template``, rendered like transformers' ``apply_chat_template``;
    ChatML when the model has none)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @model_validator(mode="after")
    def _load(self) -> ChatLibLLM:
        self._start_engine()
        return self

    @property
    def _llm_type(self) -> str:
        return "libllm-chat"

    def format_messages(self, messages: Sequence[BaseMessage]) -> str:
        """The prompt text the model sees (the engine adds BOS itself)."""
        return self.engine.chat_prompt(_to_dicts(messages))

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                ) -> Iterator[ChatGenerationChunk]:
        for piece in self._pieces(self.format_messages(messages), stop, kwargs):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                  ) -> ChatResult:
        text = "".join(c.text for c in self._stream(messages, stop, run_manager, **kwargs))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
                       ) -> AsyncIterator[ChatGenerationChunk]:
        async for piece in self._apieces(self.format_messages(messages), stop, kwargs):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        parts = [c.text async for c in self._astream(messages, stop, run_manager, **kwargs)]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="".join(parts)))])


__all__ = ["ChatLibLLM", "LibLLM"]
