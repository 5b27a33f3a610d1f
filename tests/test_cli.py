"""The ``linft`` command line: every subcommand, JSON output, one-line errors with exit code 2, quiet broken pipes.

``fetch`` downloads, so it is only run with :func:`linft.sources.fetch_sources` replaced.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from linft import LinftError
from linft.cli import main


def run_main(capsys, *argv):
    """``(exit code, stdout, stderr)`` of ``linft argv...`` run in this process."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out, err, start="linft"):
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(start) and ": error: " in lines[0], err
    assert "Traceback" not in err


def test_models(capsys):
    code, out, err = run_main(capsys, "models")
    assert code == 0 and err == ""
    payload = json.loads(out)
    assert payload["keys"] == ["minilm", "smollm2", "mpnet"]
    assert "Hugging Face" in payload["other"]


def test_tasks(capsys):
    from linft.data import TASKS

    code, out, err = run_main(capsys, "tasks")
    assert code == 0
    payload = json.loads(out)
    assert list(payload) == list(TASKS)
    for key, entry in payload.items():
        assert set(entry) == {"available", "title"}
        assert isinstance(entry["available"], bool)
        assert entry["title"] == TASKS[key].title


def test_model_info_minilm(capsys):
    code, out, err = run_main(capsys, "model-info", "minilm", "--rank", "4", "--num-labels", "3")
    assert code == 0, err
    info = json.loads(out)
    assert info["model"] == "minilm"
    assert info["model_type"] == "bert"
    layers, hidden = info["layers"], info["hidden"]
    assert (layers, hidden) == (6, 384)
    assert info["total"] == info["trainable"] > 0
    lora = info["lora"]
    # rank r on query and value (hidden -> hidden) in every layer: r * (hidden + hidden) parameters each
    assert lora["lora"] == layers * 2 * 4 * (hidden + hidden)
    assert lora["head"] > 0
    assert lora["trainable"] == lora["lora"] + lora["head"]
    assert lora["total"] >= info["total"] + lora["lora"]  # PEFT may also keep a copy of the head


@pytest.mark.parametrize("name", ["./no-such-model-folder", "no-such-model"])
def test_model_info_bad_model_is_one_line_exit_2(capsys, name):
    code, out, err = run_main(capsys, "model-info", name)
    assert_one_line_error(code, out, err, start="linft: error: ")
    assert "no-such-model" in err


def test_model_info_bad_targets_is_one_line_exit_2(capsys):
    code, out, err = run_main(capsys, "model-info", "minilm", "--targets", "no_such_module")
    assert_one_line_error(code, out, err, start="linft: error: ")
    assert "no_such_module" in err


@pytest.mark.parametrize(
    "argv, where",
    [
        ([], "linft: error: "),
        (["no-such-command"], "linft: error: "),
        (["model-info", "--rank", "x"], "linft model-info: error: "),
        (["tasks", "--unknown-flag"], "linft: error: "),
    ],
)
def test_usage_errors_are_one_line_exit_2(capsys, argv, where):
    code, out, err = run_main(capsys, *argv)
    assert_one_line_error(code, out, err, start=where)


def test_help_exits_0(capsys):
    code, out, err = run_main(capsys, "--help")
    assert code == 0
    assert "model-info" in out and "fetch" in out


def test_fetch_reports_sources(capsys, monkeypatch):
    from linft import sources

    monkeypatch.setattr(sources, "fetch_sources", lambda: {"vader": {"ok": True, "detail": "cached"}})
    code, out, err = run_main(capsys, "fetch")
    assert code == 0
    assert json.loads(out) == {"vader": {"ok": True, "detail": "cached"}}


def test_fetch_error_is_one_line_exit_2(capsys, monkeypatch):
    from linft import sources

    def fail():
        raise LinftError("vader 3.3.2 unavailable (offline); by hand: download it")

    monkeypatch.setattr(sources, "fetch_sources", fail)
    code, out, err = run_main(capsys, "fetch")
    assert_one_line_error(code, out, err, start="linft: error: ")
    assert "vader 3.3.2 unavailable" in err


class _ClosedPipe(io.TextIOBase):
    """A stdout whose reader has gone: every write raises BrokenPipeError; it has no file descriptor."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self):
        raise io.UnsupportedOperation("no fileno")


def test_broken_pipe_in_process_exits_0(monkeypatch):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["models"]) == 0


def _linft_executable() -> str | None:
    candidate = Path(sys.executable).parent / "linft"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("linft")


@pytest.mark.parametrize("reader", ["head -1", "true"])
def test_broken_pipe_ends_quietly(reader):
    """``linft tasks | head -1`` (and a reader that reads nothing) ends with exit 0 and no traceback.

    Unbuffered output makes the second write hit the closed pipe, as on a terminal session that sets
    PYTHONUNBUFFERED; ``true`` exits before linft writes anything, so its pipe is always broken.
    """
    exe = _linft_executable()
    if exe is None:
        pytest.skip("the linft console script is not installed")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(f"set -o pipefail; '{exe}' tasks | {reader}", shell=True, executable="/bin/bash",
                          capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    assert "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    if reader == "head -1":
        assert done.stdout == "{\n"
