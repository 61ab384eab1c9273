"""The CLI's one error convention: one line, non-zero exit, traceback only with --debug."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from aki.cli.errors import DEBUG_ENV, add_debug_option, install
from aki.cli.main import app


def _toy_app() -> typer.Typer:
    toy = typer.Typer()

    @toy.command("bad-config")
    def bad_config() -> None:
        raise ValueError("unknown config key 'lr2', did you mean 'lr'? fix the YAML file")

    @toy.command("bug")
    def bug() -> None:
        {}["missing"]

    @toy.command("ok")
    def ok(n: int = typer.Option(..., "--n")) -> None:
        typer.echo(f"n={n}")

    sub = typer.Typer()

    @sub.command("deep")
    def deep() -> None:
        raise FileNotFoundError("no folder /x; pass the output folder of `aki train`")

    toy.add_typer(sub, name="group")
    add_debug_option(toy)
    install(toy)
    return toy


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    # setenv (not delenv) so that monkeypatch restores "unset" afterwards, also when the
    # app's --debug flag set the variable during the test
    monkeypatch.setenv(DEBUG_ENV, "")


def test_user_error_is_one_line_and_exit_1():
    result = CliRunner().invoke(_toy_app(), ["bad-config"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines == ["aki bad-config: error: unknown config key 'lr2', did you mean 'lr'? fix the YAML file"]
    assert "Traceback" not in result.output


def test_unexpected_error_is_marked_internal_with_the_debug_hint():
    result = CliRunner().invoke(_toy_app(), ["bug"])
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith("aki bug: error: internal error (KeyError: missing key 'missing')")
    assert "--debug" in line and "\n" not in line


def test_sub_commands_are_named_with_their_group():
    result = CliRunner().invoke(_toy_app(), ["group", "deep"])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("aki group deep: error: no folder /x;")


def test_debug_environment_variable_reraises(monkeypatch):
    monkeypatch.setenv(DEBUG_ENV, "1")
    result = CliRunner().invoke(_toy_app(), ["bad-config"])
    assert result.exit_code == 1
    assert isinstance(result.exception, ValueError)


def test_usage_errors_keep_click_status_2():
    result = CliRunner().invoke(_toy_app(), ["ok"])
    assert result.exit_code == 2
    assert "--n" in result.output


def test_real_command_failure_is_one_line(tmp_path):
    missing = tmp_path / "no-such-model"
    result = CliRunner().invoke(app, ["eval", str(missing), "--data", str(tmp_path)])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aki eval: error: "), result.stderr


def test_global_debug_flag_reraises():
    result = CliRunner().invoke(_toy_app(), ["--debug", "group", "deep"])
    assert isinstance(result.exception, FileNotFoundError)
