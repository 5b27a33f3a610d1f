"""linft.study: sweep config checks, the plan, one real serial sweep checked against an independent eNTK, and the
resumable CSV store (interrupted, truncated, failed and retried runs) with a counting stand-in for run_one."""

import argparse
import copy
import dataclasses
import importlib.metadata
import math
import sys

import pandas as pd
import pytest
import torch

from linft import LinftError, data, models, ntk, predict
from linft.study import (
    COLUMNS,
    KEY_COLUMNS,
    RESULT_COLUMNS,
    VOLATILE_COLUMNS,
    add_cli,
    load_config,
    plan_runs,
    run_cli,
    run_one,
    run_sweep,
)
from linft.study import _run as study_run
from linft.study._csv import RunStore

#: the tiny sweep of these tests: 1 task, 2 LoRA configurations, 1 seed, both settings, λ ∈ {0, 0.5} (8 runs)
TINY = {
    "model": "minilm",
    "sizes": {"n_train": 8, "n_test": 16, "max_length": 16, "steps": 2, "lr": "1e-3", "batch_size": 4},
    "tasks": ["mr"],
    "configs": [{"name": "qv-r4", "layers": "all", "targets": "qv", "rank": 4},
                {"name": "q-r2-top", "layers": [-1], "targets": ["q"], "rank": 2}],
    "seeds": [0],
    "settings": ["mse_gd", "ce_adamw"],
    "lambdas": [0, 0.5],
}


def tiny(**changes) -> dict:
    raw = copy.deepcopy(TINY)
    raw.update(changes)
    return raw


# ---------------------------------------------------------------------------------------------- config checks


def _drop(key):
    raw = tiny()
    del raw[key]
    return raw


def _sizes(**changes):
    return tiny(sizes={**TINY["sizes"], **changes})


def _config(**changes):
    return tiny(configs=[{**TINY["configs"][0], **changes}])


@pytest.mark.parametrize("raw, words", [
    (_drop("tasks"), "lacks 'tasks'"),
    (tiny(epochs=3), "unknown key 'epochs'"),
    (tiny(tasks=["imdb"]), "tasks[0] is unknown ('imdb')"),
    (tiny(tasks=[]), "tasks is empty"),
    (tiny(tasks="mr"), "tasks must be a list"),
    (tiny(configs=[]), "configs is empty"),
    (_config(rank="x"), "configs[0].rank must be an integer >= 1"),
    (_config(rank=0), "configs[0].rank must be an integer >= 1"),
    (_config(layers=["a"]), "configs[0].layers[0] must be a block index"),
    (_config(dropout=0.1), "configs[0] has unknown key 'dropout'"),
    (tiny(configs=[TINY["configs"][0], TINY["configs"][0]]), "lists 'qv-r4' twice"),
    (tiny(settings=["mse_adam"]), "settings[0] is unknown ('mse_adam')"),
    (tiny(seeds=[0, 0]), "seeds lists 0 twice"),
    (tiny(seeds=[True]), "seeds[0] must be an integer"),
    (tiny(lambdas=[-1]), "lambdas[0] must be a finite number >= 0"),
    (tiny(lambdas=["big"]), "lambdas[0] must be a number"),
    (_sizes(lr=0), "sizes.lr must be a finite number > 0"),
    (_sizes(n_train=2.5), "sizes.n_train must be an integer >= 1"),
    (tiny(sizes={"n_train": 8}), "sizes lacks 'n_test'"),
    (tiny(model=""), "model must be a non-empty string"),
    (tiny(threads=0), "threads must be an integer >= 1"),
])
def test_config_errors_name_the_field(raw, words):
    with pytest.raises(LinftError) as err:
        load_config(raw, check_model=False)
    message = str(err.value)
    assert words in message and message.startswith("sweep config:") and "\n" not in message


