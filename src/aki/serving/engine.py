"""Dynamic batching: requests that arrive close together share one ``generate`` call.

One worker thread owns the model. It waits for a request, then keeps collecting for a short
window (``batch_window_s``, counted from the first request's arrival) up to ``max_batch_size``
requests, and runs them as ONE ``model.generate`` call: the prompts left-padded together, each
read under the model's attention rule (MMA's prefill is per row, from that row's segments),
answers decoded causally. Rows differ freely in sampling settings, ``max_tokens`` and stop
strings (:mod:`aki.serving.batching`); greedy rows get exactly the tokens the same request gets
alone. Requests arriving while a batch runs wait for the next one (no continuous batching:
``generate`` owns its batch and cache for the whole call).

Results travel to the asyncio side as events on the request's own queue, put there with
``loop.call_soon_threadsafe``: ``("text", piece)``, then ``("done", finish_reason)`` or
``("error", ApiError)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

from aki.serving.batching import BatchRouter, Row, RowSampler, SamplingParams, stack_prompts
from aki.serving.errors import SERVER, ApiError

log = logging.getLogger("aki.serving")


@dataclass
class GenerationRequest:
    """A validated, encoded prompt waiting for its batch, and where its answer goes."""

    encoding: dict[str, torch.Tensor]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue
    arrived: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    row: Row | None = None

    @property
    def prompt_tokens(self) -> int:
        return int(self.encoding["input_ids"].shape[1])

    def send(self, *event: Any) -> None:
        """Hand an event to the request's asyncio queue (safe from any thread)."""
        if self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)


@dataclass
class EngineStats:
    """Counters ``/health`` shows (the tests read ``generate_calls`` to see a batch happen)."""

    generate_calls: int = 0
    requests_completed: int = 0
    requests_failed: int = 0
    largest_batch: int = 0
    rows_generated: int = 0
    tokens_generated: int = 0
    last_batch_sizes: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "generate_calls": self.generate_calls,
            "requests_completed": self.requests_completed,
            "requests_failed": self.requests_failed,
            "largest_batch": self.largest_batch,
            "mean_batch_size": round(self.rows_generated / self.generate_calls, 3) if self.generate_calls else 0.0,
            "tokens_generated": self.tokens_generated,
            "last_batch_sizes": list(self.last_batch_sizes),
        }


class QueueFullError(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(429, f"the server already has {limit} requests waiting (--max-queue); retry shortly.",
                         type="rate_limit_error", code="queue_full")


class GenerationEngine:
    """The model, its processor and the batching worker (see the module doc)."""

    def __init__(self, model, processor, *, max_batch_size: int = 8, batch_window_s: float = 0.01,
                 max_queue: int = 256) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1; got {max_batch_size}.")
        if batch_window_s < 0:
            raise ValueError(f"batch_window_s must be >= 0; got {batch_window_s}.")
        self.model = model
        self.processor = processor
        self.max_batch_size = int(max_batch_size)
        self.batch_window_s = float(batch_window_s)
        self.max_queue = int(max_queue)
        self.stats = EngineStats()
        self.generation_config = self._generation_config()
        # the worker decodes with its own copy: a fast tokenizer must not be used from two threads
        # at once, and the server encodes new requests while a batch runs
        self._decoder = copy.deepcopy(processor.tokenizer)
        self._queue: queue.Queue[GenerationRequest] = queue.Queue()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.lock = threading.Lock()
        """Held while the model runs; other users of the same model (tests, the demo) take it too."""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            return
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name="aki-generate", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout)
        while True:  # anything still queued gets an answer, not a hang
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                break
            request.send("error", ApiError(503, "the server is shutting down; retry on another instance.",
                                           type=SERVER, code="shutting_down"))

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, request: GenerationRequest) -> None:
        """Queue a request for the next batch (thread-safe); 429 when the queue is full."""
        if self._queue.qsize() >= self.max_queue:
            raise QueueFullError(self.max_queue)
        self._queue.put(request)

    # ------------------------------------------------------------------ the worker
    def _generation_config(self) -> GenerationConfig:
        """The model's own generation config (its end-of-turn ids, pad id, ``<image>`` suppressed)
        made greedy: sampling happens per row in :class:`RowSampler`."""
        base = self.model.generation_config.to_dict()
        keep = {k: base[k] for k in ("eos_token_id", "pad_token_id", "bos_token_id", "suppress_tokens",
                                      "begin_suppress_tokens") if base.get(k) is not None}
        if keep.get("eos_token_id") is None:
            keep["eos_token_id"] = list(self.processor.eos_token_ids)
        keep.setdefault("pad_token_id", self.processor.pad_token_id)
        return GenerationConfig(do_sample=False, num_beams=1, **keep)

    @property
    def eos_token_ids(self) -> list[int]:
        eos = self.generation_config.eos_token_id
        return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]

    def _collect(self) -> list[GenerationRequest]:
        """The next batch: the first request, then whatever arrives within the window."""
        try:
            first = self._queue.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        deadline = first.arrived + self.batch_window_s
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return [r for r in batch if not r.cancelled]

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._collect()
            if batch:
                self.generate_batch(batch)

    def generate_batch(self, batch: list[GenerationRequest]) -> None:
        """Run one ``generate`` call for ``batch`` and route every row's answer to its request."""
        rows = []
        for request in batch:
            request.row = Row(params=request.params,
                              emit=lambda text, r=request: r.send("text", text),
                              is_cancelled=lambda r=request: r.cancelled)
            rows.append(request.row)
        try:
            with self.lock:
                self._generate(batch, rows)
        except Exception as err:  # one bad batch must not stop the server
            log.exception("generate failed for a batch of %d request(s)", len(batch))
            self.stats.requests_failed += len(batch)
            failure = ApiError(500, f"generation failed: {type(err).__name__}: {err}", type=SERVER,
                               code="generation_failed")
            for request in batch:
                request.send("error", failure)
            return
        for request in batch:
            row = request.row
            self.stats.tokens_generated += row.completion_tokens
            if row.finish_reason != "cancelled":
                self.stats.requests_completed += 1
            request.send("done", row.finish_reason)

    def _generate(self, batch: list[GenerationRequest], rows: list[Row]) -> None:
        device = self.model.device
        inputs = stack_prompts([r.encoding for r in batch], self.processor.pad_token_id)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        prompt_length = int(inputs["input_ids"].shape[1])
        params = [r.params for r in batch]
        decoder = self._decoder
        router = BatchRouter(rows, lambda ids: decoder.decode(ids, skip_special_tokens=True),
                             self.eos_token_ids, prompt_length)
        processors = LogitsProcessorList()
        if any(p.changes_logits for p in params):
            processors.append(RowSampler(params, device))
        self.stats.generate_calls += 1
        self.stats.rows_generated += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        self.stats.last_batch_sizes = [*self.stats.last_batch_sizes[-31:], len(batch)]
        config = copy.deepcopy(self.generation_config)
        config.max_new_tokens = max(p.max_new_tokens for p in params)
        with torch.inference_mode():
            self.model.generate(
                **inputs,
                generation_config=config,
                logits_processor=processors,
                stopping_criteria=StoppingCriteriaList([router]),
            )
        router.finish_all()


__all__ = ["EngineStats", "GenerationEngine", "GenerationRequest", "QueueFullError"]
