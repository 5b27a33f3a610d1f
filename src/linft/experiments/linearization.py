"""Chapter 1 (linearization and lazy training): the toy MLP's kernel movement against width and λ, and LoRA
fine-tuning of a language model next to its exact linearization for each λ."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from linft import toy
from linft.device import seed_everything
from linft.experiments.tasks import TaskSetup
from linft.linearize import LinearizedModel, linearization_gap
from linft.plots.linearization import loglog_slope
from linft.scales import Scale
from linft.train import fine_tune

__all__ = ["TOY_SIZES", "ToyStudy", "toy_study", "LinearizationSweep", "real_vs_linearized", "margins"]

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
    """Real vs linearized LoRA fine-tuning for each λ.

    ``logs``: both runs' logs (columns of :func:`linft.train.fine_tune` plus ``lam``, ``kind``); ``outputs``: eval
    margins of each model at its own trained parameters (``lam``, ``margin_real``, ``margin_lin``); ``summary``:
    one row per λ; ``finals``: {λ: {"real", "lin", "own"}} final rows and the own-parameters gap.
    """

    logs: pd.DataFrame
    outputs: pd.DataFrame
    summary: pd.DataFrame
    finals: dict
    seconds: float
    text: dict = field(default_factory=dict)
    headline: dict = field(default_factory=dict)


def real_vs_linearized(setup: TaskSetup, cfg: Scale, lambdas=None, seed: int = 0, gap_n: int = 32,
                       log_every: int | None = None) -> LinearizationSweep:
    """For each λ, train the real model (logging its same-parameters gap) and the linearized model from the same
    start with AdamW + cross-entropy + the anchored penalty; compare them at their own trained parameters."""
    lambdas = tuple(cfg.lambdas if lambdas is None else lambdas)
    gap_n = min(gap_n, cfg.n_train, cfg.n_eval)
    log_every = log_every or max(1, cfg.train_steps // (3 if cfg.name == "smoke" else 5))
    run_kw = dict(loss="ce", optimizer="adamw", lr=cfg.lr, steps=cfg.train_steps, batch_size=cfg.batch_size,
                  anchor="all", seed=seed, log_every=log_every, gap_n=gap_n, progress=False)
    logs, outputs, finals = [], [], {}
    start = time.perf_counter()
    for lam in lambdas:
        seed_everything(seed)
        real = copy.deepcopy(setup.model)
        run_real = fine_tune(real, setup.train, setup.eval, lam=lam,
                             lin_reference=LinearizedModel(copy.deepcopy(setup.model)), **run_kw)
        lin = LinearizedModel(copy.deepcopy(setup.model))
        run_lin = fine_tune(lin, setup.train, setup.eval, lam=lam, **run_kw)
        logs += [run_real.log.assign(lam=lam, kind="real"), run_lin.log.assign(lam=lam, kind="linearized")]
        ids, mask = setup.eval["input_ids"], setup.eval["attention_mask"]
        with torch.no_grad():  # each model at its own trained parameters, on the eval examples
            f_real, f_lin = real(input_ids=ids, attention_mask=mask).logits, lin(ids, mask)
        own = linearization_gap(real, lin, setup.eval, at="own")
        outputs.append(pd.DataFrame({"lam": lam, "margin_real": margins(f_real).numpy(),
                                     "margin_lin": margins(f_lin).numpy()}))
        finals[lam] = {"real": run_real.final, "lin": run_lin.final, "own": own}
    seconds = time.perf_counter() - start
    summary = _summary(finals)
    sweep = LinearizationSweep(pd.concat(logs, ignore_index=True), pd.concat(outputs, ignore_index=True), summary,
                               finals, seconds)
    sweep.text = _sweep_text(summary, cfg, seconds)
    sweep.headline = {
        f"lam={lam:g}": {
            "rel_gap_eval": fin["real"]["rel_gap_eval"], "rel_gap_eval_own": fin["own"]["rel_gap"],
            "agreement_same": fin["real"]["agree_eval"], "agreement_own": fin["own"]["agreement"],
            "eval_acc": fin["real"]["eval_acc"], "eval_acc_linearized": fin["lin"]["eval_acc"],
            "drift": fin["real"]["drift_total"], "drift_bound": _drift_bound(fin["real"]["R0"], lam),
        }
        for lam, fin in finals.items()
    }
    return sweep


def _drift_bound(R0: float, lam: float) -> float:
    return float("inf") if lam == 0 else float(np.sqrt(2 * R0 / lam))


def _summary(finals: dict) -> pd.DataFrame:
    rows = []
    for lam, fin in finals.items():
        rows.append({
            "λ": lam,
            "real: eval acc": fin["real"]["eval_acc"],
            "linearized: eval acc": fin["lin"]["eval_acc"],
            "agreement (own θ)": fin["own"]["agreement"],
            "rel. gap (own θ)": fin["own"]["rel_gap"],
            "agreement (same θ)": fin["real"]["agree_eval"],
            "rel. gap (same θ)": fin["real"]["rel_gap_eval"],
            "drift ‖θ−θ0‖": fin["real"]["drift_total"],
            "√(2R0/λ)": _drift_bound(fin["real"]["R0"], lam),
            "real: s/step": fin["real"]["seconds_per_step"],
            "linearized: s/step": fin["lin"]["seconds_per_step"],
        })
    return pd.DataFrame(rows).set_index("λ")


def _sweep_text(summary: pd.DataFrame, cfg: Scale, seconds: float) -> dict:
    lam0, lam_hi = summary.index.min(), summary.index.max()
    g0, ghi = summary.loc[lam0, "rel. gap (same θ)"], summary.loc[lam_hi, "rel. gap (same θ)"]
    acc = summary["real: eval acc"]
    return {
        "lm_n_train": cfg.n_train, "lm_n_eval": cfg.n_eval, "lm_max_length": cfg.max_length,
        "lm_steps": cfg.train_steps, "lm_batch": cfg.batch_size, "lm_lr": f"{cfg.lr:g}", "lm_seconds": f"{seconds:.0f}",
        "lm_lam0": f"{lam0:g}", "lm_lam_hi": f"{lam_hi:g}", "lm_gap0": f"{g0:.3g}", "lm_gap_hi": f"{ghi:.3g}",
        "lm_gap_ratio": f"{g0 / ghi:.1f}" if ghi > 0 else "∞",
        "lm_agree0": f"{summary.loc[lam0, 'agreement (own θ)']:.0%}",
        "lm_agree_hi": f"{summary.loc[lam_hi, 'agreement (own θ)']:.0%}",
        "lm_acc_real0": f"{acc[lam0]:.1%}", "lm_acc_lin0": f"{summary.loc[lam0, 'linearized: eval acc']:.1%}",
        "lm_acc_real_hi": f"{acc[lam_hi]:.1%}", "lm_acc_lin_hi": f"{summary.loc[lam_hi, 'linearized: eval acc']:.1%}",
        "lm_cost_ratio": f"{(summary['linearized: s/step'] / summary['real: s/step']).mean():.1f}",
        "lm_drift_over": int((summary["drift ‖θ−θ0‖"] > summary["√(2R0/λ)"]).sum()),
        "lm_n_anchored": int((summary.index > 0).sum()),
        "lm_one_example": f"{1 / cfg.n_eval:.1%}",
        "lm_acc_change": f"{acc[lam_hi] - acc[lam0]:+.1%}",
        "lm_gap_monotone": ("falls" if all(np.diff(summary["rel. gap (same θ)"].to_numpy()) <= 0)
                            else "does not fall monotonically"),
    }
