"""linft.study on Ray: a local cluster of 2 workers gives the serial backend's rows for the same seeds, resumes
without rerunning, records failures; a backend-started cluster is shut down afterwards. Skipped without Ray."""

import copy
import math

import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'linft[ray]'): the Ray backend is optional")

from linft.study import KEY_COLUMNS, RESULT_COLUMNS, VOLATILE_COLUMNS, plan_runs, run_sweep  # noqa: E402
from linft.study._csv import FLOAT_COLUMNS, INT_COLUMNS  # noqa: E402

#: 1 task × 2 LoRA configurations × 1 seed × 2 settings × λ = 0.5: 4 runs of 8 examples, 16 tokens, 2 steps
SWEEP = {
    "model": "minilm",
    "sizes": {"n_train": 8, "n_test": 16, "max_length": 16, "steps": 2, "lr": 1e-3, "batch_size": 4},
    "tasks": ["mr"],
    "configs": [{"name": "qv-r4", "layers": "all", "targets": "qv", "rank": 4},
                {"name": "v-r2-low", "layers": [0, 1], "targets": ["v"], "rank": 2}],
    "seeds": [1],
    "settings": ["mse_gd", "ce_adamw"],
    "lambdas": [0.5],
}
#: a run that fails inside the worker (more training examples than the task has)
FAILING = {**copy.deepcopy(SWEEP), "configs": SWEEP["configs"][1:], "settings": ["ce_adamw"],
           "sizes": {**SWEEP["sizes"], "n_train": 10_000_000}}


def test_backend_starts_and_stops_its_own_cluster(tmp_path):
    assert not ray.is_initialized()
    frame = run_sweep(FAILING, tmp_path / "fail.csv", backend="ray", num_cpus=2, progress=False)
    assert not ray.is_initialized()  # the cluster this call started is gone
    assert len(frame) == 1 and frame["status"].iloc[0] == "failed"
    assert "LinftError" in frame["error"].iloc[0] and "n_train = 10000000" in frame["error"].iloc[0]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs (2 one-CPU workers), shut down after the module."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_rows_equal_serial_rows(tmp_path, cluster, one_thread):
    serial = run_sweep(SWEEP, tmp_path / "serial.csv", backend="serial", progress=False)
    parallel = run_sweep(SWEEP, tmp_path / "ray.csv", backend="ray", progress=False)
    assert ray.is_initialized()  # a cluster the caller started is left running
    assert len(serial) == len(parallel) == len(plan_runs(SWEEP)) == 4
    assert (serial["status"] == "ok").all() and (parallel["status"] == "ok").all(), parallel["error"].tolist()
    # both frames come back in plan order, whatever order Ray finished the runs in
    pd.testing.assert_frame_equal(serial[list(KEY_COLUMNS)], parallel[list(KEY_COLUMNS)])
    numeric = [c for c in RESULT_COLUMNS if c in FLOAT_COLUMNS + INT_COLUMNS and c not in VOLATILE_COLUMNS]
    assert "kappa" in numeric and "eval_acc" in numeric and "train_loss" in numeric
    for column in numeric:
        for a, b in zip(serial[column], parallel[column]):
            assert (pd.isna(a) and pd.isna(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12), (column, a, b)
    text = [c for c in RESULT_COLUMNS if c not in FLOAT_COLUMNS + INT_COLUMNS and c not in VOLATILE_COLUMNS]
    pd.testing.assert_frame_equal(serial[text], parallel[text])
    again = run_sweep(SWEEP, tmp_path / "ray.csv", backend="ray", progress=False)
    assert again.attrs["ran"] == 0 and len(again) == 4  # finished rows are not run again
    lines = (tmp_path / "ray.csv").read_text().splitlines()
    assert len(lines) == 1 + 4


def test_ray_records_a_failing_run(tmp_path, cluster):
    frame = run_sweep(FAILING, tmp_path / "fail.csv", backend="ray", progress=False)
    assert len(frame) == 1 and frame["status"].iloc[0] == "failed"
    assert "n_train = 10000000" in frame["error"].iloc[0]
