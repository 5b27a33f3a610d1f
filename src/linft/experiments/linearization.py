"""Chapter 1 (linearization and lazy training): the toy MLP's kernel movement against width and λ, and LoRA
fine-tuning of a language model next to its exact linearization for each λ."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from linft import ntk, predict, toy
from linft.batches import apply_in_length_chunks
from linft.device import seed_everything
from linft.experiments.tasks import TaskSetup, prepare_chapter, setup_task
from linft.linearize import LinearizedModel, gap_numbers
from linft.plots.linearization import loglog_slope
from linft.scales import Scale
from linft.stats import bootstrap_ci
from linft.train import fine_tune

__all__ = ["TOY_SIZES", "ToyStudy", "toy_study", "LinearizationSweep", "real_vs_linearized", "SeededSweep",
           "seeded_study", "margins"]

#: widths, seeds and λ of the toy study per scale (other scales use "default")
TOY_SIZES = {
    "smoke": {"widths": (16, 64, 256), "seeds": (0,), "lams": (0.0, 0.5, 5.0)},
    "default": {"widths": (16, 64, 256, 1024), "seeds": (0, 1, 2), "lams": (0.0, 0.05, 0.5, 5.0)},
}


@dataclass
class ToyStudy:
    """Kernel movement of the toy MLP: per-run rows by width (λ = 0) and by λ (fixed width), their seed means."""

    by_width: pd.DataFrame
    by_lam: pd.DataFrame
    width_mean: pd.DataFrame
    lam_mean: pd.DataFrame
    slope: float
    seconds: float
    text: dict = field(default_factory=dict)
    headline: dict = field(default_factory=dict)


def toy_study(scale: str, width_fixed: int = 64) -> ToyStudy:
    """Train the toy MLP at every width (λ = 0) and every λ (width ``width_fixed``) of :data:`TOY_SIZES`."""
    sizes = TOY_SIZES.get(scale, TOY_SIZES["default"])
    start = time.perf_counter()
    by_width = toy.kernel_movement(widths=sizes["widths"], lams=(0.0,), seeds=sizes["seeds"])
    by_lam = toy.kernel_movement(widths=(width_fixed,), lams=sizes["lams"], seeds=sizes["seeds"])
    seconds = time.perf_counter() - start
    width_mean = by_width.groupby("width")[["kernel_change", "rel_drift", "rel_gap_test", "R"]].mean()
    lam_mean = by_lam.groupby("lam")[["kernel_change", "drift", "drift_bound", "rel_gap_test", "R"]].mean()
    slope = loglog_slope(by_width["width"], by_width["kernel_change"])
    w_lo, w_hi = width_mean.index.min(), width_mean.index.max()
    l_lo, l_hi = lam_mean.index.min(), lam_mean.index.max()
    wk, lk = width_mean["kernel_change"], lam_mean["kernel_change"]
    text = {
        "toy_w_lo": int(w_lo), "toy_w_hi": int(w_hi), "toy_slope": f"{slope:.2f}",
        "toy_k_lo": f"{wk[w_lo]:.3g}", "toy_k_hi": f"{wk[w_hi]:.3g}", "toy_width_ratio": f"{wk[w_lo] / wk[w_hi]:.0f}",
        "toy_lam_hi": f"{l_hi:g}", "toy_width_fixed": width_fixed,
        "toy_kl_lo": f"{lk[l_lo]:.3g}", "toy_kl_hi": f"{lk[l_hi]:.3g}",
        "toy_R_lo": f"{lam_mean.loc[l_lo, 'R']:.3f}", "toy_R_hi": f"{lam_mean.loc[l_hi, 'R']:.3f}",
        "toy_seeds": len(sizes["seeds"]), "toy_seconds": f"{seconds:.0f}",
        "toy_g_lo": f"{width_mean.loc[w_lo, 'rel_gap_test']:.3g}",
        "toy_g_hi": f"{width_mean.loc[w_hi, 'rel_gap_test']:.3g}",
        "toy_gl_lo": f"{lam_mean.loc[l_lo, 'rel_gap_test']:.3g}",
        "toy_gl_hi": f"{lam_mean.loc[l_hi, 'rel_gap_test']:.3g}",
        "toy_drift_ok": "every" if (by_lam["drift"] <= by_lam["drift_bound"]).all() else "NOT every",
        "toy_descent_ok": int((pd.concat([by_width, by_lam])["objective_increases"] > 0).sum()),
    }
    headline = {"kernel_change_by_width": wk.to_dict(), "kernel_change_by_lam": lk.to_dict(), "width_slope": slope,
                "width_fixed": width_fixed, "seeds": list(sizes["seeds"])}
    return ToyStudy(by_width, by_lam, width_mean, lam_mean, slope, seconds, text, headline)


def margins(logits: torch.Tensor) -> torch.Tensor:
    """Decision margin per example [N]: f_1 − f_0 for two classes, else the top logit minus the runner-up."""
    if logits.shape[-1] == 2:
        return logits[:, 1] - logits[:, 0]
    top = logits.topk(2, dim=-1).values
    return top[:, 0] - top[:, 1]


@dataclass
class LinearizationSweep:
    """Real vs linearized LoRA fine-tuning for each λ, one seed.

    ``logs``: both runs' logs (columns of :func:`linft.train.fine_tune` plus ``lam``, ``kind``); ``outputs``: held-out
    margins of each model at its own trained parameters (``lam``, ``margin_real``, ``margin_lin``); ``runs``: one row
    per λ (training loss reached, gaps three ways, drift, κ_λ, held-out accuracies); ``correct``: {λ: {"real",
    "lin"}: 0/1 per held-out example} for intervals; ``finals``: {λ: {"real", "lin", "own"}}.
    """

    logs: pd.DataFrame
    outputs: pd.DataFrame
    runs: pd.DataFrame
    correct: dict
    finals: dict
    seconds: float


def real_vs_linearized(setup: TaskSetup, cfg: Scale, lambdas=None, seed: int = 0, gap_n: int = 32,
                       log_every: int | None = None, test: dict | None = None) -> LinearizationSweep:
    """For each λ, train the real model (logging its same-parameters gap) and the linearized model from the same
    start with AdamW + cross-entropy + the anchored penalty on every trained tensor; compare them at their own
    trained parameters on ``test`` (a held-out batch; default ``setup.eval``). κ_λ is of the eNTK of the trained
    parameters (LoRA + head) on the training batch at θ0."""
    lambdas = tuple(cfg.lambdas if lambdas is None else lambdas)
    test = setup.eval if test is None else test
    gap_n = min(gap_n, cfg.n_train, cfg.n_eval)
    log_every = log_every or max(1, cfg.train_steps // (3 if cfg.name == "smoke" else 5))
    run_kw = dict(loss="ce", optimizer="adamw", lr=cfg.lr, steps=cfg.train_steps, batch_size=cfg.batch_size,
                  anchor="all", seed=seed, log_every=log_every, gap_n=gap_n, progress=False)
    K = ntk.empirical_ntk(setup.model, setup.train, params="trainable", per_layer=False)
    logs, outputs, finals, rows, correct = [], [], {}, [], {}
    start = time.perf_counter()
    for lam in lambdas:
        seed_everything(seed)
        real = copy.deepcopy(setup.model)
        run_real = fine_tune(real, setup.train, setup.eval, lam=lam,
                             lin_reference=LinearizedModel(copy.deepcopy(setup.model)), **run_kw)
        lin = LinearizedModel(copy.deepcopy(setup.model))
        run_lin = fine_tune(lin, setup.train, setup.eval, lam=lam, **run_kw)
        logs += [run_real.log.assign(lam=lam, kind="real"), run_lin.log.assign(lam=lam, kind="linearized")]
        f_real, f_lin = _test_logits(real, lin, test)
        own = gap_numbers(f_real, f_lin)  # each model at its own trained parameters (linearization_gap at="own")
        outputs.append(pd.DataFrame({"lam": lam, "margin_real": margins(f_real).numpy(),
                                     "margin_lin": margins(f_lin).numpy()}))
        finals[lam] = {"real": run_real.final, "lin": run_lin.final, "own": own}
        labels = test["labels"]
        correct[lam] = {"real": (f_real.argmax(-1) == labels).double().numpy(),
                        "lin": (f_lin.argmax(-1) == labels).double().numpy()}
        rows.append(_run_row(seed, lam, run_real.final, run_lin.final, own, correct[lam],
                             predict.kappa_lambda(K, lam=lam)))
    return LinearizationSweep(pd.concat(logs, ignore_index=True), pd.concat(outputs, ignore_index=True),
                              pd.DataFrame(rows), correct, finals, time.perf_counter() - start)


@torch.no_grad()
def _test_logits(real, lin: LinearizedModel, test: dict, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [M, C] of the real and the linearized model on ``test``, in length-sorted trimmed chunks (the same
    chunks for both), rows in ``test``'s order."""
    inputs = {k: test[k] for k in ("input_ids", "attention_mask")}
    f_real = apply_in_length_chunks(lambda part: real(**part).logits, inputs, chunk)
    f_lin = apply_in_length_chunks(lambda part: lin(part["input_ids"], part["attention_mask"]), inputs, chunk)
    return f_real, f_lin


