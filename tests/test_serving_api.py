"""`aki serve` through the official `openai` client against real uvicorn servers on 127.0.0.1.

Two servers share one engine (one tiny MMA model): the main one with an API key and tight
limits, and a second with remote images allowed (fetched from a local HTTP server) and a short
request timeout. Answers are compared with the model's own `generate`; concurrent requests must
run as one generate call (the server's `/health` counter) and equal the same requests sent one by
one; every bad input gets its 4xx in OpenAI's error shape and the next good request still works.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import openai
import pytest
import uvicorn
from PIL import Image

from aki.model.loading import load_pretrained
from aki.prompts import user_message
from aki.serving.engine import GenerationEngine
from aki.serving.image_inputs import ImageLimits
from aki.serving.server import ServerSettings, create_app
from aki.testing import tiny_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

KEY = "test-key"
LONG = "Describe the scene in detail."
NAME = "tiny-aki"


def png(color="red", size=(40, 40), noise: bool = False) -> bytes:
    if noise:
        pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
    else:
        image = Image.new("RGB", size, color)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def data_url(raw: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64,{base64.b64encode(raw).decode()}"


def ask(text: str, *urls: str) -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """A uvicorn server on 127.0.0.1 in a thread (started and stopped by the fixtures)."""

    def __init__(self, app) -> None:
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        assert self.server.started, "uvicorn did not start"
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served") / NAME
    model, processor = tiny_model("phi3", rule="mma", seed=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def engine(model_dir):
    model, processor = load_pretrained(model_dir, device="cpu")
    eng = GenerationEngine(model, processor, max_batch_size=4, batch_window_s=0.005)
    eng.start()
    yield eng
    eng.stop()


@pytest.fixture(scope="module")
def servers(engine):
    strict = ServerSettings(model_name=NAME, api_key=KEY, max_request_bytes=2**20, max_images=1,
                            images=ImageLimits(max_bytes=200_000, max_pixels=120 * 120), request_timeout_s=60)
    relaxed = ServerSettings(model_name=NAME, images=ImageLimits(allow_remote=True), request_timeout_s=0.3)
    main = _Server(create_app(engine, strict, manage_engine=False))
    other = _Server(create_app(engine, relaxed, manage_engine=False))
    yield main, other
    main.stop()
    other.stop()


@pytest.fixture(scope="module")
def client(servers):
    return openai.OpenAI(base_url=servers[0].url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def health(server) -> dict:
    with urllib.request.urlopen(server.url + "/health", timeout=10) as response:
        return json.loads(response.read())


def reference(engine, text: str, image_bytes: bytes, max_new_tokens: int) -> tuple[str, int, int]:
    """What the model's own greedy ``generate`` answers: (text, prompt tokens, answer tokens)."""
    processor, model = engine.processor, engine.model
    prompt = processor.apply_chat_template([user_message(text)], add_generation_prompt=True)
    batch = processor(text=[prompt], images=[[Image.open(io.BytesIO(image_bytes))]])
    with engine.lock:
        out = model.generate(**batch, max_new_tokens=max_new_tokens)
    new = out[0, batch["input_ids"].shape[1]:].tolist()
    eos = set(processor.eos_token_ids)
    n = next((k + 1 for k, t in enumerate(new) if t in eos), len(new))
    return processor.tokenizer.decode(new[:n], skip_special_tokens=True), batch["input_ids"].shape[1], n


# ---------------------------------------------------------------------------------- good requests


def test_models_health_and_api_key(servers, client):
    main, _ = servers
    assert [m.id for m in client.models.list().data] == [NAME]
    info = health(main)  # open without a key, for probes
    assert info["status"] == "ok" and info["model"] == NAME and info["attention_rule"] == "mma"
    for key in ("wrong-key", None):
        bad = openai.OpenAI(base_url=main.url + "/v1", api_key=key or "unused", max_retries=0,
                            default_headers={} if key else {"Authorization": ""})
        with pytest.raises(openai.AuthenticationError) as err:
            bad.chat.completions.create(model=NAME, messages=ask("hi"), max_tokens=1)
        assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"
    assert client.chat.completions.create(model=NAME, messages=ask("hi"), max_tokens=1).choices


