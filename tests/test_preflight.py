"""linft.preflight: the predicted run against kernel regression computed independently, and the layer advice against
the exact kernels of every layer pair (tiny sizes: 16 examples of 16 tokens, 1 thread)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from linft import LinftError, ntk, predict
from linft.preflight import (
    DEFAULT_STEPS,
    HEADS,
    OBJECTIVES,
    advise_layers,
    predict_prepared,
    preflight,
    prepare,
)

SIZES = {"n": 16, "max_length": 16, "seed": 0}
LORA_PARAMS_PER_LAYER = 2 * 8 * (384 + 384)  # q and v, rank 8, MiniLM hidden 384


@pytest.fixture(scope="module")
def run(one_thread):
    return prepare("minilm", "mr", n_test=16, **SIZES)


@pytest.fixture(scope="module")
def report(run):
    return predict_prepared(run, lam=0.5, steps=30, progress=False, output="full")


@torch.no_grad()
def _logits(model, batch):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double()


def test_report_is_kernel_regression_on_separately_computed_kernels(run, report):
    """One kernel call on train + held-out examples, sliced, gives what two separate eNTK calls give."""
    K = ntk.empirical_ntk(run.model, run.train, params="lora")
    Kx = ntk.empirical_ntk(run.model, run.test, run.train, params="lora")
    f0, f0x = _logits(run.model, run.train), _logits(run.model, run.test)
    y, yx = run.train["labels"], run.test["labels"]
    kr = predict.KernelRegression.fit(K, y, f0, 0.5)
    assert report.kr_accuracy == kr.accuracy(Kx, f0x, yx)
    assert report.kr_accuracy_low <= report.kr_accuracy <= report.kr_accuracy_high
    assert report.init_accuracy == float((f0x.argmax(1) == yx).double().mean())
    mu = torch.linalg.eigvalsh(K.matrix())
    assert report.lambda_max == pytest.approx(float(mu[-1]), rel=1e-5)
    assert report.lambda_min == pytest.approx(float(mu[0]), rel=1e-4)
    assert report.kappa_lambda == pytest.approx(float((mu[-1] + 16 * 0.5) / (mu[0] + 16 * 0.5)), rel=1e-5)
    assert report.trace == pytest.approx(float(torch.diagonal(K.matrix()).sum()), rel=1e-6)
    lr = 1.0 / (float(mu[-1]) / 16 + 0.5)
    assert report.lr == pytest.approx(lr, rel=1e-5)
    assert report.steps == list(range(31))
    assert report.train_loss == pytest.approx(kr.curves(lr=lr, steps=30).loss.tolist(), rel=1e-4)
    assert report.eval_loss == pytest.approx(kr.eval_loss(Kx, yx, f0x, lr=lr, steps=30).tolist(), rel=1e-4)
    assert report.train_loss[-1] < report.train_loss[0]  # descent step: the predicted loss falls
    assert report.n == report.n_test == 16 and report.layers == list(range(6))
    assert report.n_params == 6 * LORA_PARAMS_PER_LAYER


def test_seconds_and_rows(report):
    assert set(report.seconds) == {"load", "kernel", "eigen", "predict", "total"}
    assert report.seconds["predict"] == pytest.approx(report.seconds["kernel"] + report.seconds["eigen"])
    assert report.seconds["total"] == pytest.approx(report.seconds["load"] + report.seconds["predict"])
    assert all(s > 0 for s in report.seconds.values())
    rows = report.rows()
    by_quantity = {}
    for row in rows:
        by_quantity.setdefault(row["quantity"], []).append(row)
    assert len(by_quantity["train_loss"]) == len(by_quantity["eval_loss"]) == 31
    assert [r["value"] for r in by_quantity["train_loss"]] == report.train_loss
    assert by_quantity["kappa_lambda"][0]["value"] == report.kappa_lambda
    assert {r["lam"] for r in rows} == {0.5}


def test_str_shows_numbers_and_a_loss_plot(report):
    text = str(report)
    assert f"{report.kr_accuracy:.3f}" in text and "κ_λ" in text and "effective rank" in text
    plot = [line for line in text.splitlines() if line.strip().startswith(("|", "+")) or " |" in line]
    assert len(plot) >= 8 and sum(line.count("*") for line in plot) >= 20
    assert "step 30" in text


def test_report_says_what_the_books_study_found_about_kappa(report):
    from linft.finding import load_finding

    finding = load_finding()
    assert report.study_finding == finding and report.as_dict()["study_finding"] == finding
    assert f"{finding['scope']['runs']} runs" in str(report) and finding["verdict"] in str(report)


def test_save_plot_writes_a_png(report, tmp_path):
    path = report.save_plot(tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_trained_head_adds_the_head_to_the_kernel(run, report):
    trained = preflight("minilm", "mr", n_test=16, head="trained", lam=0.5, steps=5, progress=False, **SIZES)
    assert trained.n_params == report.n_params + (384 * 2 + 2)  # the classifier Linear(384, 2)
    assert trained.lambda_max > 10 * report.lambda_max  # the head dominates that kernel
    assert "head" in trained.params.lower() or "trainable" in trained.params.lower()


def test_layers_restrict_the_adapted_blocks():
    r = preflight("minilm", "mr", n_test=8, layers=[0, -1], steps=3, progress=False, **SIZES)
    assert r.layers == [0, 5] and r.n_params == 2 * LORA_PARAMS_PER_LAYER
    assert len(r.train_loss) == 4


@pytest.mark.parametrize("kwargs, message", [
    ({"head": "thawed"}, "unknown head 'thawed'"),
    ({"lam": -1}, "λ"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"n_test": 0}, "n_test"),
    ({"n": 0}, "n (training examples)"),
    ({"task": "no-such-task"}, "unknown task 'no-such-task'"),
    ({"n": 10**6}, "fewer than n_train = 1000000"),
])
def test_bad_input_raises_one_line(kwargs, message):
    with pytest.raises(LinftError) as info:
        preflight(**{"progress": False, "max_length": 16, **kwargs})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_choices_match_the_cli():
    from linft import cli, layers, runspec

    assert HEADS is runspec.HEADS and cli.HEADS is runspec.HEADS  # one definition
    assert layers.HEADS == runspec.HEADS  # layers._kernels keeps its own copy (layers/ is not this change's)
    assert OBJECTIVES == cli.OBJECTIVES
    assert set(cli.LAYER_METHODS) == set(layers.METHODS)


def test_default_steps_is_what_predict_uses_and_what_the_cli_says(run):
    import inspect

    from linft import cli

    default = predict_prepared(run, lam=0.5, progress=False)  # steps=None: DEFAULT_STEPS
    assert default.steps == list(range(DEFAULT_STEPS + 1)) and len(default.train_loss) == DEFAULT_STEPS + 1
    assert f"(default {DEFAULT_STEPS})" in inspect.getsource(cli._predict_arguments)  # --steps' help


# ---------------------------------------------------------------------------------------------- layers


@pytest.fixture(scope="module")
def advice(one_thread):
    return advise_layers("minilm", "mr", budget=2, lam=0.0, method="exhaustive", n_random=2, progress=False, **SIZES)


def test_advice_is_the_best_pair_by_brute_force(run, advice):
    """Every pair of layers' exact κ_λ from the per-layer blocks of one independently computed eNTK."""
    K = ntk.empirical_ntk(run.model, run.train, params="lora")  # same model, seed and examples as the advice
    blocks = {int(name[5:]): K.per_layer[name] for name in K.per_layer if name.startswith("layer")}
    assert sorted(blocks) == advice.candidates == list(range(6))

    def kappa(pair):
        total = sum(blocks[layer] for layer in pair)
        mu = torch.linalg.eigvalsh(total.permute(0, 2, 1, 3).reshape(32, 32))
        return float(mu[-1] / mu[0]) if mu[0] > 0 else math.inf

    kappas = {pair: kappa(pair) for pair in itertools.combinations(range(6), 2)}
    best = min(kappas, key=kappas.get)
    assert tuple(advice.recommended["layers"]) == best
    assert advice.value == pytest.approx(kappas[best], rel=1e-6)
    assert advice.recommended["kappa_lambda"] == pytest.approx(kappas[best], rel=1e-6)
    for name, choice in advice.baselines.items():
        if len(choice["layers"]) == 2:
            assert choice["kappa_lambda"] == pytest.approx(kappas[tuple(choice["layers"])], rel=1e-6), name


