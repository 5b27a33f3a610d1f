"""The reference protocol of linft.study: config checks, plan order, one run's properties, resumable CSV."""


import pandas as pd
import pytest
import torch

from linft import LinftError
from linft.study import draw_adapters, load_config, plan_runs, run_sweep

SMOKE = {
    "protocol": "reference", "model": "minilm",
    "sizes": {"n_train": 48, "n_eval": 24, "max_length": 16, "epochs": 1, "lr": 4e-3, "batch_size": 16,
              "warmup": 0.1, "short_fraction": 0.34, "calib": [16, 32], "n_draws": 1, "n_kr": 8},
    "tasks": ["mr"],
    "configs": [{"name": "qv-r2", "layers": "all", "targets": "qv", "rank": 2},
                {"name": "v-r1-l5", "layers": [5], "targets": "v", "rank": 1}],
    "seeds": [0],
    "threads": 1,
}


def _with(**changes):
    raw = {**SMOKE, "sizes": dict(SMOKE["sizes"])}
    for key, value in changes.items():
        if key in raw["sizes"]:
            raw["sizes"][key] = value
        else:
            raw[key] = value
    return raw


@pytest.mark.parametrize("raw, words", [
    (_with(calib=[32, 16]), "ascending"),
    (_with(calib=[16, 64]), "cannot be a prefix"),
    (_with(n_draws=2), "disjoint draws of 32 need 64"),
    (_with(warmup=1.5), "fractions of the steps"),
    (_with(protocol="other"), "protocol"),
    (_with(configs={"subj": SMOKE["configs"]}), "no list for task 'mr'"),
    (_with(configs=[{"name": "x", "targets": "nope", "rank": 2}]), "does not fit"),
])
def test_reference_config_errors_name_the_field(raw, words):
    with pytest.raises(LinftError, match=words):
        load_config(raw)


