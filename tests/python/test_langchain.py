"""The LangChain classes with the real langchain-core: invoke, stream, batch, async, LCEL,
callbacks and stop sequences, checked against libllm's own LLM API."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate

PROMPT = "hello world"


class Tokens(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


@pytest.fixture(scope="module")
def path(model_factory):
    return model_factory("llama", "q8_0").path


@pytest.fixture(scope="module")
def reference(lib, path):
    with lib.LLM(path, n_ctx=512, seed=3) as llm:
        yield llm


@pytest.fixture(scope="module")
def llm(lib, path):
    from libllm.langchain import LibLLM

    model = LibLLM(model_path=path, n_ctx=512, temperature=0, max_tokens=12, seed=3)
    yield model
    model.close()


def test_invoke_stream_and_callbacks(llm, reference):
    want = reference.generate(PROMPT, max_tokens=12, temperature=0)
    assert llm.invoke(PROMPT) == want
    handler = Tokens()
    pieces = list(llm.stream(PROMPT, config={"callbacks": [handler]}))
    assert "".join(pieces) == want
    assert handler.tokens == pieces and len(pieces) > 1
    assert llm._identifying_params["model_path"] == llm.model_path


def test_stop_sequences_cut_exactly(llm, reference):
    full = reference.generate(PROMPT, max_tokens=12, temperature=0)
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    assert stop and stop in full
    assert llm.invoke(PROMPT, stop=[stop]) == full[: full.index(stop)]


def test_batch_uses_engine_batches(llm, reference):
    prompts = [PROMPT, "the cat", "a b c d", PROMPT + " again", "zebra"]
    want = [reference.generate(p, max_tokens=12, temperature=0) for p in prompts]
    assert llm.batch(prompts) == want


def test_async_and_lcel(llm, reference):
    want = reference.generate(PROMPT, max_tokens=12, temperature=0)

    async def run() -> tuple[str, list[str]]:
        text = await llm.ainvoke(PROMPT)
        pieces = [p async for p in llm.astream(PROMPT)]
        return text, pieces

    text, pieces = asyncio.run(run())
    assert text == want and "".join(pieces) == want
    chain = PromptTemplate.from_template("hello {word}") | llm | StrOutputParser()
    assert chain.invoke({"word": "world"}) == want


def test_chat_model_uses_the_template(lib, path, reference):
    from libllm.chat import ChatTemplate
    from libllm.langchain import ChatLibLLM

    chat = ChatLibLLM(model_path=path, n_ctx=512, temperature=0, max_tokens=10, seed=3)
    try:
        messages = [SystemMessage(content="be brief"), HumanMessage(content="hi there"),
                    AIMessage(content="hello"), HumanMessage(content="and now?")]
        template = ChatTemplate.from_model(reference.model)
        prompt = template.render(
            [{"role": r, "content": c} for r, c in
             [("system", "be brief"), ("user", "hi there"), ("assistant", "hello"),
              ("user", "and now?")]])
        assert chat.format_messages(messages) == prompt   # this model's BOS text is not in it
        want = reference.generate(prompt, max_tokens=10, temperature=0)
        assert chat.invoke(messages).content == want
        handler = Tokens()
        chunks = [c.content for c in chat.stream(messages, config={"callbacks": [handler]})]
        assert "".join(chunks) == want and handler.tokens == chunks
        assert asyncio.run(chat.ainvoke(messages)).content == want
    finally:
        chat.close()
