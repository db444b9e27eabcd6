"""Chat templates rendered by libllm equal transformers' rendering (render_jinja_template, the
code behind apply_chat_template) for the same template, messages and special tokens."""
from __future__ import annotations

from pathlib import Path

import gguf
import modelgen
import pytest
from transformers.utils.chat_template_utils import render_jinja_template

# Templates written for this test in the styles real models use: role markers with
# newlines (ChatML), a BOS prefix with header tokens, a system message folded into the first
# user turn with alternation checks (raise_exception), namespace state, tojson of tools.
TEMPLATES = {
    "chatml": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "headers": (
        "{{ bos_token }}{% for m in messages %}"
        "<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}"
        "<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
        "{% endif %}"
    ),
    "folded_system": """{{ bos_token }}
{% if messages[0]['role'] == 'system' %}
    {% set first = messages[0]['content'] + '\\n\\n' %}
    {% set rest = messages[1:] %}
{% else %}
    {% set first = '' %}
    {% set rest = messages %}
{% endif %}
{% for m in rest %}
    {% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{ raise_exception('roles must alternate user/assistant') }}
    {% endif %}
    {% if m['role'] == 'user' %}
        {{ '[INST] ' + (first if loop.first else '') + m['content'] + ' [/INST]' }}
    {% else %}
        {{ ' ' + m['content'] + eos_token }}
    {% endif %}
{% endfor %}""",
    "namespace_tools": """{% set ns = namespace(n_user=0) %}
{% if tools %}Tools: {{ tools | tojson }}
{% endif %}
{% for m in messages %}
    {% if m['role'] == 'user' %}{% set ns.n_user = ns.n_user + 1 %}{% endif %}
{{ m['role'] }}#{{ ns.n_user }}: {{ m['content'] }}
    {% if loop.last and add_generation_prompt %}assistant:{% endif %}
{% endfor %}""",
}

MESSAGES = [
    {"role": "system", "content": "You are terse. Ünïcödé ok — 東京"},
    {"role": "user", "content": "  Hello there  "},
    {"role": "assistant", "content": "Hi."},
    {"role": "user", "content": "Sum 2 and 3?"},
]
TOOLS = [{"type": "function", "function": {"name": "add", "description": "adds «two» numbers",
                                            "parameters": {"type": "object"}}}]


def _reference(template: str, messages, add_generation_prompt: bool, **kw) -> str:
    rendered, _ = render_jinja_template(
        conversations=[messages], chat_template=template,
        add_generation_prompt=add_generation_prompt, **kw)
    return rendered[0]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_render_equals_transformers(lib, name, add_generation_prompt):
    from libllm.chat import ChatTemplate

    template = TEMPLATES[name]
    chat = ChatTemplate(template, bos_token="<s>", eos_token="</s>")
    tools = TOOLS if name == "namespace_tools" else None
    got = chat.render(MESSAGES, add_generation_prompt=add_generation_prompt, tools=tools)
    want = _reference(template, MESSAGES, add_generation_prompt, bos_token="<s>",
                      eos_token="</s>", tools=tools)
    assert got == want


def test_raise_exception_surfaces(lib):
    import jinja2
    from libllm.chat import ChatTemplate

    chat = ChatTemplate(TEMPLATES["folded_system"], bos_token="<s>", eos_token="</s>")
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(jinja2.exceptions.TemplateError, match="alternate"):
        chat.render(bad)


def _vocab_gguf(path: Path, template: str | None) -> None:
    tokens, scores, types = modelgen.vocab_pieces(512)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    if template is not None:
        w.add_chat_template(template)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_template_from_gguf_metadata(lib, tmp_path):
    from libllm.chat import CHATML_TEMPLATE, ChatTemplate

    long_template = TEMPLATES["headers"] + "{# " + "padding " * 200 + "#}"
    path = tmp_path / "with_template.gguf"
    _vocab_gguf(path, long_template)
    with lib.Model(str(path), vocab_only=True) as model:
        chat = ChatTemplate.from_model(model)
        assert chat.source == long_template
        assert chat.bos_token == "<s>" and chat.eos_token == "</s>"
        assert chat.render(MESSAGES) == _reference(long_template, MESSAGES, True,
                                                   bos_token="<s>", eos_token="</s>")
    path2 = tmp_path / "without.gguf"
    _vocab_gguf(path2, None)
    with lib.Model(str(path2), vocab_only=True) as model:
        assert ChatTemplate.from_model(model).source == CHATML_TEMPLATE
        with pytest.raises(ValueError):
            ChatTemplate.from_model(model, fallback=None)