def test_answer_equals_generate_with_usage(engine, client):
    image = png("red")
    want, prompt_tokens, n = reference(engine, "What is in the image?", image, 12)
    got = client.chat.completions.create(model=NAME, messages=ask("What is in the image?", data_url(image)),
                                         max_tokens=12, temperature=0)
    assert got.choices[0].message.content == want
    assert got.choices[0].finish_reason == ("length" if n == 12 else "stop")
    assert got.usage.prompt_tokens == prompt_tokens and got.usage.completion_tokens == n
    assert got.usage.total_tokens == prompt_tokens + n
    assert got.model == NAME and got.object == "chat.completion"
    # max_completion_tokens is the same limit; a stop string ends the answer before it
    again = client.chat.completions.create(model=NAME, messages=ask("What is in the image?", data_url(image)),
                                           max_completion_tokens=12)
    assert again.choices[0].message.content == want  # the model's default is greedy
    stop = want[3:5]
    cut = client.chat.completions.create(model=NAME, messages=ask("What is in the image?", data_url(image)),
                                         max_tokens=12, stop=[stop])
    assert cut.choices[0].message.content == want[: want.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_streaming_chunks_add_up_to_the_answer(client):
    messages = ask("Describe the scene in detail.", data_url(png("blue")))
    plain = client.chat.completions.create(model=NAME, messages=messages, max_tokens=10)
    stream = client.chat.completions.create(model=NAME, messages=messages, max_tokens=10, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == plain.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [plain.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)


def test_concurrent_requests_run_as_one_generate_call_and_equal_one_by_one(engine, servers, client):
    requests = [
        dict(messages=ask("How many red circles are there?", data_url(png("red"))), max_tokens=9),
        dict(messages=ask("What color is the car?", data_url(png("green"))), max_tokens=4),
        dict(messages=ask("Is there a dog in the image?", data_url(png("white"))), max_tokens=12,
             temperature=0.9, top_p=0.8, seed=1234),
        dict(messages=[{"role": "system", "content": "Be brief."}, *ask("Count the squares.")], max_tokens=7,
             stream=True),
    ]
    alone = [client.chat.completions.create(model=NAME, **{**r, "stream": False}) for r in requests]
    alone_texts = [a.choices[0].message.content for a in alone]
    before = health(servers[0])["generate_calls"]
    results: list = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def send(k: int) -> None:
        barrier.wait()
        r = requests[k]
        if r.get("stream"):
            results[k] = "".join(c.choices[0].delta.content or "" for c in
                                 client.chat.completions.create(model=NAME, **r) if c.choices)
        else:
            results[k] = client.chat.completions.create(model=NAME, **r).choices[0].message.content

    engine.batch_window_s = 5.0  # long enough for all four to arrive; the batch cap (4) starts it at once
    try:
        threads = [threading.Thread(target=send, args=(k,)) for k in range(len(requests))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        engine.batch_window_s = 0.005
    info = health(servers[0])
    assert info["generate_calls"] - before == 1, info
    assert info["last_batch_sizes"][-1] == len(requests)
    assert results == alone_texts  # greedy rows exactly; the seeded sampled row reproduces its sample


def test_remote_images_when_enabled_and_request_timeout(servers, tmp_path):
    _, other = servers
    (tmp_path / "cat.png").write_bytes(png("orange"))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    relaxed = openai.OpenAI(base_url=other.url + "/v1", api_key="none", max_retries=0)
    try:
        url = f"http://127.0.0.1:{files.server_address[1]}/cat.png"
        got = relaxed.chat.completions.create(model=NAME, messages=ask("What is it?", url), max_tokens=1)
        assert got.usage.prompt_tokens > 16  # the image's tokens are in the prompt
        missing = f"http://127.0.0.1:{files.server_address[1]}/nothing.png"
        with pytest.raises(openai.BadRequestError) as err:
            relaxed.chat.completions.create(model=NAME, messages=ask("What is it?", missing), max_tokens=1)
        assert err.value.body["code"] == "image_fetch_failed"
    finally:
        files.shutdown()
    # 0.3 s is too short for 400 tokens (this tiny model's greedy answer to LONG runs past 300): 408,
    # for a plain and for a streamed request
    before = health(other)["tokens_generated"]
    with pytest.raises(openai.APIStatusError) as err:
        relaxed.chat.completions.create(model=NAME, messages=ask(LONG), max_tokens=400)
    assert err.value.status_code == 408 and err.value.body["code"] == "request_timeout"
    with pytest.raises(openai.APIError, match="did not finish"):
        list(relaxed.chat.completions.create(model=NAME, messages=ask(LONG), max_tokens=400, stream=True))
    for _ in range(100):  # the cancelled rows stop at once; the server is free again
        info = health(other)
        if info["queued"] == 0 and info["tokens_generated"] > before:
            break
        time.sleep(0.05)
    assert relaxed.chat.completions.create(model=NAME, messages=ask("hi"), max_tokens=1).choices


def test_a_client_that_leaves_stops_its_generation(servers, client):
    main, _ = servers
    before = health(main)
    stream = client.chat.completions.create(model=NAME, messages=ask(LONG), max_tokens=300, stream=True)
    next(iter(stream))  # the role chunk: the request is running
    stream.close()
    for _ in range(200):
        info = health(main)
        if info["generate_calls"] > before["generate_calls"] and info["queued"] == 0 and \
                info["tokens_generated"] > before["tokens_generated"]:
            break
        time.sleep(0.05)
    assert info["tokens_generated"] - before["tokens_generated"] < 300  # stopped early, not run to the end
    assert client.chat.completions.create(model=NAME, messages=ask("hi"), max_tokens=1).choices


# ---------------------------------------------------------------------------------- bad requests


def _long_text() -> str:
    return " ".join(["circle"] * 700)


BAD = {
    # name: (request fields, status, code, param)
    "empty messages": ({"messages": []}, 400, "invalid_value", "messages"),
    "unknown field": ({"messages": ask("hi"), "frobnicate": 1}, 400, "unknown_field", "frobnicate"),
    "unknown nested field": ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "x": 1}]}]},
                             400, "unknown_field", "messages[0].content[0].x"),
    "bad role": ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "invalid_value", "messages[0].role"),
    "tool role": ({"messages": [{"role": "tool", "content": "hi", "tool_call_id": "1"}]}, 400, "invalid_value",
                  "messages[0]"),
    "bad part type": ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
                      400, "invalid_value", "messages[0].content[0]"),
    "non-numeric temperature": ({"messages": ask("hi"), "temperature": "hot"}, 400, "invalid_value", "temperature"),
    "numeric string": ({"messages": ask("hi"), "max_tokens": "5"}, 400, "invalid_value", "max_tokens"),
    "temperature out of range": ({"messages": ask("hi"), "temperature": 7}, 400, "invalid_value", "temperature"),
    "zero max_tokens": ({"messages": ask("hi"), "max_tokens": 0}, 400, "invalid_value", "max_tokens"),
    "max_tokens beyond context": ({"messages": ask("hi"), "max_tokens": 100_000}, 400, "context_length_exceeded",
                                  "max_tokens"),
    "two length limits": ({"messages": ask("hi"), "max_tokens": 3, "max_completion_tokens": 4}, 400,
                          "invalid_value", None),
    "n=2": ({"messages": ask("hi"), "n": 2}, 400, "invalid_value", "n"),
    "presence penalty": ({"messages": ask("hi"), "presence_penalty": 0.5}, 400, "invalid_value", None),
    "tools": ({"messages": ask("hi"), "tools": [{"type": "function", "function": {"name": "f"}}]}, 400,
              "invalid_value", None),
    "five stop strings": ({"messages": ask("hi"), "stop": ["a", "b", "c", "d", "e"]}, 400, "invalid_value", "stop"),
    "bad base64": ({"messages": ask("hi", "data:image/png;base64,@@not base64@@")}, 400, "invalid_base64",
                   "messages[0].content[0].image_url.url"),
    "not base64 encoded": ({"messages": ask("hi", "data:image/png,rawbytes")}, 400, "invalid_image_url",
                           "messages[0].content[0].image_url.url"),
    "not an image": ({"messages": ask("hi", data_url(b"hello, I am text"))}, 400, "invalid_image",
                     "messages[0].content[0].image_url.url"),
    "corrupt image": ({"messages": ask("hi", data_url(png("red", (64, 64), noise=True)[:300]))}, 400, "invalid_image",
                      "messages[0].content[0].image_url.url"),
    "non-image media type": ({"messages": ask("hi", "data:text/plain;base64,aGVsbG8=")}, 400, "invalid_image_url",
                             "messages[0].content[0].image_url.url"),
    "too many pixels": ({"messages": ask("hi", data_url(png("red", (200, 200))))}, 400, "image_too_large",
                        "messages[0].content[0].image_url.url"),
    "too many bytes": ({"messages": ask("hi", data_url(png(size=(110, 110), noise=True) * 8))}, 400,
                       "image_too_large", "messages[0].content[0].image_url.url"),
    "too many images": ({"messages": ask("hi", data_url(png()), data_url(png("blue")))}, 400, "too_many_images",
                        "messages"),
    "remote image": ({"messages": ask("hi", "http://127.0.0.1:9/cat.png")}, 400, "remote_images_disabled",
                     "messages[0].content[0].image_url.url"),
    "file url": ({"messages": ask("hi", "file:///etc/passwd")}, 400, "invalid_image_url",
                 "messages[0].content[0].image_url.url"),
    "image marker in text": ({"messages": ask("what is <image> here?")}, 400, "reserved_token",
                             "messages[0].content[0].text"),
    "ends with assistant": ({"messages": [*ask("hi"), {"role": "assistant", "content": "hello"}]}, 400,
                            "invalid_role", "messages[1].role"),
    "image from assistant": ({"messages": [{"role": "assistant", "content": [
        {"type": "image_url", "image_url": {"url": data_url(png())}}]}, *ask("hi")]}, 400,
        "invalid_image_position", "messages[0].content[0]"),
    "late system message": ({"messages": [*ask("hi"), {"role": "system", "content": "x"}, *ask("hi")]}, 400,
                            "invalid_role", "messages[1].role"),
    "empty user message": ({"messages": [{"role": "user", "content": []}]}, 400, "empty_message",
                           "messages[0].content"),
    "prompt too long": ({"messages": ask(_long_text())}, 400, "context_length_exceeded", "messages"),
    "text far beyond the context": ({"messages": ask("a" * 60_000)}, 400, "context_length_exceeded", "messages"),
    "unknown model": ({"messages": ask("hi"), "model": "gpt-4o"}, 404, "model_not_found", "model"),
    "request over the body limit": ({"messages": ask("hi", data_url(png(size=(600, 600), noise=True)))}, 413,
                                    "request_too_large", None),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_request_gets_its_4xx_and_the_server_keeps_serving(case, client):
    fields, status, code, param = BAD[case]
    fields = {"model": NAME, "max_tokens": 2, **fields}
    known = {k: fields.pop(k) for k in list(fields) if k in ("model", "messages")}
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(**known, extra_body=fields)
    assert err.value.status_code == status, err.value.body
    body = err.value.body
    assert set(body) == {"message", "type", "param", "code"} and body["message"]
    assert body["code"] == code, body
    if param is not None:
        assert body["param"] == param, body
    good = client.chat.completions.create(model=NAME, messages=ask("hi", data_url(png())), max_tokens=1)
    assert good.choices[0].finish_reason in ("stop", "length")


