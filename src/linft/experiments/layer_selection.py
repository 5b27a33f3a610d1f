"""Chapter 4 (spectral perturbation under layer selection): per-layer kernels, Weyl bounds on unions of layers, the
κ_λ layer advisor against baselines, and real LoRA fine-tuning of every choice.

Protocol. A model gets LoRA (rank ``cfg.lora_rank`` on ``cfg.lora_targets``) on **every** layer, with the classifier
head frozen at its seeded initialization, so the trained parameters of a run are exactly the LoRA matrices of the
layers it adapts, and its eNTK at initialization is K_S = Σ_{l∈S} K_l (:class:`linft.layers.LayerKernels`, one
engine pass on the run's own training examples). A run that adapts the layers S trains a copy of that model with
the LoRA matrices of S trainable and every other adapter frozen at B = 0; since each LoRA A is seeded by its module's
name, that is the same function and the same trained parameters as ``add_lora(..., layers=S)``
(:func:`train_layers`; a test checks the equality).

Per (task, seed) cell (:func:`layer_setup`, :func:`selection_study`):

- the advisor's choice (:func:`linft.layers.select_layers`, κ_λ at ``lam``) and the baselines of
  :func:`linft.layers.baselines` at the same budget; a table of exact κ_λ with its Weyl interval per choice;
- the exact spectrum of every tested union of layers (all of them when there are few layers) against its Weyl
  bounds;
- CE + AdamW fine-tuning of every distinct choice (a set chosen by two selectors is trained once: runs are cached by
  layer set), final training loss and held-out accuracy on ``cfg.n_test`` validation examples;
- on the profile seeds, each layer fine-tuned alone (the single-layer profile); on the AdaLoRA seeds, peft AdaLoRA on
  every layer with the same final total rank (a during-training reference, :func:`adalora_run`);
- on one task, MSE + full-batch gradient descent of a few choices against the kernel-regression prediction of their
  training loss (:func:`gd_curves`): the setting in which the kernel predicts the curve.

The kernel side (set-up, per-layer tables, unions, choices) lives in :mod:`linft.experiments.layer_kernels`
(re-exported here, so ``layer_selection.<name>`` keeps working); this module trains the choices and words the
verdicts.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from torch import nn

from linft import LinftError, check_positive_int, data, models, predict
from linft.device import seed_everything
from linft.experiments.layer_kernels import (
    ADVISOR,
    REFERENCE,
    LayerSetup,
    choice_table,
    containment,
    format_layers,
    growth_path,
    layer_setup,
    one_thread,
    per_layer_table,
    spearman,
    tested_unions,
    union_checks,
)
from linft.experiments.tasks import prepare_chapter
from linft.functional import logits_of
from linft.scales import Scale
from linft.stats import hierarchical_ci, verdict
from linft.train import MinibatchSampler, fine_tune

__all__ = ["ADVISOR", "REFERENCE", "LayerSetup", "SelectionStudy", "layer_setup", "per_layer_table", "tested_unions",
           "union_checks", "growth_path", "containment", "choice_table", "train_layers", "adalora_run", "gd_curves",
           "selection_study", "summarize", "advisor_verdicts", "profile_correlation", "weyl_verdict",
           "selection_verdict", "spearman", "format_layers", "kernel_text", "study_text", "claims", "one_thread"]


# ---------------------------------------------------------------------------------------------- training


@torch.no_grad()
def _predictions(model: nn.Module, batch: dict, chunk: int = 128) -> np.ndarray:
    """Predicted labels [M] of ``model`` on ``batch``."""
    parts = []
    for i in range(0, batch["input_ids"].shape[0], chunk):
        part = {k: v[i:i + chunk] for k, v in batch.items() if k != "labels"}
        parts.append(logits_of(model(**part)).argmax(-1))
    return torch.cat(parts).numpy()


def _only_layers(model: nn.Module, layers) -> nn.Module:
    """A copy of ``model`` (LoRA everywhere) whose LoRA matrices are trainable in ``layers`` only."""
    trained = copy.deepcopy(model)
    wanted = {int(layer) for layer in layers}
    for name, param in trained.named_parameters():
        param.requires_grad_("lora_" in name and models.layer_index(name) in wanted)
    return trained


def train_layers(model: nn.Module, layers, train: dict, test: dict, cfg: Scale, seed: int = 0) -> dict:
    """Fine-tune the LoRA matrices of ``layers`` (a copy of ``model``; the other adapters stay at B = 0, the head
    frozen) with cross-entropy + AdamW: ``cfg.train_steps`` steps of ``cfg.batch_size`` at ``cfg.lr``.

    Returns ``{"correct": [M] 0/1 on ``test``, "acc", "train_loss" (final, whole training batch), "R0",
    "trained_params", "seconds", "model"}``.
    """
    start = time.perf_counter()
    trained = _only_layers(model, layers)
    run = fine_tune(trained, train, None, loss="ce", optimizer="adamw", lr=cfg.lr, steps=cfg.train_steps,
                    batch_size=cfg.batch_size, seed=seed, log_every=max(cfg.train_steps, 1), track_gap=False,
                    progress=False)
    correct = (_predictions(trained, test) == test["labels"].numpy()).astype(np.float64)
    return {"correct": correct, "acc": float(correct.mean()), "train_loss": float(run.final["task_loss"]),
            "R0": float(run.final["R0"]), "trained_params": models.count_parameters(trained)["trainable"],
            "seconds": time.perf_counter() - start, "model": trained}


def adalora_run(setup: LayerSetup, test: dict, cfg: Scale, total_rank: int, seed: int = 0) -> dict:
    """peft AdaLoRA on every layer's ``cfg.lora_targets`` (initial rank ``cfg.lora_rank`` each, head frozen), its
    rank budget cut during training to ``total_rank`` in all (the advisor's: budget × targets × rank), trained with
    cross-entropy (+ AdaLoRA's orthogonal regularization) and AdamW like :func:`train_layers`; its rank allocator
    runs after every step. Returns ``{"correct", "acc", "R0" and "train_loss" (cross-entropy on the training batch
    before and after), "reg_share" (the orthogonal regularizer's mean share of the minibatch loss over the steps),
    "final_ranks": {layer: rank}, "seconds"}``.
    """
    from peft import AdaLoraConfig, get_peft_model

    start = time.perf_counter()
    steps = cfg.train_steps
    if steps < 3:
        raise LinftError(f"AdaLoRA needs at least 3 steps (warm-up, budgeting, final), got train_steps={steps}")
    base = models.load(setup.model_key, num_labels=data.get_task(setup.task).num_labels, seed=setup.seed).model
    modules = models.match_targets(base, cfg.lora_targets)
    config = AdaLoraConfig(init_r=cfg.lora_rank, target_r=1, lora_alpha=models.default_alpha(cfg.lora_rank),
                           target_modules=modules, total_step=steps, tinit=max(1, steps // 6),
                           tfinal=max(1, steps // 6), deltaT=1, task_type="SEQ_CLS")
    torch.manual_seed(seed)
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
        warnings.filterwarnings("ignore", category=FutureWarning)
        model = get_peft_model(base, config)
    model.base_model.rankallocator.target_bgt = int(total_rank)  # the same total rank as the advisor's choice
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)  # head frozen, as in every run of this chapter
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr)
    train = {k: v for k, v in setup.train.items()}
    sampler = MinibatchSampler(train["labels"].shape[0], cfg.batch_size, seed)
    inputs = {k: v for k, v in train.items() if k != "labels"}
    with torch.no_grad():
        r0 = float(torch.nn.functional.cross_entropy(logits_of(model(**inputs)), train["labels"]))
    seed_everything(seed)
    reg_shares = []
    for step in range(steps):
        idx = next(sampler)
        out = model(**{k: v[idx] for k, v in train.items()})  # labels given: loss = CE + orthogonal regularization
        ce = float(torch.nn.functional.cross_entropy(out.logits.detach(), train["labels"][idx]))
        reg_shares.append(1.0 - ce / float(out.loss.detach()))
        out.loss.backward()
        optimizer.step()
        model.base_model.update_and_allocate(step)
        optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        logits = logits_of(model(**{k: v for k, v in train.items() if k != "labels"}))
        train_loss = float(torch.nn.functional.cross_entropy(logits, train["labels"]))
    correct = (_predictions(model, test) == test["labels"].numpy()).astype(np.float64)
    ranks: dict[int, int] = {}
    for name, mask in (model.peft_config["default"].rank_pattern or {}).items():
        layer = models.layer_index(name)
        ranks[layer] = ranks.get(layer, 0) + int(torch.as_tensor(mask).sum())
    return {"correct": correct, "acc": float(correct.mean()), "R0": r0, "train_loss": train_loss,
            "reg_share": float(np.mean(reg_shares)), "final_ranks": ranks,
            "seconds": time.perf_counter() - start}


def gd_curves(setup: LayerSetup, choices: dict, *, n: int, steps: int, lam: float = 0.0,
              seed: int = 0, step_fraction: float = 1.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Measured vs kernel-predicted training objective of full-batch gradient descent on the one-hot squared loss,
    for each named choice, on the first ``n`` training examples (their kernel is the principal sub-matrix of
    ``setup.lk``'s). Each choice trains with its own step η = c/(μmax/n + λ) (:func:`linft.predict.descent_lr`,
    c = ``step_fraction``), so its slowest direction needs about κ_λ/c steps. Returns (tidy curves: choice, layers,
    step, measured, predicted; one row per choice: κ_λ, η, final measured/predicted, mean relative error over steps
    1..steps)."""
    n = min(n, setup.train["labels"].shape[0])
    train = {k: v[:n] for k, v in setup.train.items()}
    with torch.no_grad():
        f0 = logits_of(setup.model(**{k: v for k, v in train.items() if k != "labels"})).double()
    size = n * setup.lk.n_outputs
    curves, rows = [], []
    for name, layers in choices.items():
        K = setup.lk.matrix(layers)[:size, :size]
        kr = predict.KernelRegression.fit(K, train["labels"], f0, lam)
        lr = step_fraction * predict.descent_lr(kr.spectrum, lam=lam)
        run = fine_tune(_only_layers(setup.model, layers), train, None, loss="mse", optimizer="gd", lr=lr,
                        steps=steps, lam=lam, seed=seed, log_every=max(steps, 1), track_gap=False, progress=False)
        predicted = kr.curves(lr=lr, steps=steps).objective.numpy()
        measured = run.objective
        curves.append(pd.DataFrame({"choice": name, "layers": format_layers(layers), "step": np.arange(steps + 1),
                                    "measured": measured, "predicted": predicted}))
        rel = np.abs(predicted[1:] - measured[1:]) / measured[1:]
        rows.append({"choice": name, "layers": format_layers(layers), "n": n, "step_fraction": step_fraction, "lr": lr,
                     "κ_λ": predict.kappa_lambda(kr.spectrum, lam=lam), "R0": float(measured[0]),
                     "R_T": float(measured[-1]), "R_T_predicted": float(predicted[-1]),
                     "rel_error_mean": float(rel.mean()) if rel.size else float("nan")})
    return pd.concat(curves, ignore_index=True), pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- the study


@dataclass
class SelectionStudy:
    """What :func:`selection_study` returns.

    ``runs``: one row per (task, seed, choice): layers, κ_λ exact and its bounds, held-out accuracy, final training
    loss, ``run_id`` (rows with the same id share one training run) and ``reused``; ``correct``: {run_id: [M] 0/1};
    ``summary``: per (task, choice): accuracy with a two-level bootstrap interval over seeds and examples, mean κ_λ;
    ``verdicts``: per task, the advisor against the median baseline; ``profile``: single-layer runs; ``adalora``:
    AdaLoRA runs; ``unions``: every union check of every cell; ``curves``/``curve_table``: :func:`gd_curves` on the
    curve task's first seed (empty without one); ``setups``: {(task, seed): LayerSetup} (models
    dropped); ``n_trained``: training runs actually done; ``seconds``: wall time per part.
    """

    runs: pd.DataFrame
    correct: dict
    summary: pd.DataFrame
    verdicts: pd.DataFrame
    profile: pd.DataFrame
    profile_corr: pd.DataFrame
    adalora: pd.DataFrame
    unions: pd.DataFrame
    curves: pd.DataFrame
    curve_table: pd.DataFrame
    setups: dict
    n_trained: int
    seconds: dict
    text: dict = field(default_factory=dict)
    headline: dict = field(default_factory=dict)


def _cell(setup: LayerSetup, test: dict, cfg: Scale, profile: bool, trained: dict, correct: dict,
          reference: bool = True) -> tuple[list, list]:
    """Train every distinct choice (and, with ``profile``, every single layer) of one (task, seed) cell; a layer
    set already trained in this cell is reused: ``trained`` maps run ids to the numbers of a run (without its
    per-example correctness, which goes to ``correct``). Without ``reference`` the ``"all"`` choice is not
    trained."""
    rows, prof = [], []

    def run(layers) -> tuple[str, bool]:
        layers = tuple(sorted(int(x) for x in layers))
        run_id = f"{setup.task}/{setup.seed}/{format_layers(layers)}"
        if run_id in trained:
            return run_id, True
        result = train_layers(setup.model, layers, setup.train, test, cfg, seed=setup.seed)
        correct[run_id] = result["correct"]
        trained[run_id] = {k: v for k, v in result.items() if k not in ("correct", "model")}
        return run_id, False

    for name, layers in setup.choices.items():
        if name == REFERENCE and not reference:
            continue
        run_id, reused = run(layers)
        result = trained[run_id]
        with one_thread():
            exact, bounds = setup.lk.exact(layers, setup.lam), setup.lk.bounds(layers, setup.lam)
        rows.append({"task": setup.task, "seed": setup.seed, "choice": name, "layers": format_layers(exact.layers),
                     "size": len(exact.layers), "κ_λ": exact.kappa_lambda, "κ_λ_lo": bounds.kappa_lambda[0],
                     "κ_λ_hi": bounds.kappa_lambda[1], "λmin": exact.lambda_min, "λmax": exact.lambda_max,
                     "acc": result["acc"], "train_loss": result["train_loss"], "R0": result["R0"],
                     "trained_params": result["trained_params"], "seconds": 0.0 if reused else result["seconds"],
                     "run_id": run_id, "reused": reused})
    if profile:
        for layer in setup.lk.layers:
            run_id, _ = run((layer,))
            result = trained[run_id]
            with one_thread():
                exact = setup.lk.exact([layer], setup.lam)
            prof.append({"task": setup.task, "seed": setup.seed, "layer": layer, "κ_λ": exact.kappa_lambda,
                         "λmin": exact.lambda_min, "λmax": exact.lambda_max, "trace": exact.trace,
                         "acc": result["acc"], "train_loss": result["train_loss"], "run_id": run_id})
    return rows, prof


def selection_study(tasks, cfg: Scale, *, seeds=None, budget: int = 2, lam: float = 0.0,
                    objective: str = "kappa_lambda", n_random: int = 3, profile_seeds=None, adalora_seeds=(),
                    max_unions: int = 64, curve_task: str | None = None, curve_choices=(ADVISOR, "first", "last"),
                    curve_n: int = 32, curve_steps: int = 20, curve_step_fraction: float = 1.0,
                    train_reference: bool = True, setups=None, progress=None) -> SelectionStudy:
    """Run the per-(task, seed) protocol of the module docstring for ``cfg.model`` on ``tasks`` × ``seeds``
    (default ``cfg.seeds``); the single-layer profile on ``profile_seeds`` (default: the first seed), AdaLoRA on
    ``adalora_seeds``, and :func:`gd_curves` of ``curve_choices`` (``curve_n`` examples, ``curve_steps`` steps) on
    ``curve_task``'s first seed (step: ``curve_step_fraction`` of the descent condition's). ``train_reference``:
    also fine-tune ``"all"`` (every layer, more parameters: a reference, not a baseline). ``setups``: optional
    ``{(task, seed): LayerSetup}`` already computed (with their models) for cells of this study, reused as they are.
    ``progress``: optional callable taking one line of text per finished cell."""
    seeds = tuple(cfg.seeds if seeds is None else seeds)
    profile_seeds = tuple(seeds[:1] if profile_seeds is None else profile_seeds)
    if not tasks or not seeds:
        raise LinftError("selection_study needs at least one task and one seed")
    budget = check_positive_int(budget, "budget")
    given = dict(setups or {})
    rows, prof, ada, unions, setups, correct, trained = [], [], [], [], {}, {}, {}
    seconds = {"kernels": 0.0, "training": 0.0, "adalora": 0.0, "curves": 0.0}
    curves, curve_table = pd.DataFrame(), pd.DataFrame()
    for task in tasks:
        for seed in seeds:
            setup = given.get((task, seed))
            if setup is None or setup.model is None:
                setup = layer_setup(cfg.model, task, cfg, seed=seed, lam=lam, objective=objective, budget=budget,
                                    n_random=n_random, max_unions=max_unions)
                seconds["kernels"] += sum(setup.seconds.values())
            test = setup.heldout
            if test is None:  # a set-up made without held-out examples: draw them as layer_setup does
                test = prepare_chapter(task, cfg, seed, n_train=int(setup.train["labels"].shape[0]),
                                       n_heldout=cfg.n_test, head="frozen", model=setup.model_key).heldout
            start = time.perf_counter()
            cell_rows, cell_prof = _cell(setup, test, cfg, seed in profile_seeds, trained, correct, train_reference)
            seconds["training"] += time.perf_counter() - start
            rows += cell_rows
            prof += cell_prof
            unions.append(setup.unions.assign(task=task, seed=seed))
            if seed in adalora_seeds:
                total_rank = budget * len(models.match_targets(setup.model, cfg.lora_targets, layers=[0])) \
                    * cfg.lora_rank
                result = adalora_run(setup, test, cfg, total_rank, seed=seed)
                seconds["adalora"] += result["seconds"]
                run_id = f"{task}/{seed}/adalora"
                correct[run_id] = result.pop("correct")
                ada.append({"task": task, "seed": seed, "total_rank": total_rank, "run_id": run_id, **result})
            if task == curve_task and seed == seeds[0]:
                start = time.perf_counter()
                curves, curve_table = gd_curves(setup, {c: setup.choices[c] for c in curve_choices}, n=curve_n,
                                                steps=curve_steps, lam=lam, seed=seed,
                                                step_fraction=curve_step_fraction)
                seconds["curves"] = time.perf_counter() - start
            setups[(task, seed)] = replace(setup, model=None)
            if progress is not None:
                progress(f"{task} seed {seed}: advisor {format_layers(setup.advisor.layers)}, "
                         f"{sum(not r['reused'] for r in cell_rows) + len(cell_prof)} runs")
    runs = pd.DataFrame(rows)
    profile = pd.DataFrame(prof)
    n_trained = len(trained)
    summary = summarize(runs, correct)
    study = SelectionStudy(runs, correct, summary, advisor_verdicts(summary), profile, profile_correlation(profile),
                           pd.DataFrame(ada), pd.concat(unions, ignore_index=True), curves, curve_table, setups,
                           n_trained, seconds)
    return study


def summarize(runs: pd.DataFrame, correct: dict) -> pd.DataFrame:
    """Per (task, choice): layers chosen (over seeds), mean κ_λ, mean final training loss, and the held-out accuracy
    with a two-level bootstrap 95 % interval (:func:`linft.stats.hierarchical_ci`: seeds, then examples)."""
    rows = []
    for (task, choice), part in runs.groupby(["task", "choice"], sort=False):
        acc, low, high = hierarchical_ci([correct[r] for r in part["run_id"]])
        rows.append({"task": task, "choice": choice, "layers": " | ".join(dict.fromkeys(part["layers"])),
                     "κ_λ": float(part["κ_λ"].mean()), "train_loss": float(part["train_loss"].mean()),
                     "acc": acc, "acc_low": low, "acc_high": high, "seeds": len(part)})
    return pd.DataFrame(rows)


def _is_baseline(choice: str) -> bool:
    return choice not in (ADVISOR, REFERENCE)


def advisor_verdicts(summary: pd.DataFrame) -> pd.DataFrame:
    """Per task: the advisor's accuracy, the median of the baselines' accuracies (every choice but the advisor and
    ``"all"``), the best and worst baseline, the advisor's rank among advisor + baselines (1 = best), and whether it
    beats the median baseline (the pass bar)."""
    rows = []
    for task, part in summary.groupby("task", sort=False):
        base = part[part["choice"].map(_is_baseline)]
        advisor = part[part["choice"] == ADVISOR]
        if advisor.empty or base.empty:
            raise LinftError(f"task {task!r} needs an advisor row and at least one baseline row")
        acc = float(advisor["acc"].iloc[0])
        median = float(base["acc"].median())
        rank = int((base["acc"] > acc).sum()) + 1
        rows.append({"task": task, "advisor_acc": acc, "median_baseline_acc": median, "difference": acc - median,
                     "best_baseline": base.loc[base["acc"].idxmax(), "choice"], "best_baseline_acc": base["acc"].max(),
                     "worst_baseline_acc": base["acc"].min(), "advisor_rank": rank, "n_choices": len(base) + 1,
                     "beats_median": acc > median})
    return pd.DataFrame(rows)


def profile_correlation(profile: pd.DataFrame) -> pd.DataFrame:
    """Per task: Spearman correlation, over the single-layer profile (means over its seeds), of each layer's κ_λ with
    its held-out accuracy and with its final training loss."""
    if profile.empty:
        return pd.DataFrame(columns=["task", "layers", "spearman_kappa_acc", "spearman_kappa_loss", "best_layer"])
    rows = []
    for task, part in profile.groupby("task", sort=False):
        per_layer = part.groupby("layer")[["κ_λ", "acc", "train_loss"]].mean()
        rows.append({"task": task, "layers": len(per_layer),
                     "spearman_kappa_acc": spearman(per_layer["κ_λ"], per_layer["acc"]),
                     "spearman_kappa_loss": spearman(per_layer["κ_λ"], per_layer["train_loss"]),
                     "best_layer": int(per_layer["acc"].idxmax()),
                     "lowest_kappa_layer": int(per_layer["κ_λ"].idxmin())})
    return pd.DataFrame(rows)


def weyl_verdict(checks: pd.DataFrame) -> tuple[str, str]:
    """(verdict, one sentence) for the claim "every exact eigenvalue of a union lies within its Weyl bounds", from
    union checks (:func:`union_checks`, any number of kernels concatenated)."""
    totals = containment(checks)
    word = verdict(totals["n_unions_inside"], totals["n_unions"], some_word="partly")
    return word, (f"{totals['n_inside']:,} of {totals['n_eigenvalues']:,} exact eigenvalues of "
                  f"{totals['n_unions']:,} unions of layers lie within their Weyl bounds "
                  f"({totals['n_unions_inside']:,} of {totals['n_unions']:,} unions entirely)")


def selection_verdict(verdicts: pd.DataFrame) -> tuple[str, str]:
    """(verdict, one sentence) for "the κ_λ advisor's layers beat the median baseline", from
    :func:`advisor_verdicts`: holds on every task, partly on some, does not hold on none."""
    passed = int(verdicts["beats_median"].sum())
    word = verdict(passed, len(verdicts), some_word="partly")
    diffs = ", ".join(f"{row.task} {row.difference * 100:+.1f}" for row in verdicts.itertuples())
    return word, (f"the κ_λ advisor's layers beat the median baseline's held-out accuracy on {passed} of "
                  f"{len(verdicts)} tasks (advisor − median baseline, points: {diffs})")


# ---------------------------------------------------------------------------------------------- prose numbers


def _g(value: float, digits: int = 3) -> str:
    return "∞" if not np.isfinite(value) else f"{value:.{digits}g}"


def kernel_text(setups: dict) -> dict:
    """Glue values for the kernel-side sections, from ``{model label: LayerSetup}`` (one task each): per model, the
    spread of λmax and trace across layers, the layers with the largest trace and the smallest κ_λ, the advisor's
    choice against the baselines' κ_λ; the Weyl checks of the first model's tested unions (``first_*``) and of all
    of them; how far apart the κ_λ bounds are along each model's growth path."""
    text, parts, choice_parts = {}, [], []
    for label, setup in setups.items():
        table = setup.per_layer.set_index("layer")
        parts.append(f"in {label} ({setup.n_layers} layers, N = {setup.lk.n_examples}), λmax of a single layer's "
                     f"kernel varies {_g(table['λmax'].max() / table['λmax'].min())}-fold across layers and its trace "
                     f"{_g(table['trace'].max() / table['trace'].min())}-fold; layer {table['trace'].idxmax()} has the "
                     f"largest trace, layer {table['κ_λ'].idxmin()} the best-conditioned kernel "
                     f"(κ_λ = {_g(table['κ_λ'].min())}, against {_g(table['κ_λ'].max())} for the worst)")
        t = setup.table.set_index("choice")
        advisor = t.loc[ADVISOR]
        base = t[[_is_baseline(c) for c in t.index]]
        separated = int((base["κ_λ_lo"] > advisor["κ_λ_hi"]).sum())
        choice_parts.append(
            f"in {label}, the advisor picks layers {advisor['layers']} (κ_λ = {_g(advisor['κ_λ'])}, Weyl interval "
            f"[{_g(advisor['κ_λ_lo'])}, {_g(advisor['κ_λ_hi'])}]); the baselines' κ_λ run from "
            f"{_g(base['κ_λ'].min())} to {_g(base['κ_λ'].max())} (median {_g(base['κ_λ'].median())}), "
            f"{int((base['κ_λ'] > advisor['κ_λ']).sum())} of {len(base)} above the advisor's, and for {separated} "
            f"of them the bounds alone rank the two (their "
            f"lower bound is above the advisor's upper bound); the {setup.advisor.method} search computed "
            f"{setup.advisor.n_exact} exact spectra for {setup.advisor.n_candidates} candidate sets")
        if not text:  # the first model's union checks, quoted on their own
            checks = containment(setup.unions)
            text = {"first_model": label, "first_unions": f"{checks['n_unions']:,}",
                    "first_union_eigs": f"{checks['n_eigenvalues']:,}",
                    "first_union_inside": f"{checks['n_inside']:,}"}
    all_checks = pd.concat([s.unions for s in setups.values()], ignore_index=True)
    word, sentence = weyl_verdict(all_checks)
    path_widths = [growth_path(s.lk, s.lam) for s in setups.values()]
    widths = pd.concat(path_widths)
    widths = widths[widths["size"] > 1]  # one layer: the bounds are its exact spectrum
    ratio = (widths["κ_λ_hi"] / widths["κ_λ_lo"]).replace(np.inf, np.nan)
    text.update({"per_layer_text": "; ".join(parts), "choice_text": "; ".join(choice_parts),
                 "weyl_sentence": sentence, "weyl_word": word,
                 "weyl_width_lo": _g(ratio.min()), "weyl_width_hi": _g(ratio.max()),
                 "weyl_inf": int(np.isinf(widths["κ_λ_hi"]).sum())})
    return text


def study_text(study: SelectionStudy, cfg: Scale, budget: int) -> dict:
    """Glue values for the fine-tuning section: sizes, per-task verdict sentences, the overall verdicts, the
    single-layer profile's rank correlations, AdaLoRA and the loss-curve comparison."""
    v, runs = study.verdicts, study.runs
    word, sentence = selection_verdict(v)
    per_task = []
    for row in v.itertuples():
        summary = study.summary[(study.summary["task"] == row.task) & (study.summary["choice"] == ADVISOR)].iloc[0]
        per_task.append(f"on {row.task}, the advisor's layers reach {row.advisor_acc:.1%} "
                        f"[{summary['acc_low']:.1%}, {summary['acc_high']:.1%}] against a median baseline of "
                        f"{row.median_baseline_acc:.1%}: they {'beat' if row.beats_median else 'do not beat'} it "
                        f"(rank {row.advisor_rank} of {row.n_choices}; best baseline {row.best_baseline}, "
                        f"{row.best_baseline_acc:.1%})")
    seeds = sorted(runs["seed"].unique())
    corr = study.profile_corr
    text = {
        "ft_tasks": ", ".join(dict.fromkeys(runs["task"])), "ft_n_tasks": runs["task"].nunique(),
        "ft_seeds": len(seeds), "ft_n_train": cfg.n_train,
        "ft_max_length": cfg.max_length, "ft_steps": cfg.train_steps, "ft_batch": cfg.batch_size,
        "ft_lr": f"{cfg.lr:g}", "ft_n_test": cfg.n_test, "ft_rank": cfg.lora_rank,
        "ft_targets": ", ".join(cfg.lora_targets),
        "ft_params": f"{int(runs.loc[runs['size'] == budget, 'trained_params'].iloc[0]):,}",
        "ft_trained": study.n_trained,
        "ft_reused": int(runs["reused"].sum()), "ft_rows": len(runs),
        "ft_seconds": f"{sum(study.seconds.values()):.0f}",
        "ft_per_task": "; ".join(per_task), "ft_sentence": sentence, "ft_verdict": word,
        "ft_corr_runs": _run_correlation_text(runs, budget), "ft_scale_text": _scale_text(study),
    }
    if not corr.empty:
        text["profile_text"] = "; ".join(
            f"{r.task}: {_corr(r.spearman_kappa_acc)} with accuracy, {_corr(r.spearman_kappa_loss)} with the final "
            f"training loss (best single layer {r.best_layer}, lowest κ_λ layer {r.lowest_kappa_layer})"
            for r in corr.itertuples())
        text["profile_seeds"] = study.profile["seed"].nunique()
    else:
        text["profile_text"], text["profile_seeds"] = "no single-layer profile was run", 0
    if not study.adalora.empty:
        adv = runs[runs["choice"] == ADVISOR].set_index(["task", "seed"])["acc"]
        adv_r0 = runs[runs["choice"] == ADVISOR].set_index(["task", "seed"])["R0"]
        adv_loss = runs[runs["choice"] == ADVISOR].set_index(["task", "seed"])["train_loss"]
        text["adalora_text"] = "; ".join(
            f"{r.task} (seed {r.seed}): AdaLoRA reaches {r.acc:.1%} against the advisor's "
            f"{adv.loc[(r.task, r.seed)]:.1%}, its training loss going from {r.R0:.3g} to {r.train_loss:.3g} (the "
            f"advisor's: {adv_r0.loc[(r.task, r.seed)]:.3g} to {adv_loss.loc[(r.task, r.seed)]:.3g}), final ranks "
            f"per layer {_ranks(r.final_ranks)}" for r in study.adalora.itertuples())
        patterns = {tuple(sorted(r.items())) for r in study.adalora["final_ranks"] if isinstance(r, dict)}
        text["adalora_patterns"] = (f"{len(patterns)} distinct final rank pattern(s) over "
                                    f"{len(study.adalora)} run(s)")
        text["adalora_reg"] = f"{study.adalora['reg_share'].mean():.0%}"
    else:
        text["adalora_text"], text["adalora_patterns"] = "AdaLoRA was not run", "no rank patterns"
        text["adalora_reg"] = "n/a"
    if not study.curve_table.empty:
        ct = study.curve_table
        text["curve_text"] = "; ".join(
            f"{r.choice} ({r.layers}): κ_λ = {_g(r.κ_λ)}, step η = {_g(r.lr)}, objective {_g(r.R0)} → {_g(r.R_T)} "
            f"measured, {_g(r.R_T_predicted)} predicted, mean relative error {r.rel_error_mean:.0%}"
            for r in ct.itertuples())
        text["curve_n"] = int(ct["n"].iloc[0])
        text["curve_fraction"] = f"{ct['step_fraction'].iloc[0]:g}"
        text["curve_steps"] = int(study.curves["step"].max())
        order_pred = list(ct.sort_values("R_T_predicted")["choice"])
        order_meas = list(ct.sort_values("R_T")["choice"])
        text["curve_order"] = ("the same" if order_pred == order_meas else "not the same")
    else:
        text.update({"curve_text": "no curves were run", "curve_n": 0, "curve_steps": 0, "curve_order": "n/a",
                     "curve_fraction": "n/a"})
    return text


def _scale_text(study: SelectionStudy) -> str:
    """Per task: λmax of the advisor's kernel (mean over seeds) as a fraction of the best baseline's, and the final
    training losses of the two."""
    means = study.runs.groupby(["task", "choice"])[["λmax", "train_loss"]].mean()
    parts = []
    for row in study.verdicts.itertuples():
        advisor, best = means.loc[(row.task, ADVISOR)], means.loc[(row.task, row.best_baseline)]
        parts.append(f"on {row.task}, λmax of the advisor's kernel is {advisor['λmax'] / best['λmax']:.2g} times "
                     f"that of the best baseline ({row.best_baseline}), and its final training loss "
                     f"{advisor['train_loss']:.3g} against {best['train_loss']:.3g}")
    return "; ".join(parts)


def _corr(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:+.2f}"


def _ranks(ranks) -> str:
    if not isinstance(ranks, dict) or not ranks:
        return "n/a"
    return ", ".join(f"{layer}: {rank}" for layer, rank in sorted(ranks.items()))


def _run_correlation_text(runs: pd.DataFrame, budget: int) -> str:
    """Per task, the mean over seeds of the Spearman correlation between κ_λ and accuracy across the distinct
    ``budget``-layer sets trained in a cell."""
    parts = []
    for task, part in runs[runs["size"] == budget].groupby("task", sort=False):
        values = [spearman(cell.drop_duplicates("run_id")["κ_λ"], cell.drop_duplicates("run_id")["acc"])
                  for _, cell in part.groupby("seed")]
        finite = [x for x in values if np.isfinite(x)]
        parts.append(f"{task} {_corr(float(np.mean(finite))) if finite else 'n/a'}")
    return ", ".join(parts)


def claims(study: SelectionStudy, decoder_unions: pd.DataFrame | None, *, weyl_section: str,
           selection_section: str) -> dict:
    """The chapter's two verdicts, ``{"weyl_bounds": {...}, "layer_selection": {...}}``, each ``{"verdict",
    "evidence", "section"}`` (verdict ∈ holds / partly / does not hold; ``section``: the MyST label of the section
    with the evidence). The claims page (:mod:`linft.claims`, claim 9) reads both and combines them."""
    checks = study.unions if decoder_unions is None else pd.concat([study.unions, decoder_unions])
    weyl_word, weyl_sentence = weyl_verdict(checks)
    sel_word, sel_sentence = selection_verdict(study.verdicts)
    return {"weyl_bounds": {"verdict": weyl_word, "evidence": _sentence(weyl_sentence), "section": weyl_section},
            "layer_selection": {"verdict": sel_word, "evidence": _sentence(sel_sentence),
                                "section": selection_section}}


def _sentence(text: str) -> str:
    """``text`` as a sentence: capital first letter, final full stop."""
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