def _run_row(seed: int, lam: float, real: dict, lin: dict, own: dict, correct: dict, kappa_lam: float) -> dict:
    return {
        "seed": seed, "lam": lam, "R0": real["R0"], "R_T": real["task_loss"], "R_T_lin": lin["task_loss"],
        "R_T/R0": real["task_loss"] / real["R0"], "rel_gap_eval": real["rel_gap_eval"],
        "rel_change_gap_eval": real.get("rel_change_gap_eval", float("nan")),
        "gap_per_drift2_eval": real.get("gap_per_drift2_eval", float("nan")),
        "agree_same": real["agree_eval"], "agree_own": own["agreement"], "rel_gap_own": own["rel_gap"],
        "acc_real": float(correct["real"].mean()), "acc_lin": float(correct["lin"].mean()),
        "drift": real["drift_total"], "drift_bound": _drift_bound(real["R0"], lam), "kappa_lambda": kappa_lam,
        "s_per_step_real": real["seconds_per_step"], "s_per_step_lin": lin["seconds_per_step"],
    }


@dataclass
class SeededSweep:
    """:func:`real_vs_linearized` over seeds (each varies the data sample, the LoRA init and the head).

    ``runs``: one row per (seed, λ); ``summary``: one row per λ, means over seeds with bootstrap 95 % intervals
    (accuracies: over every held-out example of every seed; gaps: over seeds); ``logs``/``outputs`` carry ``seed``.
    """

    runs: pd.DataFrame
    summary: pd.DataFrame
    logs: pd.DataFrame
    outputs: pd.DataFrame
    seconds: float
    text: dict = field(default_factory=dict)
    headline: dict = field(default_factory=dict)