RAW = {
    # name: (body bytes, content type, path, status, code)
    "invalid json": (b'{"model": "tiny-aki", "messages": [', "application/json", "/v1/chat/completions", 400,
                     "invalid_json"),
    "json list": (b"[1, 2]", "application/json", "/v1/chat/completions", 400, "invalid_json"),
    "not json content type": (b'{"model": "tiny-aki"}', "text/plain", "/v1/chat/completions", 400, "invalid_json"),
    "body too large": (b'{"model": "' + b"x" * (2**20 + 10) + b'"}', "application/json", "/v1/chat/completions",
                       413, "request_too_large"),
    "unknown route": (b"{}", "application/json", "/v1/completions", 404, "not_found"),
}


def test_chunked_body_over_the_limit(servers, client):
    def chunks():
        for _ in range(40):
            yield b"x" * 50_000

    request = urllib.request.Request(servers[0].url + "/v1/chat/completions", data=chunks(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}",
                                              "Transfer-Encoding": "chunked"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 413 and json.loads(err.value.read())["error"]["code"] == "request_too_large"
    assert client.chat.completions.create(model=NAME, messages=ask("hi"), max_tokens=1).choices


@pytest.mark.parametrize("case", list(RAW))
def test_malformed_http_gets_a_json_error(case, servers, client):
    payload, content_type, path, status, code = RAW[case]
    request = urllib.request.Request(servers[0].url + path, data=payload, method="POST",
                                     headers={"Content-Type": content_type, "Authorization": f"Bearer {KEY}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == status
    body = json.loads(err.value.read())
    assert body["error"]["code"] == code and body["error"]["message"], body
    assert client.chat.completions.create(model=NAME, messages=ask("hi"), max_tokens=1).choices


# ---------------------------------------------------------------------------------- evaluation toolkits

TOOLKIT_CLIENT = r'''
import json, sys
from PIL import Image
url, key, name, image_path, question = sys.argv[1:6]
out = {}
from vlmeval.api.lmdeploy import LMDeployAPI  # what `vlmeval/run.py --base-url` builds
from vlmeval.smp import encode_image_to_base64
vlm = LMDeployAPI(model=name, api_base=url + "/chat/completions", key=key, max_tokens=8, temperature=0, retry=1,
                  wait=0, verbose=False, timeout=60)
out["vlmeval"] = vlm.generate([dict(type="image", value=image_path), dict(type="text", value=question)])
out["vlmeval_failed"] = out["vlmeval"] == vlm.fail_msg
out["vlmeval_url"] = "data:image/jpeg;base64," + encode_image_to_base64(Image.open(image_path))
from lmms_eval.api.instance import Instance
from lmms_eval.models.chat.openai import OpenAICompatible  # `lmms_eval --model openai`
lm = OpenAICompatible(model_version=name, base_url=url, api_key=key, num_concurrent=2, max_retries=1, timeout=60)
lm.task_dict = {"demo": {"test": {0: {"image": Image.open(image_path), "question": question}}}}
def to_messages(doc):
    return [{"role": "user", "content": [{"type": "image", "url": doc["image"]}, {"type": "text", "text": doc["question"]}]}]
request = Instance(request_type="generate_until", idx=0, metadata={"task": "demo", "doc_id": 0, "repeats": 1},
                   arguments=("", to_messages, {"max_new_tokens": 8, "temperature": 0}, 0, "demo", "test"))
result = lm.generate_until([request])[0]
out["lmms_eval"] = result.text
out["lmms_eval_tokens"] = [result.token_counts.input_tokens, result.token_counts.output_tokens]
print("RESULT " + json.dumps(out))
'''


def test_vlmevalkit_and_lmms_eval_openai_clients(servers, client, tmp_path):
    """VLMEvalKit's API wrapper (`run.py --base-url`) and lmms-eval's `openai` backend, run in the
    toolkit environment against the server, get the answers the openai client gets."""
    import subprocess
    from pathlib import Path

    python = Path(__file__).resolve().parents[1] / ".venv-toolkits" / "bin" / "python"
    if not python.exists():
        pytest.fail("the toolkit environment is missing: run `bash scripts/setup-toolkits.sh` (setup.sh --test runs it)")
    image_path = tmp_path / "scene.png"
    image_path.write_bytes(png("orange", (120, 100)))
    question = "What is in the image?"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LMDEPLOY_"))}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", HF_HOME=str(tmp_path / "hf"))
    run = subprocess.run([str(python), "-c", TOOLKIT_CLIENT, servers[0].url + "/v1", KEY, NAME, str(image_path),
                          question], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert not out["vlmeval_failed"]
    direct = client.chat.completions.create(model=NAME, messages=ask(question, out["vlmeval_url"]), max_tokens=8)
    assert out["vlmeval"] == direct.choices[0].message.content.strip()  # VLMEvalKit strips answers
    direct = client.chat.completions.create(model=NAME, messages=ask(question, data_url(image_path.read_bytes())),
                                            max_tokens=8)
    assert out["lmms_eval"] == direct.choices[0].message.content
    assert out["lmms_eval_tokens"] == [direct.usage.prompt_tokens, direct.usage.completion_tokens]
