"""The GPT-judge benchmarks against a real OpenAI-compatible server on loopback (a FastAPI app the
test starts with uvicorn), through the official `openai` client, including unparseable replies."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from aki.eval import llavabench, mmvet
from aki.eval.judge import Judge, JudgeConfig, JudgeError
from aki.eval.suite import dominant_answer


@pytest.fixture(scope="module")
def judge_server():
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    seen: list[dict] = []

    @app.post("/v1/chat/completions")
    def completions(body: dict):
        seen.append(body)
        text = body["messages"][-1]["content"]
        if "[Assistant 2]" in text:  # LLaVA-Bench review
            reply = "I cannot rate this." if "UNRATEABLE" in text else "8 6\nAssistant 1 is more detailed."
        else:  # MM-Vet grading: the last table line holds the prediction
            last = text.rstrip().splitlines()[-1]
            reply = "garbage" if "GIBBERISH" in last else ("1.0" if "cat" in last else "0.2")
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": reply}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1", seen
    server.should_exit = True
    thread.join(timeout=5)


def test_llava_bench_relative_score_and_unparsed_review(judge_server, tmp_path):
    url, seen = judge_server
    judge = Judge(JudgeConfig(model="stub-judge", base_url=url, api_key="k"), tmp_path / "llava-w.judge.jsonl")
    rows = [
        {"index": "1", "question": "Describe.", "caption": "a cat", "gpt4_ans": "A cat.", "category": "detail",
         "prediction": "A cat on a mat."},
        {"index": "2", "question": "Why?", "caption": "a dog", "gpt4_ans": "Because.", "category": "complex",
         "prediction": "UNRATEABLE"},
        {"index": "3", "question": "Chat?", "caption": "a dog", "gpt4_ans": "Yes.", "category": "conv",
         "prediction": ""},
    ]
    s = llavabench.score(rows, judge)
    assert s["judge_unparsed"] == 1 and s["judged"] == 2  # counted, never crashing
    assert s["overall"] == pytest.approx(75.0)  # (6 + 6) / (8 + 8)
    assert s["per_category"] == {"conv": pytest.approx(75.0), "detail": pytest.approx(75.0)}
    assert s["unparsed"] == 1  # the empty answer was still judged
    body = seen[-1]
    assert body["temperature"] == 0.2 and body["messages"][0]["role"] == "system"
    # a rerun reads the cached replies: the server is not asked again
    calls = len(seen)
    again = llavabench.score(rows, Judge(judge.config, tmp_path / "llava-w.judge.jsonl"))
    assert again == s and len(seen) == calls


def test_mmvet_retries_then_scores_zero(judge_server, tmp_path):
    url, seen = judge_server
    judge = Judge(JudgeConfig(model="stub-judge", base_url=url), tmp_path / "mmvet.judge.jsonl")
    rows = [
        {"index": "a", "question": "What animal?", "answer": "cat", "category": "rec", "prediction": "a cat"},
        {"index": "b", "question": "Sum?", "answer": "4<OR>four", "category": "math,ocr", "prediction": "five"},
        {"index": "c", "question": "Text?", "answer": "hi", "category": "ocr", "prediction": "GIBBERISH"},
    ]
    before = len(seen)
    s = mmvet.score(rows, judge)
    assert len(seen) - before == 1 + 1 + mmvet.TRIES  # the unparseable one is asked five times
    assert [b["temperature"] for b in seen[-mmvet.TRIES:]] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert s["judge_unparsed"] == 1
    assert s["overall"] == pytest.approx(100 * (1.0 + 0.2 + 0.0) / 3)
    assert s["per_capability"] == {"rec": 100.0, "ocr": pytest.approx(10.0), "math": pytest.approx(20.0)}
    assert " 4 <OR> four " in mmvet.grading_prompt(rows[1])


def test_no_judge_configured_and_judge_unreachable(monkeypatch, tmp_path):
    for var in ("AKI_JUDGE_MODEL", "AKI_JUDGE_BASE_URL", "AKI_JUDGE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    assert JudgeConfig.from_options() is None
    monkeypatch.setenv("AKI_JUDGE_MODEL", "m")
    monkeypatch.setenv("AKI_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    config = JudgeConfig.from_options()
    assert config.model == "m" and config.base_url == "http://127.0.0.1:9/v1"
    judge = Judge(config, timeout=2)
    judge._client = judge._client.with_options(max_retries=0)
    with pytest.raises(JudgeError, match=r"the judge .* failed"):
        judge.ask("k", [{"role": "user", "content": "x"}], temperature=0, max_tokens=3)


def test_dominant_answer_warning():
    assert dominant_answer(["B"] * 9 + ["A"]) == ("b", 0.9)
    assert dominant_answer(["yes", "no"] * 5) is None
    assert dominant_answer(["B"] * 3) is None  # too few rows to say