def seeded_study(task: str, cfg: Scale, seeds=(0,), gap_n: int = 32, n_test: int = 1000) -> SeededSweep:
    """Run :func:`real_vs_linearized` for every seed on ``task`` with its own held-out batch of up to ``n_test``
    validation examples (drawn with the seed), and summarise over seeds."""
    sweeps, start = [], time.perf_counter()
    for seed in seeds:
        setup = setup_task(task, cfg, seed)
        test = prepare_chapter(task, cfg, seed, n_heldout=n_test).heldout  # its own draw of n_test examples
        sweeps.append((seed, real_vs_linearized(setup, cfg, seed=seed, gap_n=gap_n, test=test)))
    runs = pd.concat([sw.runs for _, sw in sweeps], ignore_index=True)
    summary = _seed_summary(runs, sweeps)
    result = SeededSweep(runs, summary, pd.concat([sw.logs.assign(seed=s) for s, sw in sweeps], ignore_index=True),
                         pd.concat([sw.outputs.assign(seed=s) for s, sw in sweeps], ignore_index=True),
                         time.perf_counter() - start)
    result.text = _sweep_text(summary, runs, cfg, result.seconds, len(seeds), int(sweeps[0][1].correct[
        runs["lam"].iloc[0]]["real"].size))
    result.headline = {
        f"lam={lam:g}": {key: row[key] for key in summary.columns} for lam, row in summary.iterrows()
    }
    result.headline["per_seed"] = runs.to_dict(orient="records")
    return result


