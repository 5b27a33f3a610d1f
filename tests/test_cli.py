"""The ``linft`` command line: every subcommand, JSON output, one-line errors with exit code 2, quiet broken pipes.

``fetch`` downloads, so it is only run with :func:`linft.sources.fetch_sources` replaced.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
    assert_one_line_error(code, out, err, start="linft model-info: error: ")
    assert "no-such-model" in err


def test_model_info_bad_targets_is_one_line_exit_2(capsys):
    code, out, err = run_main(capsys, "model-info", "minilm", "--targets", "no_such_module")
    assert_one_line_error(code, out, err, start="linft model-info: error: ")
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
    assert all(name in out for name in ("predict", "layers", "model-info", "fetch", "tasks", "models"))
    assert "exit code 2" in out and "_COMMANDS" not in out  # the user's part of the docstring, not the developers'


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
    assert_one_line_error(code, out, err, start="linft fetch: error: ")
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


# ---------------------------------------------------------------------------------------------- predict, layers

TINY = ("--n", "16", "--max-length", "16", "--seed", "0")


def _run_captured(*argv) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``linft argv...`` in this process, for module-scoped fixtures."""
    import contextlib

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def predicted(tmp_path_factory, one_thread):
    """``linft predict --json --plot`` at a tiny size: (exit code, parsed JSON, stderr, plot path)."""
    plot = tmp_path_factory.mktemp("plots") / "curve.png"
    code, out, err = _run_captured("predict", *TINY, "--n-test", "16", "--lam", "0.5", "--steps", "20", "--json",
                                   "--output", "full", "--plot", str(plot))
    assert code == 0, err
    return json.loads(out), err, plot


@pytest.fixture(scope="module")
def user_csv(tmp_path_factory):
    """A CSV of 60 real movie-review snippets under other column names and label values."""
    import pandas as pd

    from linft import data

    mr = data.load_task("mr")["train"]
    texts, labels = data.column(mr, "text")[:60], data.column(mr, "label")[:60]
    path = tmp_path_factory.mktemp("user") / "reviews.csv"
    pd.DataFrame({"review": texts, "verdict": ["good" if y else "bad" for y in labels]}).to_csv(path, index=False)
    return path


def test_predict_json_has_the_report(predicted):
    payload, err, _ = predicted
    keys = {"model", "task", "n", "n_test", "layers", "targets", "rank", "lam", "n_params", "kappa", "kappa_lambda",
            "lambda_min", "lambda_max", "effective_rank", "trace", "lr", "steps", "train_loss", "eval_loss",
            "kr_accuracy", "kr_accuracy_low", "kr_accuracy_high", "seconds"}
    assert keys <= set(payload)
    assert payload["n"] == payload["n_test"] == 16 and payload["lam"] == 0.5
    assert len(payload["steps"]) == len(payload["train_loss"]) == len(payload["eval_loss"]) == 21
    assert payload["kappa_lambda"] <= payload["kappa"]  # λ > 0 shrinks the condition number
    assert set(payload["seconds"]) >= {"load", "kernel", "eigen", "total"}
    assert "eNTK" in err and "Traceback" not in err  # the progress bar went to stderr


def test_predict_accuracy_is_kernel_regression_computed_here(predicted):
    """The CLI's KR accuracy is that of linft.predict.KernelRegression on eNTKs computed here from scratch, held out
    on the test split (linft.runspec.HELDOUT_SPLIT, the study's)."""
    from linft import data, models, ntk, predict
    from linft.runspec import HELDOUT_SPLIT

    payload, _, _ = predicted
    splits = data.load_task("mr", seed=0)
    loaded = models.load("minilm", num_labels=2, seed=0)
    model = models.add_lora(loaded.model, "qv", rank=8, seed=0, train_head=False)

    def batch(split):
        ds = data.subsample(splits[split], 16, seed=0)
        return data.as_batch(data.tokenize(ds, loaded.tokenizer, 16))

    assert HELDOUT_SPLIT == "test"
    train, held = batch("train"), batch(HELDOUT_SPLIT)
    K = ntk.empirical_ntk(model, train, params="lora")
    Kx = ntk.empirical_ntk(model, held, train, params="lora")
    with torch.no_grad():
        f0 = model(input_ids=train["input_ids"], attention_mask=train["attention_mask"]).logits.double()
        f0x = model(input_ids=held["input_ids"], attention_mask=held["attention_mask"]).logits.double()
    kr = predict.KernelRegression.fit(K, train["labels"], f0, 0.5)
    assert payload["kr_accuracy"] == kr.accuracy(Kx, f0x, held["labels"])
    assert payload["kappa_lambda"] == pytest.approx(predict.kappa_lambda(kr.spectrum, lam=0.5), rel=1e-5)


def test_predict_plot_is_a_png(predicted):
    _, _, plot = predicted
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000


def test_predict_on_a_user_csv_as_csv(capsys, user_csv, one_thread):
    code, out, err = run_main(capsys, "predict", "--task", str(user_csv), "--text-col", "review", "--label-col",
                              "verdict", *TINY, "--n-test", "8", "--steps", "5", "--csv", "--quiet")
    assert code == 0, err
    assert err == ""  # --quiet: no progress bars
    rows = list(csv.DictReader(io.StringIO(out)))
    quantities = {row["quantity"] for row in rows}
    assert {"kappa", "kappa_lambda", "kr_accuracy", "train_loss", "eval_loss", "seconds_total"} <= quantities
    assert len([r for r in rows if r["quantity"] == "train_loss"]) == 6
    assert {row["task"] for row in rows} == {str(user_csv)}
    n_test = {row["n_test"] for row in rows}
    assert n_test == {"6"}  # the test split of 60 rows holds 6: n-test is capped at it
    assert 0.0 <= float(next(r["value"] for r in rows if r["quantity"] == "kr_accuracy")) <= 1.0


