"""Chat templates per backbone family (Jinja, in transformers' format) and the caption format.

Messages follow transformers: ``{"role": "system"|"user"|"assistant", "content": ...}`` where
``content`` is a string or a list of ``{"type": "image"}`` / ``{"type": "text", "text": ...}``
items. An image item renders as ``<image>`` plus a newline, a text item as its text, in item order
(so ``[image, text]`` is I&T and ``[text, image]`` is T&I).

Every template keeps one property the processor relies on to find segments: rendering a
conversation one message longer only *appends* text, and the generation prompt
(``add_generation_prompt=True``) is exactly the header an assistant message starts with.

- ``phi3``: the paper's template (official release), with its default system prompt; an
  assistant turn ends with ``<|endoftext|>`` (no newline after it).
- ``llama3``: Llama-3.x header tokens; no system block unless a system message is given.
- ``qwen2``: ChatML; Qwen2's default system prompt when none is given.
- ``qwen3``: ChatML in Qwen3's non-thinking mode: every assistant header (and the generation
  prompt) is followed by an empty ``<think>\\n\\n</think>\\n\\n`` block; no default system prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aki.constants import END_OF_CHUNK_TOKEN, IMAGE_TOKEN
from aki.processing.families import normalize_family

DEFAULT_SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
"""The paper's system prompt (phi3 template)."""

QWEN2_DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

_CONTENT_MACRO = (
    "{%- macro aki_content(content) -%}"
    "{%- if content is none -%}"
    "{%- elif content is string -%}{{- content -}}"
    "{%- else -%}{%- for item in content -%}"
    "{%- if item['type'] == 'image' -%}{{- '<image>\\n' -}}"
    "{%- elif item['type'] == 'text' -%}{{- item['text'] -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
)

_BAD_ROLE = "{{- raise_exception('AKI chat templates know the roles system, user and assistant; got ' + message['role']) -}}"

PHI3_TEMPLATE = (
    _CONTENT_MACRO + "{{- bos_token if bos_token else '' -}}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system_prompt = aki_content(messages[0]['content']) -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    '{%- set system_prompt = "' + DEFAULT_SYSTEM_PROMPT + '" -%}'
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{{- '<|system|>\\n' + system_prompt + '<|end|>\\n' -}}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- '<|user|>\\n' + aki_content(message['content']) + '<|end|>\\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '<|assistant|>\\n' + aki_content(message['content']) + '<|endoftext|>' -}}"
    "{%- else -%}" + _BAD_ROLE + "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
)

LLAMA3_TEMPLATE = (
    _CONTENT_MACRO + "{{- bos_token if bos_token else '' -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] in ['system', 'user', 'assistant'] -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + aki_content(message['content']) + '<|eot_id|>' -}}"
    "{%- else -%}" + _BAD_ROLE + "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}"
    "{%- endif -%}"
)

QWEN2_TEMPLATE = (
    _CONTENT_MACRO + "{%- if not messages or messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\n" + QWEN2_DEFAULT_SYSTEM_PROMPT + "<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] in ['system', 'user', 'assistant'] -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + aki_content(message['content']) + '<|im_end|>\\n' -}}"
    "{%- else -%}" + _BAD_ROLE + "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

QWEN3_TEMPLATE = (
    _CONTENT_MACRO + "{%- for message in messages -%}"
    "{%- if message['role'] in ['system', 'user'] -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + aki_content(message['content']) + '<|im_end|>\\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n'"
    " + aki_content(message['content']) + '<|im_end|>\\n' -}}"
    "{%- else -%}" + _BAD_ROLE + "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
)

CHAT_TEMPLATES: dict[str, str] = {
    "phi3": PHI3_TEMPLATE,
    "llama3": LLAMA3_TEMPLATE,
    "qwen2": QWEN2_TEMPLATE,
    "qwen3": QWEN3_TEMPLATE,
}

CAPTION_FORMATS: dict[str, str] = {
    "I&T": IMAGE_TOKEN + "{caption}" + END_OF_CHUNK_TOKEN,
    "T&I": "{caption}" + IMAGE_TOKEN + END_OF_CHUNK_TOKEN,
}
"""Pre-training text per input order; BOS/EOS are added around it when the tokenizer has them."""

_ROLES = ("system", "user", "assistant")
_ITEM_TYPES = ("image", "text")


def get_chat_template(family: str) -> str:
    """The Jinja chat template of a backbone family (``phi3``, ``llama3``, ``qwen2``, ``qwen3``)."""
    return CHAT_TEMPLATES[normalize_family(family)]


def validate_messages(messages: Sequence[Mapping[str, Any]]) -> None:
    """Raise a clear ValueError for messages the templates cannot render faithfully."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValueError(
            f"a conversation must be a list of message dicts; got {type(messages).__name__}."
        )
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message:
            raise ValueError(f"message {i} must be a dict with 'role' and 'content'; got {message!r}.")
        if message["role"] not in _ROLES:
            raise ValueError(f"message {i} has role {message['role']!r}; use one of {_ROLES}.")
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, Sequence):
            raise ValueError(f"message {i}: content must be a string or a list of items.")
        for item in content:
            kind = item.get("type") if isinstance(item, Mapping) else None
            if kind not in _ITEM_TYPES:
                raise ValueError(
                    f"message {i}: content items must be {{'type': 'image'}} or "
                    f"{{'type': 'text', 'text': ...}}; got {item!r}."
                )
            if kind == "text" and not isinstance(item.get("text"), str):
                raise ValueError(f"message {i}: a text item needs a string 'text'; got {item!r}.")
        if message["role"] != "user" and any(item["type"] == "image" for item in content):
            raise ValueError(
                f"message {i} ({message['role']}) holds an image; images may only be in user messages."
            )


def render_chat(
    messages: Sequence[Mapping[str, Any]],
    chat_template: str,
    *,
    add_generation_prompt: bool = False,
    continue_final_message: bool = False,
    special_tokens: Mapping[str, str | None] | None = None,
) -> str:
    """Render one conversation with a Jinja chat template (transformers' sandboxed renderer).

    ``continue_final_message``: end the text inside the last (assistant) message, without its
    end-of-turn, so generation continues it (a prefilled answer).
    """
    from transformers.utils.chat_template_utils import render_jinja_template

    kwargs = {k: v for k, v in (special_tokens or {}).items() if v is not None}
    rendered, _ = render_jinja_template(
        conversations=[list(messages)],
        chat_template=chat_template,
        add_generation_prompt=add_generation_prompt,
        continue_final_message=continue_final_message,
        **kwargs,
    )
    return rendered[0]


def caption_text(
    caption: str, order: str = "I&T", bos_token: str | None = None, eos_token: str | None = None
) -> str:
    """Pre-training text: ``{bos}<image>{caption}<|endofchunk|>{eos}`` (I&T) or the T&I variant."""
    if order not in CAPTION_FORMATS:
        raise ValueError(f"order must be one of {sorted(CAPTION_FORMATS)}; got {order!r}.")
    return (bos_token or "") + CAPTION_FORMATS[order].format(caption=caption) + (eos_token or "")


__all__ = [
    "CAPTION_FORMATS",
    "CHAT_TEMPLATES",
    "DEFAULT_SYSTEM_PROMPT",
    "caption_text",
    "get_chat_template",
    "render_chat",
    "validate_messages",
]
