"""`aki serve` and `aki demo` on the command line: start-up failures are one line; the real command serves."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch
from typer.testing import CliRunner

from aki.cli.main import app
from aki.testing import tiny_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "tiny"
    model, processor = tiny_model("qwen2", rule="mma")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_line_error(args: list[str], command: str) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"aki {command}: error: "), result.output
    return lines[0]


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_start_up_failures_are_one_line(command, saved, tmp_path):
    port = str(_free_port())
    assert "does not exist" in _one_line_error([command, str(tmp_path / "missing"), "--port", port], command)
    (tmp_path / "empty").mkdir()
    assert "no config.json" in _one_line_error([command, str(tmp_path / "empty"), "--port", port], command)
    assert "--dtype 'int8'" in _one_line_error([command, str(saved), "--dtype", "int8", "--port", port], command)
    assert "not a torch device" in _one_line_error([command, str(saved), "--device", "tpu:x", "--port", port], command)
    if not torch.cuda.is_available():
        assert "no CUDA device" in _one_line_error([command, str(saved), "--device", "cuda", "--port", port], command)


def test_serve_refuses_a_busy_port(saved):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _one_line_error(["serve", str(saved), "--port", str(port)], "serve")
    assert f"cannot listen on 127.0.0.1:{port}" in line


def test_the_real_command_serves_until_stopped(saved):
    port = _free_port()
    env = {**os.environ, "AKI_API_KEY": "k"}
    proc = subprocess.Popen([sys.executable, "-m", "aki.cli.main", "serve", str(saved), "--port", str(port),
                             "--served-model-name", "tiny", "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    assert json.loads(response.read())["model"] == "tiny"
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.1)
        body = json.dumps({"model": "tiny", "max_tokens": 2,
                           "messages": [{"role": "user", "content": "Hello"}]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                         headers={"Content-Type": "application/json", "Authorization": "Bearer k"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert answer["usage"]["completion_tokens"] >= 1 and answer["model"] == "tiny"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode in (0, -15)