def test_advice_values_lie_inside_their_bounds(advice):
    assert set(advice.baselines) >= {"first", "last", "random0", "random1", "trace", "gradient", "weight_kappa", "all"}
    for name, choice in advice.choices().items():
        assert choice["inside_bounds"], name
        for key in ("kappa_lambda", "kappa", "lambda_min", "lambda_max"):
            assert choice[f"{key}_low"] * (1 - 1e-9) <= choice[key] <= choice[f"{key}_high"] * (1 + 1e-9), (name, key)
    assert advice.baselines["first"]["layers"] == [0, 1] and advice.baselines["last"]["layers"] == [4, 5]
    rows = advice.rows()
    assert [r["choice"] for r in rows][:3] == ["recommended", "first", "last"]
    assert rows[0]["layers"] == " ".join(map(str, advice.recommended["layers"]))
    assert "recommended layers" in str(advice)


def test_advice_budget_beyond_the_layers_raises():
    with pytest.raises(LinftError, match="budget 7 is more than the 6 layers"):
        advise_layers("minilm", "mr", budget=7, progress=False, **SIZES)
    with pytest.raises(LinftError, match="unknown objective"):
        advise_layers("minilm", "mr", objective="kappa", progress=False, **SIZES)



def test_binary_tasks_default_to_the_logit_difference_kernel(run, report):
    """output="auto" on a binary task: the kernel of z = f1 − f0 (= K11 − K10 − K01 + K00 of the full kernel),
    kernel regression on ±1 targets; the same numbers as an independent computation from the full kernel."""
    auto = predict_prepared(run, lam=0.5, steps=10, progress=False)
    assert auto.output == "logit_diff" and report.output == "full"
    K = ntk.empirical_ntk(run.model, run.train, params="lora").values
    Kx = ntk.empirical_ntk(run.model, run.test, run.train, params="lora").values
    contract = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    Kz = torch.einsum("ijcd,c,d->ij", K, contract, contract)
    Kzx = torch.einsum("ijcd,c,d->ij", Kx, contract, contract)
    f0, f0x = _logits(run.model, run.train) @ contract, _logits(run.model, run.test) @ contract
    kr = predict.KernelRegression.fit(Kz, run.train["labels"], f0, 0.5)
    assert auto.kr_accuracy == kr.accuracy(Kzx, f0x, run.test["labels"])
    mu = torch.linalg.eigvalsh(Kz)
    assert auto.lambda_max == pytest.approx(float(mu[-1]), rel=1e-5)
    assert auto.kappa_lambda == pytest.approx(float((mu[-1] + 16 * 0.5) / (mu[0] + 16 * 0.5)), rel=1e-5)
    lr = 1.0 / (float(mu[-1]) / 16 + 0.5)
    assert auto.train_loss == pytest.approx(kr.curves(lr=lr, steps=10).loss.tolist(), rel=1e-4)
    with pytest.raises(LinftError, match="output"):
        predict_prepared(run, output="logits")