def test_predict_text_report(capsys, one_thread):
    code, out, err = run_main(capsys, "predict", *TINY, "--n-test", "8", "--steps", "10", "--layers", "1,4",
                              "--quiet")
    assert code == 0, err
    assert "on layers 1,4" in out and "κ_λ" in out and "KR held-out accuracy" in out and "step 10" in out


@pytest.fixture(scope="module")
def advised(tmp_path_factory, one_thread):
    plot = tmp_path_factory.mktemp("plots") / "layers.png"
    code, out, err = _run_captured("layers", *TINY, "--budget", "2", "--n-random", "2", "--json", "--plot", str(plot))
    assert code == 0, err
    return json.loads(out), plot


def test_layers_recommendation_is_exact_and_inside_its_bounds(advised):
    """The recommended layers' κ_λ equals the κ_λ of a model adapted on those layers only, and lies in its bounds."""
    from linft import data, models, ntk, predict

    payload, plot = advised
    best = payload["recommended"]
    assert len(best["layers"]) == 2 and payload["budget"] == 2
    assert best["kappa_lambda_low"] <= best["kappa_lambda"] <= best["kappa_lambda_high"]
    assert best["lambda_min_low"] <= best["lambda_min"] <= best["lambda_min_high"]
    assert payload["value"] == best["kappa_lambda"]
    loaded = models.load("minilm", num_labels=2, seed=0)
    model = models.add_lora(loaded.model, "qv", rank=8, layers=best["layers"], seed=0, train_head=False)
    ds = data.subsample(data.load_task("mr", seed=0)["train"], 16, seed=0)
    K = ntk.empirical_ntk(model, data.as_batch(data.tokenize(ds, loaded.tokenizer, 16)), params="lora")
    assert best["kappa_lambda"] == pytest.approx(predict.kappa_lambda(K, lam=0.0), rel=1e-5)
    assert {"first", "last", "random0", "random1", "trace", "gradient", "weight_kappa", "all"} <= set(
        payload["baselines"])
    for name, choice in payload["baselines"].items():
        assert best["kappa_lambda"] <= choice["kappa_lambda"] * (1 + 1e-9) or len(choice["layers"]) != 2, name
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_layers_on_a_user_csv_as_csv(capsys, user_csv, one_thread):
    code, out, err = run_main(capsys, "layers", "--task", str(user_csv), "--text-col", "review", "--label-col",
                              "verdict", *TINY, "--budget", "3", "--objective", "lambda_min", "--n-random", "1",
                              "--csv", "--quiet")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[0]["choice"] == "recommended" and len(rows[0]["layers"].split()) == 3
    best = float(rows[0]["lambda_min"])
    assert all(best >= float(r["lambda_min"]) * (1 - 1e-9) for r in rows if len(r["layers"].split()) == 3)


def _bad_files(folder: Path) -> dict[str, Path]:
    one = folder / "one_class.csv"
    one.write_text("text,label\n" + "".join(f"review {i} says fine,pos\n" for i in range(30)))
    empty = folder / "empty_text.csv"
    empty.write_text("text,label\n" + "".join(f"review {i},{i % 2}\n" for i in range(30)) + "   ,1\n")
    return {"one": one, "empty": empty}


@pytest.mark.parametrize("argv, says", [
    (["predict", "--model", "no-such-model"], "no-such-model"),
    (["predict", "--task", "no-such-task"], "unknown task 'no-such-task'"),
    (["predict", "--task", "{user}", "--text-col", "body"], "no column 'body' (columns: 'review', 'verdict')"),
    (["predict", "--task", "{one}"], "only one class ('pos')"),
    (["predict", "--task", "{empty}"], "1 of 31 rows have empty text"),
    (["predict", "--task", "missing.csv"], "does not exist"),
    (["predict", "--layers", "0,x"], "not a comma-separated list"),
    (["predict", "--layers", "9"], "layer 9 does not exist"),
    (["predict", "--plot", "/no/such/folder/x.png"], "does not exist"),
    (["predict", "--plot", "curve.jpg"], "does not end in .png"),
    (["predict", "--json", "--csv"], "not allowed with argument"),
    (["predict", "--head", "thawed"], "invalid choice"),
    (["layers", "--budget", "7"], "budget 7 is more than the 6 layers"),
    (["layers", "--budget", "0"], "0 is not a positive integer"),
    (["layers", "--objective", "kappa"], "invalid choice"),
])
def test_bad_arguments_are_one_line_exit_2(capsys, tmp_path, user_csv, one_thread, argv, says):
    files = {**_bad_files(tmp_path), "user": user_csv}
    argv = [a.format(**files) for a in argv]
    code, out, err = run_main(capsys, *argv, *TINY, "--quiet")
    assert_one_line_error(code, out, err, start=f"linft {argv[0]}: error: ")
    assert says in err


def test_predict_piped_into_head_ends_quietly(tmp_path):
    exe = _linft_executable()
    if exe is None:
        pytest.skip("the linft console script is not installed")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "LINFT_THREADS": "1"}
    done = subprocess.run(f"set -o pipefail; '{exe}' predict --n 8 --n-test 8 --max-length 8 --steps 3 --quiet "
                          "| head -1", shell=True, executable="/bin/bash", capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
    assert done.stdout.startswith("linft predict: minilm")


def test_json_output_turns_non_finite_numbers_into_null():
    from linft.cli import _json

    text = _json({"kappa": float("inf"), "curve": [1.0, float("nan")], "ok": 2.5})
    assert json.loads(text) == {"kappa": None, "curve": [1.0, None], "ok": 2.5}
    assert "Infinity" not in text and "NaN" not in text
