"""The GPT judge of LLaVA-Bench (in-the-wild) and MM-Vet, through any OpenAI-compatible endpoint.

Configured from the command line or the environment: ``--judge-model`` / ``AKI_JUDGE_MODEL``
(required: without it no judge runs and the judge benchmarks are skipped, never scored by a
stand-in), ``--judge-base-url`` / ``AKI_JUDGE_BASE_URL`` (default: the client's own, i.e.
OpenAI's), ``--judge-api-key`` / ``AKI_JUDGE_API_KEY`` (or ``OPENAI_API_KEY``). Calls go through
the official ``openai`` client (``pip install 'aki[judge]'``).

Every reply is stored in ``<out>/<bench>.judge.jsonl`` under a key naming the row and the attempt,
so a rerun asks nothing twice and the review can be read afterwards.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


class JudgeError(RuntimeError):
    """The judge endpoint could not be reached or refused the request."""


@dataclass(frozen=True)
class JudgeConfig:
    model: str
    base_url: str | None = None
    api_key: str | None = None

    @classmethod
    def from_options(cls, model: str | None = None, base_url: str | None = None,
                     api_key: str | None = None) -> JudgeConfig | None:
        """The configured judge, or None when no model is named (the judge benchmarks are skipped)."""
        model = model or os.environ.get("AKI_JUDGE_MODEL")
        if not model:
            return None
        base_url = base_url or os.environ.get("AKI_JUDGE_BASE_URL") or None
        api_key = api_key or os.environ.get("AKI_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        return cls(model=model, base_url=base_url, api_key=api_key)

    def describe(self) -> str:
        return f"{self.model} at {self.base_url or 'the openai client default endpoint'}"


class Judge:
    """Asks the judge model and caches every reply on disk."""

    def __init__(self, config: JudgeConfig, cache_path: str | Path | None = None, timeout: float = 120.0):
        try:
            import openai
        except ImportError as err:
            raise JudgeError(
                "the judge needs the `openai` package, which is not installed; "
                "install it with `pip install 'aki[judge]'`"
            ) from err
        self.config = config
        self._openai = openai
        self._client = openai.OpenAI(base_url=config.base_url, api_key=config.api_key or "unused",
                                     timeout=timeout, max_retries=2)
        self.cache_path = Path(cache_path) if cache_path else None
        self._cache: dict[str, str] = {}
        if self.cache_path and self.cache_path.exists():
            for line in self.cache_path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self._cache[rec["key"]] = rec["reply"]
        self.calls = 0

    def ask(self, key: str, messages: list[dict], *, temperature: float, max_tokens: int) -> str:
        """The judge's reply to ``messages`` (from the cache when ``key`` was asked before)."""
        full_key = f"{self.config.model}|{key}"
        if full_key in self._cache:
            return self._cache[full_key]
        try:
            response = self._client.chat.completions.create(
                model=self.config.model, messages=messages, temperature=temperature, max_tokens=max_tokens,
            )
        except self._openai.OpenAIError as err:
            raise JudgeError(
                f"the judge ({self.config.describe()}) failed: {type(err).__name__}: {err}"
            ) from err
        self.calls += 1
        reply = response.choices[0].message.content or ""
        self._cache[full_key] = reply
        if self.cache_path:
            with open(self.cache_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"key": full_key, "reply": reply}, ensure_ascii=False) + "\n")
        return reply


__all__ = ["Judge", "JudgeConfig", "JudgeError"]