def test_plan_runs_in_blocks_of_two_seeds():
    raw = _with(tasks=["mr", "subj"], seeds=[0, 1, 2])
    plan = plan_runs(raw)
    assert len(plan) == 2 * 2 * 3
    order = [(k.spec.seed // 2, k.spec.task, k.spec.seed) for k in plan]
    assert order == sorted(order, key=lambda t: (t[0], ["mr", "subj"].index(t[1]), t[2]))
    assert {k.spec.seed for k in plan[:8]} == {0, 1}  # the first block: seeds 0-1 of every task
    key = plan[0]
    assert key.spec.n_kernel == 32 and key.spec.kernel_points == "train_prefix" and key.spec.head == "trained"
    assert key.spec.lora.alpha == key.spec.lora.rank  # alpha_ratio 1 by default
    assert key.steps == 3 and key.short_steps == 1


def test_draw_adapters_is_seeded_distinct_and_starts_with_the_reference_configuration():
    drawn = draw_adapters(12, seed=5, n_layers=6)
    assert [a.name for a in drawn] == [a.name for a in draw_adapters(12, seed=5, n_layers=6)]
    assert len({a.name for a in drawn}) == 12
    assert drawn[0].name == "qkv-r8-all" and drawn[0].layers is None
    assert [a.name for a in draw_adapters(12, seed=6, n_layers=6)] != [a.name for a in drawn]
    assert all(a.layers is None or max(a.layers) < 6 for a in drawn)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("ref") / "ref.csv"
    frame = run_sweep(SMOKE, out, progress=False)
    return frame, out


def test_each_run_is_one_complete_row(sweep):
    frame, _ = sweep
    assert list(frame["status"]) == ["ok", "ok"], list(frame["error"])
    assert frame["n_train_used"].tolist() == [48, 48] and frame["n_heldout_used"].tolist() == [24, 24]
    for n in (16, 32):
        for name in ("ref", "trained"):
            assert (frame[f"kappa_{name}_{n}"] >= 1).all()
            assert frame[f"kr_acc_{name}_{n}"].between(0, 1).all()
        assert (frame[f"kernel_seconds_{n}"] > 0).all()
    # the first disjoint draw of 32 is the N = 32 prefix
    assert frame["kappa_ref_draw0"].tolist() == pytest.approx(frame["kappa_ref_32"].tolist())
    assert frame["kappa_trained_draw0"].tolist() == pytest.approx(frame["kappa_trained_32"].tolist())
    # the head is trained and counted apart from LoRA
    assert (frame["n_params_trained"] > frame["n_params_lora"]).all()
    assert frame.loc[0, "n_params_lora"] == 2 * 6 * 2 * (2 * 384)  # q, v of 6 blocks, rank 2, A + B
    assert frame["steps"].tolist() == [3, 3] and frame["short_steps"].tolist() == [1, 1]


def test_kernel_columns_equal_an_independent_computation(sweep, one_thread):
    from linft import ntk
    from linft.kernel_summary import summarize
    from linft.runspec import prepare

    frame, _ = sweep
    key = plan_runs(SMOKE)[0]
    prepared = prepare(key.spec)
    sub = {k: v[:16] for k, v in prepared.kernel.items()}
    trained = ntk.empirical_ntk(prepared.model, sub, params="trainable", kernel="signgd")
    lora = ntk.empirical_ntk(prepared.model, sub, params="lora", kernel="asym_signgd")
    assert frame.loc[0, "kappa_trained_16"] == pytest.approx(summarize(trained).kappa, rel=1e-9)
    assert frame.loc[0, "kappa_ref_16"] == pytest.approx(summarize(lora, asymmetric=True).kappa, rel=1e-9)
    assert frame.loc[0, "trace_ref_16"] == pytest.approx(float(torch.diagonal(lora.matrix()).sum()), rel=1e-9)


def test_resumed_sweep_runs_nothing_and_loses_no_row(sweep):
    frame, out = sweep
    again = run_sweep(SMOKE, out, progress=False)
    assert again.attrs["ran"] == 0 and len(again) == len(frame)
    lines = out.read_text().splitlines()
    assert len(lines) == 1 + len(frame)
    assert pd.read_csv(out)["config"].tolist() == ["qv-r2", "v-r1-l5"]


def test_a_few_shot_store_refuses_a_reference_sweep(sweep, tmp_path):
    from linft.study import run_sweep as run

    _, out = sweep
    with pytest.raises(LinftError, match="other columns"):
        run({**SMOKE, "protocol": "fewshot", "sizes": {"n_train": 8, "n_test": 8, "max_length": 16, "steps": 1,
                                                       "lr": 1e-3}, "settings": ["ce_adamw"], "lambdas": [0]},
            out, progress=False)
    assert pd.read_csv(out)["kappa_ref_16"].notna().all()  # the rows are still there


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "sweeps").glob("*.yaml")))
def test_every_sweep_file_parses(name):
    config = load_config(ROOT / "sweeps" / name, check_model=False)
    assert config.name


def test_the_keystone_sweep_has_the_size_the_study_needs():
    config = load_config(ROOT / "sweeps" / "reference.yaml")
    s = config.sizes
    assert config.protocol == "reference" and len(config.tasks) >= 3 and len(config.seeds) >= 4
    assert all(len(c) >= 12 for c in config.configs.values())
    assert s.n_train >= 2048 and s.epochs >= 2 and s.n_eval >= 1000 and s.calib == (16, 32, 64, 128, 256)
    orders = {t: [c.name for c in cs] for t, cs in config.configs.items()}
    assert len({tuple(o[1:]) for o in orders.values()}) == len(orders)  # drawn per task: not one shared list
    paper = load_config(ROOT / "sweeps" / "paper.yaml", check_model=False)
    assert paper.protocol == "reference" and paper.sizes.calib[:2] == (16, 32)


def test_the_keystone_sweep_file_is_what_its_script_writes(tmp_path, monkeypatch):
    import runpy

    import yaml

    written = {}
    monkeypatch.setattr("pathlib.Path.write_text", lambda self, text, encoding=None: written.setdefault("t", text))
    runpy.run_path(str(ROOT / "scripts" / "make_reference_sweep.py"), run_name="__main__")
    assert yaml.safe_load(written["t"]) == yaml.safe_load((ROOT / "sweeps" / "reference.yaml").read_text())
