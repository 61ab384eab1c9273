"""``aki serve``: an OpenAI-compatible HTTP server (FastAPI) in front of a :class:`GenerationEngine`.

Routes: ``POST /v1/chat/completions`` (text and ``image_url`` parts; ``stream: true`` as
server-sent events in OpenAI's chunk format), ``GET /v1/models``, ``GET /health`` (status and the
engine's counters, e.g. ``generate_calls``). With an API key every ``/v1`` route needs
``Authorization: Bearer <key>``; ``/health`` stays open for probes.

Every request is checked before it may join a batch (on a worker thread, so decoding images
never blocks the event loop): body size, fields and types (:mod:`aki.serving.protocol`), the
model name, images (count, encoded bytes, pixels, decodability), roles and message order, the
prompt's length against the model's context, and ``max_tokens`` against the room left. Every
refusal is a 4xx JSON error in OpenAI's shape; the server keeps serving. A request that has not
finished within ``request_timeout_s`` (queueing included) is cancelled and answered 408.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from aki.constants import IMAGE_TOKEN
from aki.serving.batching import SamplingParams
from aki.serving.engine import GenerationEngine, GenerationRequest
from aki.serving.errors import (
    AUTHENTICATION,
    NOT_FOUND,
    SERVER,
    TIMEOUT,
    ApiError,
    bad_request,
    error_body,
)
from aki.serving.image_inputs import ImageLimits, image_from_url
from aki.serving.protocol import ChatCompletionRequest

log = logging.getLogger("aki.serving")

MAX_CHARS_PER_TOKEN = 100
"""A text this many times longer than the context (in tokens) cannot fit: refused untokenized."""


@dataclass(frozen=True)
class ServerSettings:
    """What the server accepts. ``max_images``: images per request (the paper's models read
    one); ``default_max_tokens``: the answer limit when a request sets none (never beyond the
    context); ``request_timeout_s``: per request, queueing included."""

    model_name: str
    api_key: str | None = None
    max_request_bytes: int = 32 * 2**20
    images: ImageLimits = field(default_factory=ImageLimits)
    max_images: int = 1
    default_max_tokens: int = 512
    request_timeout_s: float = 300.0


class _ApiKeyMiddleware:
    """Bearer-token check on ``/v1`` routes, before the body is read (so an unauthenticated
    client learns nothing about request validation)."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1"):
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not secrets.compare_digest(given, self.expected):
                message = ("missing API key: send 'Authorization: Bearer <key>' (the key the server was started with)"
                           if not given else "incorrect API key in the Authorization header")
                response = JSONResponse(error_body(message, type=AUTHENTICATION, code="invalid_api_key"),
                                        status_code=401, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _BodyLimitMiddleware:
    """Requests over ``limit`` bytes get a 413 in OpenAI's error shape (Starlette's own limit
    answers in plain text, and FastAPI turns a failing body read into a generic 400). The body is
    read here, up to the limit, and handed on whole; past the limit it is read and dropped up to
    ``4 * limit``, so that a client still sending learns the status instead of seeing its
    connection reset."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = int(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        too_large = length is not None and length.isdigit() and int(length) > self.limit
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            total += len(message.get("body", b""))
            too_large = too_large or total > self.limit
            if not too_large:
                chunks.append(message.get("body", b""))
            if not message.get("more_body", False) or total > 4 * self.limit:
                break
        if too_large:
            text = (f"the request body is larger than {self.limit / 2**20:.2f} MiB (--max-request-bytes); "
                    "send smaller or fewer images.")
            response = JSONResponse(error_body(text, code="request_too_large"), status_code=413,
                                    headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later reads wait for the disconnect, as ASGI apps expect

        await self.app(scope, replay, send)


def _param(loc: tuple[Any, ...]) -> str | None:
    """A pydantic error location as ``messages[0].content[1].image_url.url``: the body prefix,
    union branch labels and discriminator tags dropped."""
    parts: list[str] = []
    items = [x for x in loc if x != "body"]
    for k, item in enumerate(items):
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        branch = "[" in item or item in ("str", "int", "float", "bool", "list", "dict") or item[:1].isupper()
        tag = k > 0 and isinstance(items[k - 1], int) and item in ("text", "image_url") and k + 1 < len(items)
        if not (branch or tag):
            parts.append(("." if parts else "") + item)
    return "".join(parts) or None


def _validation_error(err: RequestValidationError) -> ApiError:
    """The most specific problem of a request that failed validation, as one clear 400."""
    errors = list(err.errors())
    if not errors:
        return bad_request("the request body is not a valid chat completion request.")
    first = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if first is not None:
        return bad_request(f"the request body is not valid JSON ({first.get('msg')}); send a JSON object.",
                           code="invalid_json")
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return bad_request("the request has no body; send a JSON chat completion request.", code="invalid_json")
    chosen = max(errors, key=lambda e: len([x for x in e.get("loc", ()) if isinstance(x, (int, str))]))
    extra = [e for e in errors if e.get("type") == "extra_forbidden"]
    if extra:
        chosen = extra[0]
    param = _param(tuple(chosen.get("loc", ())))
    kind = chosen.get("type", "")
    msg = str(chosen.get("msg", "invalid value"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "extra_forbidden":
        top_level = param is not None and "." not in param and "[" not in param
        known = (": aki serve takes the OpenAI chat completion fields it implements (model, messages, max_tokens, "
                 "max_completion_tokens, temperature, top_p, top_k, repetition_penalty, stop, seed, n=1, stream, "
                 "stream_options)") if top_level else ""
        return bad_request(f"unknown field {param!r}{known}; remove it.", param=param, code="unknown_field")
    if kind == "missing":
        return bad_request(f"{param} is required.", param=param, code="missing_field")
    if param is None and kind in ("model_attributes_type", "model_type", "dict_type"):
        return bad_request("the request body must be a JSON object, sent with 'Content-Type: application/json'.",
                           code="invalid_json")
    return bad_request(f"{param}: {msg}" if param else msg, param=param, code="invalid_value")


class ChatServer:
    """The request checks and response shapes around one engine (the routes call these)."""

    def __init__(self, engine: GenerationEngine, settings: ServerSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.processor = engine.processor
        self._encode_lock = threading.Lock()  # a fast tokenizer must not be used from two threads at once
        text_config = engine.model.config.get_text_config()
        self.context_length = int(getattr(text_config, "max_position_embeddings", 0) or 0) or 4096
        rule = engine.model.config.rule
        options = rule.check_options(engine.model.config.rule_options)
        window = getattr(text_config, "sliding_window", None)
        # a prompt read under a non-causal rule gets a full 4D mask, which a sliding window cannot trim
        self.prompt_limit = min(self.context_length, int(window)) if window and not rule.is_causal(**options) \
            else self.context_length
        defaults = engine.model.generation_config
        self.default_temperature = float(defaults.temperature or 1.0) if defaults.do_sample else 0.0
        self.created = int(time.time())

    # ------------------------------------------------------------------ requests
    def check_model(self, body: ChatCompletionRequest) -> None:
        if body.model != self.settings.model_name:
            raise ApiError(404, f"model {body.model!r} is not served here; this server serves "
                                f"{self.settings.model_name!r} (GET /v1/models lists it).",
                           type=NOT_FOUND, param="model", code="model_not_found")

    def encode(self, body: ChatCompletionRequest) -> tuple[dict, SamplingParams]:
        """Messages and images to one encoded prompt and its sampling settings (or a 4xx)."""
        n_images = sum(1 for m in body.messages if not isinstance(m.content, str)
                       for part in m.content if part.type == "image_url")
        if n_images > self.settings.max_images:
            raise bad_request(f"the request holds {n_images} images; this model reads at most "
                              f"{self.settings.max_images} per request (--max-images). Send fewer images.",
                              param="messages", code="too_many_images")
        characters = sum(len(m.content) if isinstance(m.content, str) else
                         sum(len(p.text) for p in m.content if p.type == "text") for m in body.messages)
        if characters > MAX_CHARS_PER_TOKEN * self.prompt_limit:  # refused before spending time tokenizing it
            raise bad_request(f"the messages hold {characters:,} characters, far more than the model's "
                              f"{self.prompt_limit}-token context can take; shorten them.", param="messages",
                              code="context_length_exceeded")
        messages, images = [], []
        for i, message in enumerate(body.messages):
            role = "system" if message.role == "developer" else message.role
            if role == "system" and i != 0:
                raise bad_request(f"messages[{i}] is a {message.role} message; only the first message may be one.",
                                  param=f"messages[{i}].role", code="invalid_role")
            if isinstance(message.content, str):
                self._check_text(message.content, f"messages[{i}].content")
                if not message.content.strip() and role == "user":
                    raise bad_request(f"messages[{i}] is an empty user message; ask something.",
                                      param=f"messages[{i}].content", code="empty_message")
                messages.append({"role": role, "content": message.content})
                continue
            if not message.content:
                raise bad_request(f"messages[{i}].content is an empty list; give it a text or image_url part.",
                                  param=f"messages[{i}].content", code="empty_message")
            items = []
            for j, part in enumerate(message.content):
                param = f"messages[{i}].content[{j}]"
                if part.type == "text":
                    self._check_text(part.text, f"{param}.text")
                    items.append({"type": "text", "text": part.text})
                    continue
                if role != "user":
                    raise bad_request(f"{param} is an image in a {message.role} message; images belong in user "
                                      "messages.", param=param, code="invalid_image_position")
                images.append(image_from_url(part.image_url.url, self.settings.images, f"{param}.image_url.url"))
                items.append({"type": "image"})
            messages.append({"role": role, "content": items})
        if messages[-1]["role"] != "user":
            raise bad_request(f"the last message is the {body.messages[-1].role}'s; end with the user message the "
                              "model should answer.", param=f"messages[{len(messages) - 1}].role",
                              code="invalid_role")
        try:
            with self._encode_lock:
                prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
                encoding = self.processor(text=[prompt], images=[images] if images else None, return_tensors="pt")
        except (ValueError, TypeError) as err:
            raise bad_request(f"the messages cannot be encoded: {err}", param="messages",
                              code="invalid_messages") from None
        encoding = {k: v for k, v in encoding.items() if k in ("input_ids", "attention_mask", "segments",
                                                               "pixel_values")}
        return encoding, self._params(body, int(encoding["input_ids"].shape[1]))

    @staticmethod
    def _check_text(text: str, param: str) -> None:
        if IMAGE_TOKEN in text:
            raise bad_request(f"{param} contains {IMAGE_TOKEN}, which marks where an image goes; send images "
                              "as image_url parts and remove the marker from the text.",
                              param=param, code="reserved_token")

    def _params(self, body: ChatCompletionRequest, prompt_tokens: int) -> SamplingParams:
        per_image = self.processor.num_image_tokens
        if prompt_tokens >= self.prompt_limit:
            why = "context" if self.prompt_limit == self.context_length else "sliding window (the rule's prompt limit)"
            raise bad_request(f"the prompt is {prompt_tokens} tokens (each image counts {per_image}), but the model's "
                              f"{why} is {self.prompt_limit} tokens and the answer needs at least one more; "
                              "shorten the conversation.", param="messages", code="context_length_exceeded")
        room = self.context_length - prompt_tokens
        asked, name = body.requested_max_tokens()
        if asked is not None and asked > room:
            raise bad_request(f"{name}={asked} does not fit: the prompt is {prompt_tokens} tokens and the model's "
                              f"context {self.context_length}, leaving {room}; ask for at most {room}.",
                              param=name, code="context_length_exceeded")
        temperature = self.default_temperature if body.temperature is None else float(body.temperature)
        seed = None if body.seed is None else body.seed % 2**63
        return SamplingParams(
            max_new_tokens=asked if asked is not None else min(self.settings.default_max_tokens, room),
            temperature=temperature,
            top_p=1.0 if body.top_p is None else float(body.top_p),
            top_k=max(0, body.top_k or 0),
            repetition_penalty=1.0 if body.repetition_penalty is None else float(body.repetition_penalty),
            stop=body.stop_strings(),
            seed=seed,
        )

    # ------------------------------------------------------------------ responses
    def completion(self, request_id: str, text: str, finish_reason: str, prompt_tokens: int,
                   completion_tokens: int) -> dict[str, Any]:
        return {
            "id": request_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.settings.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": finish_reason, "logprobs": None}],
            "usage": _usage(prompt_tokens, completion_tokens),
        }

    def chunk(self, request_id: str, created: int, delta: dict[str, Any], finish_reason: str | None = None,
              usage: dict | None = None) -> str:
        body: dict[str, Any] = {
            "id": request_id, "object": "chat.completion.chunk", "created": created,
            "model": self.settings.model_name,
            "choices": [] if usage is not None else [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                                                       "logprobs": None}],
        }
        if usage is not None:
            body["usage"] = usage
        return _sse(body)

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{
            "id": self.settings.model_name, "object": "model", "created": self.created, "owned_by": "aki",
            "max_model_len": self.context_length,
        }]}

    def health(self) -> dict[str, Any]:
        config = self.engine.model.config
        return {
            "status": "ok",
            "model": self.settings.model_name,
            "attention_rule": config.attention_rule,
            "device": str(self.engine.model.device),
            "max_batch_size": self.engine.max_batch_size,
            "batch_window_s": self.engine.batch_window_s,
            "queued": self.engine.queued,
            **self.engine.stats.as_dict(),
        }


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def _timeout_error(seconds: float) -> ApiError:
    return ApiError(408, f"the request did not finish within {seconds:g} s (--request-timeout); ask for fewer "
                         "tokens or retry when the server is less busy.", type=TIMEOUT, code="request_timeout")


def create_app(engine: GenerationEngine, settings: ServerSettings, *, manage_engine: bool = True) -> FastAPI:
    """The FastAPI app. ``manage_engine``: start the engine's worker with the app and stop it
    after (False when the caller shares one engine between several apps)."""
    from contextlib import asynccontextmanager

    server = ChatServer(engine, settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if manage_engine:
            engine.start()
        try:
            yield
        finally:
            if manage_engine:
                engine.stop()

    app = FastAPI(title="aki serve", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.chat_server = server
    app.add_middleware(_BodyLimitMiddleware, limit=settings.max_request_bytes)
    if settings.api_key:  # added last: runs first, before any byte of the body is read
        app.add_middleware(_ApiKeyMiddleware, api_key=settings.api_key)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        api = _validation_error(err)
        return JSONResponse(api.body(), status_code=api.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        if err.status_code == 404:
            message, code = f"no route {request.method} {request.url.path}; see /v1/chat/completions, /v1/models, /health.", "not_found"
        else:
            message, code = str(err.detail), None
        kind = NOT_FOUND if err.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(message, type=kind, code=code), status_code=err.status_code,
                            headers=getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(_request: Request, err: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse(error_body(f"internal error: {type(err).__name__}: {err}", type=SERVER,
                                       code="internal_error"), status_code=500)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return server.health()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return server.models()

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, http_request: Request):
        server.check_model(body)
        encoding, params = await run_in_threadpool(server.encode, body)
        loop = asyncio.get_running_loop()
        request = GenerationRequest(encoding=encoding, params=params, loop=loop, events=asyncio.Queue())
        deadline = request.arrived + settings.request_timeout_s
        engine.submit(request)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_stream(server, request, request_id, deadline, include_usage),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        pieces: list[str] = []
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _timeout_error(settings.request_timeout_s)
                try:
                    event = await asyncio.wait_for(request.events.get(), timeout=min(remaining, 1.0))
                except TimeoutError:
                    if await http_request.is_disconnected():  # nobody waits for this answer any more
                        return JSONResponse(error_body("client disconnected", code="client_closed"), 499)
                    continue
                if event[0] == "text":
                    pieces.append(event[1])
                elif event[0] == "error":
                    raise event[1]
                else:
                    break
        finally:
            request.cancelled = True  # no-op when finished; frees the row when the client left or timed out
        row = request.row
        return server.completion(request_id, "".join(pieces), event[1], request.prompt_tokens, row.completion_tokens)

    return app


async def _stream(server: ChatServer, request: GenerationRequest, request_id: str, deadline: float,
                  include_usage: bool) -> AsyncIterator[str]:
    """OpenAI's chunk stream: a role chunk, content chunks, a finish chunk, (usage), ``[DONE]``."""
    created = int(time.time())
    try:
        yield server.chunk(request_id, created, {"role": "assistant", "content": ""})
        while True:
            try:
                event = await asyncio.wait_for(request.events.get(), timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                yield _sse(_timeout_error(server.settings.request_timeout_s).body())
                break
            if event[0] == "text":
                yield server.chunk(request_id, created, {"content": event[1]})
            elif event[0] == "error":
                yield _sse(event[1].body())
                break
            else:
                yield server.chunk(request_id, created, {}, finish_reason=event[1])
                if include_usage:
                    yield server.chunk(request_id, created, {}, usage=_usage(request.prompt_tokens,
                                                                             request.row.completion_tokens))
                break
        yield _sse("[DONE]")
    finally:
        request.cancelled = True  # the client went away, or the stream ended: nothing more to generate


__all__ = ["ChatServer", "ServerSettings", "create_app"]
