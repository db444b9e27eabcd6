"""Chat templates: the model's own ``tokenizer.chat_template`` (GGUF metadata) rendered with
jinja2 the way transformers' ``apply_chat_template`` renders it: a sandboxed environment with
trim_blocks and lstrip_blocks, loop controls, ``raise_exception``, ``strftime_now``, a
``tojson`` that keeps non-ASCII text, and the special tokens as variables."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Model

Message = Mapping[str, Any]

# Used when a model carries no template: the ChatML layout (llama.cpp's fallback too).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _raise_exception(message: str) -> None:
    import jinja2

    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class ChatTemplate:
    """A compiled chat template plus the special-token texts it may refer to.

    Args:
        template: the jinja2 source.
        bos_token, eos_token: texts of the model's BOS / EOS tokens, available to the
            template as ``bos_token`` / ``eos_token``.
    """

    def __init__(self, template: str, bos_token: str = "", eos_token: str = "") -> None:
        try:
            import jinja2
            import jinja2.ext
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError as e:  # pragma: no cover - jinja2 is a dependency
            raise ImportError("chat templates need jinja2 (pip install jinja2)") from e
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        self.source = template
        self.bos_token = bos_token
        self.eos_token = eos_token
        self._template = env.from_string(template)

    @classmethod
    def from_model(cls, model: Model, fallback: str | None = CHATML_TEMPLATE) -> ChatTemplate:
        """The model's template (``tokenizer.chat_template``), or ``fallback`` when it has none
        (ValueError if fallback is None)."""
        source = model.meta("tokenizer.chat_template")
        if source is None:
            if fallback is None:
                raise ValueError("the model has no chat template (tokenizer.chat_template)")
            source = fallback

        def text(token: int) -> str:
            if token < 0:
                return ""
            return model.token_to_piece(token, special=True).decode("utf-8", errors="replace")

        return cls(source, bos_token=text(model.bos), eos_token=text(model.eos))

    def render(
        self,
        messages: Sequence[Message],
        add_generation_prompt: bool = True,
        tools: Sequence[Mapping[str, Any]] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> str:
        """The prompt text for ``messages`` (dicts with ``role`` and ``content``)."""
        for m in messages:
            if not isinstance(m, Mapping):
                raise TypeError(f"chat messages must be mappings, got {type(m).__name__}")
        return str(
            self._template.render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
                tools=None if tools is None else [dict(t) for t in tools],
                documents=None if documents is None else [dict(d) for d in documents],
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **kwargs,
            )
        )