@pytest.mark.parametrize("raw, words", [
    (_config(targets="query_typo"), "configs[0] ('qv-r4') does not fit 'minilm'"),
    (_config(layers=[9]), "layer 9 does not exist"),
    (tiny(model="./no/such/model-folder"), "does not exist"),
])
def test_config_checked_against_the_model(raw, words):
    with pytest.raises(LinftError) as err:
        load_config(raw)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(LinftError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: minilm\ntasks: [mr\n")
    with pytest.raises(LinftError, match="not valid YAML") as err:
        load_config(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(LinftError, match="must be a mapping"):
        bad.write_text("- just\n- a list\n")
        load_config(bad)


def test_plan_is_the_product_of_the_axes(tmp_path):
    raw = tiny(tasks=["mr", "subj"], seeds=[0, 1, 2], lambdas=[0, 0.5, 5])
    plan = plan_runs(raw)
    assert len(plan) == 2 * 2 * 3 * 2 * 3
    assert len({key.id for key in plan}) == len(plan)  # every run has its own key
    assert {key.lam for key in plan} == {0.0, 0.5, 5.0} and {key.adamw_lr for key in plan} == {1e-3}
    top = [key for key in plan if key.config == "q-r2-top"]
    assert {key.layers for key in top} == {(5,)}  # layer -1 of the 6-block MiniLM, normalized
    assert {key.as_row()["layers"] for key in plan} == {"all", "5"}
    path = tmp_path / "sweep.yaml"
    import yaml

    path.write_text(yaml.safe_dump(raw))
    assert [k.id for k in plan_runs(path)] == [k.id for k in plan]  # a file plans the same runs
    assert load_config(path).name == "sweep"


# ---------------------------------------------------------------------------------------------- a real sweep


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("study") / "tiny.csv"
    return run_sweep(tiny(), out, progress=False), out


def test_serial_sweep_writes_one_row_per_run(sweep):
    frame, out = sweep
    plan = plan_runs(tiny())
    assert tuple(frame.columns) == COLUMNS == KEY_COLUMNS + RESULT_COLUMNS
    assert len(frame) == len(plan) == 8 and frame.attrs["ran"] == 8
    assert (frame["status"] == "ok").all(), frame["error"].tolist()
    on_disk = pd.read_csv(out)
    assert tuple(on_disk.columns) == COLUMNS and len(on_disk) == 8
    assert [tuple(r) for r in frame[list(KEY_COLUMNS)].astype(str).values] == [k.id for k in plan]
    assert set(frame["kernel"]) == {"sgd", "signgd"}
    assert (frame.loc[frame.setting == "mse_gd", "kernel"] == "sgd").all()
    gd = frame[frame.setting == "mse_gd"]
    adam = frame[frame.setting == "ce_adamw"]
    assert gd["kr_acc_at_steps"].notna().all() and adam["kr_acc_at_steps"].isna().all()
    assert (frame["n_params"] == frame["config"].map({"qv-r4": 6 * 2 * 4 * (384 + 384), "q-r2-top": 2 * (384 + 384)})
            ).all()
    assert (frame["steps_done"] == 2).all() and (frame["n_test_used"] == 16).all()
    assert (frame["kernel_seconds"] > 0).all() and (frame["train_seconds"] > 0).all()
    assert (frame["torch_version"] == importlib.metadata.version("torch")).all()
    assert (frame["peft_version"] == importlib.metadata.version("peft")).all()
    # κ_λ at λ = 0 is κ; λ > 0 lowers it; the AdamW rows use the adamw lr, the GD rows the descent step
    assert (frame.loc[frame.lam == 0, "kappa_lambda"] == frame.loc[frame.lam == 0, "kappa"]).all()
    assert (frame.loc[frame.lam > 0, "kappa_lambda"] < frame.loc[frame.lam > 0, "kappa"]).all()
    assert (frame.loc[frame.setting == "ce_adamw", "lr"] == 1e-3).all()
    assert (gd["lr"] == 1 / (gd["lambda_max"] / 8 + gd["lam"])).all()


def _independent_batch(task, n, seed, split, tokenizer, max_length):
    ds = data.subsample(data.load_task(task, seed=seed)[split], n, seed=seed)
    return data.as_batch(data.tokenize(ds, tokenizer, max_length))


@pytest.mark.parametrize("setting, kernel", [("mse_gd", "sgd"), ("ce_adamw", "signgd")])
def test_kappa_matches_an_independent_entk(sweep, setting, kernel):
    frame, _ = sweep
    row = frame[(frame.config == "qv-r4") & (frame.setting == setting) & (frame.lam == 0.5)].iloc[0]
    model, tokenizer = models.load("minilm", num_labels=2, seed=0)
    model = models.add_lora(model, ("q", "v"), rank=4, seed=0, train_head=False)
    train = _independent_batch("mr", 8, 0, "train", tokenizer, 16)
    K = ntk.empirical_ntk(model, train, params="lora", kernel=kernel)
    assert row["n_params"] == K.n_params
    assert math.isclose(row["kappa_lambda"], predict.kappa_lambda(K, lam=0.5), rel_tol=1e-6)
    assert math.isclose(row["kappa"], predict.kappa_lambda(K, lam=0.0), rel_tol=1e-6)
    top = float(torch.linalg.eigvalsh(K.matrix()).max())
    assert math.isclose(row["lambda_max"], top, rel_tol=1e-6)
    assert math.isclose(row["trace"], float(torch.trace(K.matrix())), rel_tol=1e-9)


@pytest.mark.parametrize("setting, kernel", [("mse_gd", "sgd"), ("ce_adamw", "signgd")])
def test_kernel_columns_from_one_joined_kernel_equal_the_two_separate_kernels(setting, kernel, one_thread):
    key = next(k for k in plan_runs(tiny()) if k.config == "qv-r4" and k.setting == setting and k.lam == 0.5)
    model, train, test, _ = study_run._setup(key)
    columns, lr = study_run._kernel_columns(key, model, train, test)
    n, m = train["labels"].shape[0], test["labels"].shape[0]
    K = ntk.empirical_ntk(model, train, params="lora", kernel=kernel)  # what the study computed before joining
    K_test = ntk.empirical_ntk(model, test, train, params="lora", kernel=kernel)
    joint = columns["_kernel"]
    assert joint.values.shape == (n, n, 2, 2) and joint.outputs.shape == (n, 2) and joint.outputs2 is None
    assert torch.allclose(joint.values, K.values, rtol=1e-5, atol=1e-7 * float(K.values.abs().max()))
    assert set(joint.per_layer) == set(K.per_layer) and joint.meta["N"] == joint.meta["M"] == n
    assert torch.allclose(joint.outputs, K.outputs, atol=1e-5)
    spectrum = predict.KernelSpectrum.of(K.matrix(), n_examples=n)
    kr = predict.KernelRegression.fit(spectrum, train["labels"].cpu(), K.outputs, key.lam)
    assert columns["kr_acc"] == kr.accuracy(K_test, K_test.outputs, test["labels"].cpu())
    assert math.isclose(columns["kappa_lambda"], predict.kappa_lambda(spectrum, lam=key.lam), rel_tol=1e-6)
    assert math.isclose(columns["trace"], float(torch.trace(K.matrix())), rel_tol=1e-6)
    assert K_test.values.shape == (m, n, 2, 2)
    if setting == "mse_gd":
        assert math.isclose(lr, predict.descent_lr(spectrum, lam=key.lam), rel_tol=1e-6)
        want = kr.accuracy(K_test, K_test.outputs, test["labels"].cpu(), step=key.steps, lr=lr)
        assert columns["kr_acc_at_steps"] == want


def test_run_one_is_a_pure_function_of_its_key(sweep):
    frame, _ = sweep
    key = next(k for k in plan_runs(tiny()) if k.config == "q-r2-top" and k.setting == "mse_gd" and k.lam == 0.5)
    again = run_one(key)
    row = frame[(frame.config == key.config) & (frame.setting == key.setting) & (frame.lam == key.lam)].iloc[0]
    for column, value in again.items():
        if column in VOLATILE_COLUMNS:
            continue
        if isinstance(value, float):
            assert value == row[column] or (math.isnan(value) and math.isnan(row[column])), column
        else:
            assert str(value) == str(row[column]), column


def test_a_real_failing_run_is_recorded(tmp_path, one_thread):
    raw = tiny(configs=[TINY["configs"][1]], settings=["ce_adamw"], lambdas=[0],
               sizes={**TINY["sizes"], "n_train": 10_000_000})
    frame = run_sweep(raw, tmp_path / "fail.csv", progress=False)
    assert len(frame) == 1 and frame["status"].iloc[0] == "failed"
    assert "LinftError" in frame["error"].iloc[0] and "n_train = 10000000" in frame["error"].iloc[0]
    assert frame["kappa"].isna().all() and frame["hostname"].iloc[0] != ""


# ---------------------------------------------------------------------------------------------- the store


class CountingRun:
    """Stands in for ``run_one``: counts calls per key, returns numbers derived from the key, raises on request."""

    def __init__(self, fail=lambda key: False, interrupt_after=None):
        self.calls: list = []
        self.fail, self.interrupt_after = fail, interrupt_after

    def __call__(self, key, *, threads=1):
        if self.interrupt_after is not None and len(self.calls) == self.interrupt_after:
            raise KeyboardInterrupt
        self.calls.append(key.id)
        if self.fail(key):
            raise RuntimeError(f"boom in {key.label()}\nsecond line of the message")
        return {"kappa": 1.0 + key.seed + key.lam, "kappa_lambda": 2.0 + key.rank, "eval_acc": 0.5,
                "lr": key.adamw_lr, "n_params": 100 * key.rank, "threads": threads}


@pytest.fixture
def counting(monkeypatch):
    def install(**kwargs):
        fake = CountingRun(**kwargs)
        monkeypatch.setattr(study_run, "run_one", fake)
        return fake
    return install


STORE = tiny(tasks=["mr", "subj"], seeds=[0, 1])  # 32 runs


def _keys_on_disk(path):
    on_disk = pd.read_csv(path, dtype=str, keep_default_na=False)
    return [tuple(r) for r in on_disk[list(KEY_COLUMNS)].values]


def test_stop_after_k_rows_then_resume(tmp_path, counting):
    out, plan = tmp_path / "s.csv", plan_runs(STORE)
    first = counting()
    part = run_sweep(STORE, out, progress=False, max_runs=5)
    assert len(first.calls) == 5 and len(part) == 5 and part.attrs["planned"] == 32
    second = counting()
    full = run_sweep(STORE, out, progress=False)
    assert len(second.calls) == 27 and not set(second.calls) & set(first.calls)  # nothing done twice
    assert sorted(_keys_on_disk(out)) == sorted(k.id for k in plan)  # no duplicate, no lost row
    assert len(full) == 32 and (full["status"] == "ok").all()
    third = counting()
    assert len(run_sweep(STORE, out, progress=False)) == 32 and third.calls == []


def test_interrupted_sweep_keeps_its_rows(tmp_path, counting):
    out = tmp_path / "s.csv"
    counting(interrupt_after=7)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(STORE, out, progress=False)
    assert len(_keys_on_disk(out)) == 7
    rest = counting()
    run_sweep(STORE, out, progress=False)
    assert len(rest.calls) == 32 - 7 and len(set(_keys_on_disk(out))) == 32 == len(_keys_on_disk(out))


def test_truncated_last_line_is_dropped_and_redone(tmp_path, counting):
    out = tmp_path / "s.csv"
    counting()
    run_sweep(STORE, out, progress=False)
    lines = out.read_text().splitlines(keepends=True)
    k = 10
    out.write_text("".join(lines[: 1 + k]) + lines[1 + k][: len(lines[1 + k]) // 2])  # header, k rows, half a row
    kept = lines[1: 1 + k]
    again = counting()
    with pytest.warns(UserWarning, match="truncated last line"):
        frame = run_sweep(STORE, out, progress=False)
    assert len(again.calls) == 32 - k
    assert out.read_text().splitlines(keepends=True)[1: 1 + k] == kept  # finished rows untouched
    assert sorted(_keys_on_disk(out)) == sorted(k.id for k in plan_runs(STORE)) and len(frame) == 32


def test_failed_run_is_recorded_and_retried_only_when_asked(tmp_path, counting):
    out = tmp_path / "s.csv"

    def bad(key):
        return key.task == "subj" and key.setting == "ce_adamw" and key.lam == 0.5

    counting(fail=bad)
    frame = run_sweep(STORE, out, progress=False)
    failed = frame[frame.status == "failed"]
    assert len(frame) == 32 and len(failed) == 4 and frame.attrs["failed_now"] == 4
    assert failed["error"].str.startswith("RuntimeError: boom in subj/").all()
    assert not failed["error"].str.contains("second line").any()  # one line
    assert failed["kappa"].isna().all() and (frame.loc[frame.status == "ok", "kappa"] > 0).all()
    idle = counting()
    run_sweep(STORE, out, progress=False)
    assert idle.calls == []  # a failed row counts as done unless retry_failed
    some = counting()
    frame = run_sweep(STORE, out, progress=False, retry_failed=True, max_runs=1)
    assert len(some.calls) == 1 and (frame["status"] == "failed").sum() == 3  # the others stay recorded as failed
    retry = counting()
    frame = run_sweep(STORE, out, progress=False, retry_failed=True)
    assert sorted(retry.calls + some.calls) == sorted(k.id for k in plan_runs(STORE) if bad(k))
    assert (frame["status"] == "ok").all() and len(_keys_on_disk(out)) == 32


def test_store_refuses_foreign_or_damaged_files(tmp_path):
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(LinftError, match="other columns"):
        RunStore(foreign)
    damaged = tmp_path / "damaged.csv"
    damaged.write_text(",".join(COLUMNS) + "\n" + "too,few,fields\n" + ",".join([""] * len(COLUMNS)) + "\n")
    with pytest.raises(LinftError, match="line 2 has 3 fields"):
        RunStore(damaged)
    with pytest.raises(LinftError, match="is a folder"):
        RunStore(tmp_path)
    half_header = tmp_path / "half.csv"
    half_header.write_text("model,ta")
    with pytest.warns(UserWarning, match="truncated"):
        store = RunStore(half_header)
    assert half_header.read_text() == ",".join(COLUMNS) + "\n" and store.rows == {}


def test_run_sweep_argument_errors(tmp_path, monkeypatch):
    with pytest.raises(LinftError, match="unknown backend 'dask'"):
        run_sweep(STORE, tmp_path / "s.csv", backend="dask")
    with pytest.raises(LinftError, match="max_runs must be"):
        run_sweep(STORE, tmp_path / "s.csv", max_runs=-1)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(LinftError, match=r"pip install 'linft\[ray\]'"):
        run_sweep(STORE, tmp_path / "s.csv", backend="ray", progress=False)
    assert not (tmp_path / "s.csv").exists()  # refused before the store was touched


def test_cli_runs_the_sweep(tmp_path, counting):
    import yaml

    config = tmp_path / "mini.yaml"
    config.write_text(yaml.safe_dump(STORE))
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    counting()
    out = tmp_path / "mini.csv"
    args = parser.parse_args(["study", "--config", str(config), "--out", str(out), "--no-progress", "--max-runs", "3"])
    first = run_cli(args)
    assert first["seconds"] >= 0
    assert {k: v for k, v in first.items() if k != "seconds"} == {
        "out": str(out), "backend": "serial", "planned": 32, "ran": 3, "ok": 3, "failed": 0, "missing": 29}
    summary = run_cli(parser.parse_args(["study", "--config", str(config), "--out", str(out), "--no-progress"]))
    assert (summary["planned"], summary["ran"], summary["ok"], summary["missing"]) == (32, 29, 32, 0)
    with pytest.raises(LinftError, match="--backend ray"):
        run_cli(parser.parse_args(["study", "--config", str(config), "--address", "auto"]))


def test_every_numeric_result_column_is_typed():
    """Result columns are numbers unless they are text by nature: a new numeric column must be typed here too."""
    from linft.study._csv import FLOAT_COLUMNS, INT_COLUMNS

    text = {"status", "error", "kernel", "hostname", "linft_version", "torch_version", "transformers_version",
            "peft_version"}
    assert {c for c in RESULT_COLUMNS if c not in INT_COLUMNS and c not in FLOAT_COLUMNS} == text


def test_setup_keeps_the_study_draws(one_thread):
    """Through linft.runspec.prepare the study keeps its samples: the task split, the N training and the M test
    examples all drawn with the run's seed, the head frozen."""
    key = dataclasses.replace(next(k for k in plan_runs(tiny()) if k.setting == "mse_gd"), seed=1)
    model, train, test, num_labels = study_run._setup(key)
    tokenizer = models.load(key.model, num_labels=num_labels, seed=key.seed).tokenizer
    for got, split, n in ((train, "train", key.n_train), (test, "test", key.n_test)):
        expected = _independent_batch(key.task, n, key.seed, split, tokenizer, key.max_length)
        for name in expected:
            assert torch.equal(got[name].cpu(), expected[name]), (split, name)
    assert all("lora_" in name for name, p in model.named_parameters() if p.requires_grad)