def _seed_summary(runs: pd.DataFrame, sweeps) -> pd.DataFrame:
    rows = []
    for lam, part in runs.groupby("lam"):
        row = {"λ": lam}
        for kind in ("real", "lin"):
            pooled = np.concatenate([sw.correct[lam][kind] for _, sw in sweeps])
            acc, low, high = bootstrap_ci(pooled)
            row.update({f"acc_{kind}": acc, f"acc_{kind}_low": low, f"acc_{kind}_high": high})
        for column in ("R_T", "R_T/R0", "rel_gap_eval", "rel_change_gap_eval", "gap_per_drift2_eval", "agree_own",
                       "drift", "kappa_lambda"):
            values = part[column].to_numpy(dtype=float)
            finite = values[np.isfinite(values)]
            row[column] = float(finite.mean()) if finite.size else float("nan")
            if column in ("rel_gap_eval", "agree_own") and finite.size:
                _, row[f"{column}_low"], row[f"{column}_high"] = bootstrap_ci(finite)
        row["drift_bound"] = float(part["drift_bound"].mean())
        row["s_per_step_ratio"] = float((part["s_per_step_lin"] / part["s_per_step_real"]).mean())
        rows.append(row)
    return pd.DataFrame(rows).set_index("λ")


def _drift_bound(R0: float, lam: float) -> float:
    return float("inf") if lam == 0 else float(np.sqrt(2 * R0 / lam))


def _sweep_text(summary: pd.DataFrame, runs: pd.DataFrame, cfg: Scale, seconds: float, n_seeds: int,
                n_test: int) -> dict:
    lam0, lam_hi = summary.index.min(), summary.index.max()
    g0, ghi = summary.loc[lam0, "rel_gap_eval"], summary.loc[lam_hi, "rel_gap_eval"]
    acc = summary["acc_real"]
    gaps = runs.pivot(index="seed", columns="lam", values="rel_gap_eval")
    falls = int((gaps.diff(axis=1).iloc[:, 1:] <= 0).all(axis=1).sum())
    anchored = runs[runs["lam"] > 0]

    def interval(column: str, lam: float, fmt: str) -> str:
        return f"[{summary.loc[lam, column + '_low']:{fmt}}, {summary.loc[lam, column + '_high']:{fmt}}]"

    return {
        "lm_n_train": cfg.n_train, "lm_n_eval": n_test, "lm_max_length": cfg.max_length, "lm_seeds": n_seeds,
        "lm_n_pooled": f"{n_test * n_seeds:,}",
        "lm_steps": cfg.train_steps, "lm_batch": cfg.batch_size, "lm_lr": f"{cfg.lr:g}", "lm_seconds": f"{seconds:.0f}",
        "lm_lam0": f"{lam0:g}", "lm_lam_hi": f"{lam_hi:g}", "lm_gap0": f"{g0:.3g}", "lm_gap_hi": f"{ghi:.3g}",
        "lm_gap0_ci": interval("rel_gap_eval", lam0, ".3g"), "lm_gap_hi_ci": interval("rel_gap_eval", lam_hi, ".3g"),
        "lm_gap_ratio": f"{g0 / ghi:.1f}" if ghi > 0 else "∞",
        "lm_loss0": f"{summary.loc[lam0, 'R_T/R0']:.2f}", "lm_loss_hi": f"{summary.loc[lam_hi, 'R_T/R0']:.2f}",
        "lm_agree0": f"{summary.loc[lam0, 'agree_own']:.0%}", "lm_agree_hi": f"{summary.loc[lam_hi, 'agree_own']:.0%}",
        "lm_acc_real0": f"{acc[lam0]:.1%}", "lm_acc_real0_ci": interval("acc_real", lam0, ".1%"),
        "lm_acc_lin0": f"{summary.loc[lam0, 'acc_lin']:.1%}",
        "lm_acc_real_hi": f"{acc[lam_hi]:.1%}", "lm_acc_real_hi_ci": interval("acc_real", lam_hi, ".1%"),
        "lm_acc_lin_hi": f"{summary.loc[lam_hi, 'acc_lin']:.1%}",
        "lm_cost_ratio": f"{summary['s_per_step_ratio'].mean():.1f}",
        "lm_drift_over": int((anchored["drift"] > anchored["drift_bound"]).sum()), "lm_n_anchored": len(anchored),
        "lm_acc_change": f"{acc[lam_hi] - acc[lam0]:+.1%}",
        "lm_gap_falls": falls, "lm_kappa0": f"{summary.loc[lam0, 'kappa_lambda']:.3g}",
        "lm_kappa_hi": f"{summary.loc[lam_hi, 'kappa_lambda']:.3g}",
        "lm_acc_overlap": ("overlap" if summary.loc[lam_hi, "acc_real_high"] >= summary.loc[lam0, "acc_real_low"]
                           and summary.loc[lam0, "acc_real_high"] >= summary.loc[lam_hi, "acc_real_low"]
                           else "do not overlap"),
    }
