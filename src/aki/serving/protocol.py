"""The OpenAI chat-completions request, as aki serves it (pydantic, strict).

Only what aki can honour is accepted: unknown fields are refused (a typo must not pass
silently), numbers must be JSON numbers, and OpenAI fields that aki does not implement (tools,
logprobs, penalties other than 0, ``n`` > 1, ...) are refused by name. Two common extensions of
OpenAI-compatible servers (vLLM's) are accepted because evaluation toolkits send them:
``top_k`` and ``repetition_penalty``. ``image_url.detail`` is accepted and has no effect: aki
reads every image at its tower's fixed resolution (the docs say so).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_STOP_STRINGS = 4
MAX_STOP_LENGTH = 256

UNSUPPORTED_FIELDS: dict[str, Any] = {
    # field: its neutral value (accepted), or ... (never accepted)
    "tools": ..., "tool_choice": ..., "functions": ..., "function_call": ..., "parallel_tool_calls": ...,
    "logit_bias": ..., "top_logprobs": ..., "audio": ..., "modalities": ..., "prediction": ...,
    "reasoning_effort": ..., "web_search_options": ..., "verbosity": ..., "prompt_cache_key": ...,
    "prompt_cache_retention": ..., "prompt_cache_options": ..., "moderation": ..., "guided_json": ...,
    "logprobs": False, "presence_penalty": 0, "frequency_penalty": 0,
}
"""OpenAI (and common extension) fields aki does not implement; a request that sets one to
anything but its neutral value is refused with a message naming it."""

IGNORED_METADATA = ("user", "safety_identifier", "metadata", "store", "service_tier")
"""Bookkeeping fields that never change an answer; accepted and not used."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImageUrl(_Strict):
    url: str
    detail: Literal["auto", "low", "high"] = "auto"


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if data.get("role") == "tool":
                raise ValueError("role 'tool' is not supported: aki serve has no tool calls")
            for key in ("name", "tool_calls", "tool_call_id", "function_call", "refusal", "audio"):
                if data.get(key) is not None:
                    raise ValueError(f"message field {key!r} is not supported by aki serve; drop it")
            data = {k: v for k, v in data.items()
                    if k not in ("name", "tool_calls", "tool_call_id", "function_call", "refusal", "audio")}
        return data


class StreamOptions(_Strict):
    include_usage: bool = False
    include_obfuscation: bool = False


class ResponseFormat(_Strict):
    type: Literal["text"]


class ChatCompletionRequest(_Strict):
    """``POST /v1/chat/completions``."""

    model: str
    messages: list[Message]
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1)
    repetition_penalty: float | None = Field(None, gt=0, le=10)
    n: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    safety_identifier: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key, neutral in UNSUPPORTED_FIELDS.items():
            if key not in data:
                continue
            value = data.pop(key)
            if value is None or (neutral is not ... and value == neutral
                                 and isinstance(value, bool) == isinstance(neutral, bool)):
                continue
            raise ValueError(f"{key}={value!r} is not supported by aki serve; leave {key} out"
                             + (f" or set it to {neutral!r}" if neutral is not ... else ""))
        return data

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, messages: list[Message]) -> list[Message]:
        if not messages:
            raise ValueError("messages is empty; send at least one user message")
        return messages

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int | None) -> int | None:
        if n is not None and n != 1:
            raise ValueError(f"n={n} is not supported: aki serve returns one choice per request; "
                             "send n=1 (or leave it out) and repeat the request with a seed for more samples")
        return n

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, stop: str | list[str] | None) -> str | list[str] | None:
        items = [stop] if isinstance(stop, str) else list(stop or [])
        if len(items) > MAX_STOP_STRINGS:
            raise ValueError(f"stop holds {len(items)} strings; at most {MAX_STOP_STRINGS} are allowed")
        for item in items:
            if not item:
                raise ValueError("stop holds an empty string; every stop string needs at least one character")
            if len(item) > MAX_STOP_LENGTH:
                raise ValueError(f"a stop string is {len(item)} characters long; at most {MAX_STOP_LENGTH}")
        return stop

    @model_validator(mode="after")
    def _one_length_limit(self) -> ChatCompletionRequest:
        if self.max_completion_tokens is not None and self.max_tokens is not None \
                and self.max_completion_tokens != self.max_tokens:
            raise ValueError(
                f"max_tokens={self.max_tokens} and max_completion_tokens={self.max_completion_tokens} disagree; "
                "send one of them")
        return self

    def stop_strings(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def requested_max_tokens(self) -> tuple[int | None, str]:
        """The answer-length limit the client asked for and the field it came in."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens, "max_completion_tokens"
        return self.max_tokens, "max_tokens"


__all__ = [
    "ChatCompletionRequest",
    "ContentPart",
    "ImagePart",
    "ImageUrl",
    "Message",
    "StreamOptions",
    "TextPart",
]
