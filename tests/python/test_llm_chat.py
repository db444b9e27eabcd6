"""LLM.chat / chat_stream: messages through the model's template, and a conversation that
grows turn by turn decodes only its new turns."""
from __future__ import annotations

from transformers.utils.chat_template_utils import render_jinja_template


def test_chat_follows_the_template_and_keeps_history(lib, model_factory):
    path = model_factory("llama", "q8_0").path
    turns = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
    with lib.LLM(path, n_ctx=512, seed=2) as llm:
        prompt = llm.chat_prompt(turns)
        rendered, _ = render_jinja_template(
            conversations=[turns], chat_template=llm.chat_template.source,
            add_generation_prompt=True, bos_token=llm.chat_template.bos_token,
            eos_token=llm.chat_template.eos_token)
        assert rendered[0].endswith(prompt)
        reply = llm.chat(turns, max_tokens=8, temperature=0)
        assert "".join(llm.chat_stream(turns, max_tokens=8, temperature=0)) == reply
        turns += [{"role": "assistant", "content": reply}, {"role": "user", "content": "more"}]
        second = llm.chat(turns, max_tokens=8, temperature=0)
        n_first = len(llm.tokenize(prompt))
        assert llm.last_stats.n_prompt_reused >= n_first - 1    # history stayed in the cache
    with lib.LLM(path, n_ctx=512, seed=2) as fresh:
        assert fresh.chat(turns, max_tokens=8, temperature=0) == second
