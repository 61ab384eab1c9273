"""``aki prompt`` prints the rendered prompt and its segment layout."""

from __future__ import annotations

from typer.testing import CliRunner

from aki.cli.main import app


def test_prompt_command_shows_layout():
    result = CliRunner().invoke(app, ["prompt", "--family", "phi3", "--answer", "A cube."])
    assert result.exit_code == 0, result.output
    assert "<|assistant|>" in result.output
    layout = result.output.strip().splitlines()[-1]
    assert layout.startswith("T") and "IIII" in layout and "Q" in layout and layout.endswith("A")
    assert "loss" in result.output
