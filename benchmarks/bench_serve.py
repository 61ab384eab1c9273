"""Load test of ``aki serve``: concurrent clients (dynamic batching) against the same requests one by one.

Starts the real command (``python -m aki.cli.main serve``) on 127.0.0.1 with a tiny random model
saved to a temporary folder (or ``--model-dir``), then sends the same set of chat requests (one
image each, greedy, ``--max-tokens``):

- ``one by one``: a single client, each request after the previous answer;
- ``concurrent``: ``--clients`` clients at once, each sending its share back to back (the server
  batches what arrives within its window).

The two alternate for ``--rounds`` rounds (so that load from elsewhere on the machine hits both
alike), and the totals over all rounds are compared.

Printed: requests/s, answer tokens/s, p50 / p99 latency of each, the ratios concurrent / one by
one, failed requests (must be 0), whether every concurrent answer equals its one-by-one answer
(greedy: it must), the server's batches (``/health``), and its resident memory (RSS, from
/proc) after warm-up and after each round: steady memory means no growth across rounds.

All traffic goes to 127.0.0.1. Timings on a shared machine are noisy: compare ratios from one run.

Usage::

    python benchmarks/bench_serve.py                              # 8 clients x 4 requests, 3 rounds
    python benchmarks/bench_serve.py --clients 16 --per-client 4 --max-tokens 64
    python benchmarks/bench_serve.py --model-dir runs/quickstart/seed0/mma/final
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

QUESTIONS = [
    "What is in the image?", "How many objects are there?", "What color is the largest shape?",
    "Is there a circle left of the square?", "Describe the scene in detail.", "Which object is closest?",
    "Count the triangles.", "Where is the red shape?",
]
COLORS = ["red", "blue", "green", "white", "orange", "purple", "yellow", "gray"]


def png(color: str, size: int = 64) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def post(url: str, body: dict, timeout: float = 600) -> tuple[dict | None, float, str | None]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            out = json.loads(response.read())
        return out, time.perf_counter() - start, None
    except (urllib.error.URLError, OSError, ValueError) as err:
        detail = err.read().decode(errors="replace") if isinstance(err, urllib.error.HTTPError) else str(err)
        return None, time.perf_counter() - start, detail


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def run_phase(url: str, requests: list[dict], clients: int) -> dict:
    """Send ``requests`` with ``clients`` concurrent senders; latencies, answers, failures, wall time."""
    answers: list[str | None] = [None] * len(requests)
    latencies: list[float] = [0.0] * len(requests)
    tokens = [0] * len(requests)
    failures: list[str] = []
    lock = threading.Lock()
    shares = [list(range(c, len(requests), clients)) for c in range(clients)]
    barrier = threading.Barrier(clients)

    def sender(indices: list[int]) -> None:
        barrier.wait()
        for i in indices:
            out, seconds, error = post(url, requests[i])
            latencies[i] = seconds
            if out is None:
                with lock:
                    failures.append(error or "no answer")
                continue
            answers[i] = out["choices"][0]["message"]["content"]
            tokens[i] = out["usage"]["completion_tokens"]

    threads = [threading.Thread(target=sender, args=(s,)) for s in shares]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"wall": wall, "latencies": latencies, "answers": answers, "tokens": sum(tokens), "failures": failures}


def health(base: str) -> dict:
    with urllib.request.urlopen(base + "/health", timeout=30) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=4, help="requests per client per round")
    parser.add_argument("--rounds", type=int, default=3, help="concurrent rounds (memory is read after each)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--backbone", default="llama", choices=["llama", "phi3", "qwen2", "qwen3"])
    parser.add_argument("--rule", default="mma")
    parser.add_argument("--model-dir", type=Path, default=None, help="serve this saved model instead of a tiny one")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-window-ms", type=float, default=10.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--server-threads", type=int, default=1,
                        help="torch CPU threads of the server (OMP_NUM_THREADS); on a machine shared with other "
                             "jobs, 2+ threads make every small op wait on the others (measured ~35x slower steps)")
    args = parser.parse_args()

    workdir = tempfile.TemporaryDirectory(prefix="aki-bench-serve-")
    model_dir = args.model_dir
    if model_dir is None:
        from aki.testing import tiny_model

        model, processor = tiny_model(args.backbone, rule=args.rule, seed=0)
        model_dir = Path(workdir.name) / "tiny"
        model.save_pretrained(model_dir)
        processor.save_pretrained(model_dir)
        del model
    name = Path(model_dir).resolve().name
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "aki.cli.main", "serve", str(model_dir), "--port", str(port),
               "--device", args.device, "--max-batch-size", str(args.max_batch_size),
               "--batch-window-ms", str(args.batch_window_ms), "--log-level", "warning",
               "--max-queue", str(10 * args.clients * args.per_client)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(args.server_threads)}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            try:
                health(base)
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"aki serve exited: {server.stderr.read()}") from None
                time.sleep(0.1)
        url = base + "/v1/chat/completions"
        n = args.clients * args.per_client
        requests = [{
            "model": name, "max_tokens": args.max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": png(COLORS[i % len(COLORS)])}},
                {"type": "text", "text": QUESTIONS[(i * 3) % len(QUESTIONS)]}]}],
        } for i in range(n)]
        run_phase(url, requests[:2], 1)  # warm-up
        rss = {"after warm-up": rss_mib(server.pid)}
        singles, rounds, calls = [], [], 0
        for r in range(args.rounds):  # interleaved, so that load from elsewhere hits both alike
            singles.append(run_phase(url, requests, 1))
            before = health(base)["generate_calls"]
            rounds.append(run_phase(url, requests, args.clients))
            calls += health(base)["generate_calls"] - before
            rss[f"after round {r + 1}"] = rss_mib(server.pid)
        info = health(base)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        workdir.cleanup()

    def summary(phases: list[dict]) -> tuple[float, float, float, float]:
        latencies = [x for p in phases for x in p["latencies"]]
        wall = sum(p["wall"] for p in phases)
        tokens = sum(p["tokens"] for p in phases)
        return len(latencies) / wall, tokens / wall, statistics.median(latencies), percentile(latencies, 0.99)

    s, c = summary(singles), summary(rounds)
    failures = [f for p in singles + rounds for f in p["failures"]]
    same = all(p["answers"] == singles[0]["answers"] for p in singles + rounds)
    batches = calls
    print(f"aki serve load test: {name} ({args.rule}), {n} requests (1 image, max_tokens {args.max_tokens}, greedy) "
          f"per pass, {args.rounds} rounds of one-by-one then {args.clients} clients, batch cap {args.max_batch_size}, window "
          f"{args.batch_window_ms:g} ms, device {args.device}, {args.server_threads} CPU thread(s); timings from a "
          "shared machine")
    print(f"{'':14}{'req/s':>9}{'tok/s':>10}{'p50 s':>9}{'p99 s':>9}")
    print(f"{'one by one':14}{s[0]:9.2f}{s[1]:10.1f}{s[2]:9.3f}{s[3]:9.3f}")
    print(f"{'concurrent':14}{c[0]:9.2f}{c[1]:10.1f}{c[2]:9.3f}{c[3]:9.3f}")
    print(f"ratios concurrent / one by one: requests/s {c[0] / s[0]:.2f}x, tokens/s {c[1] / s[1]:.2f}x, "
          f"p50 latency {c[2] / s[2]:.2f}x, p99 latency {c[3] / s[3]:.2f}x")
    print(f"failed requests: {len(failures)}" + (f" (first: {failures[0][:200]})" if failures else ""))
    print(f"every answer equal across rounds and between concurrent and one by one (greedy): {same}")
    print(f"the concurrent passes ran {args.rounds * n} requests in {batches} generate calls "
          f"(mean batch {args.rounds * n / max(batches, 1):.2f}, largest {info['largest_batch']})")
    print("server RSS (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))
    first, last = rss["after round 1"], rss[f"after round {args.rounds}"]
    print(f"RSS growth from round 1 to round {args.rounds}: {last - first:+.1f} MiB ({last / first:.3f}x)")
    if failures or not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
