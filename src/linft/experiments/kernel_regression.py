"""Is fine-tuning kernel regression? (chapter 3): LoRA fine-tuning of the real model against the prediction of
kernel regression with its empirical NTK at initialization, in the style of Malladi et al. (2023).

Protocol, per task and per λ ∈ {0, anchored}:

- the model is ``cfg.model`` + LoRA with the classifier head **frozen** at its seeded initialization, so the
  trained parameters are exactly the LoRA matrices and the kernel is ``params="lora"``;
- *theory setting*: squared loss on one-hot targets, full-batch gradient descent on N = ``cfg.ntk_n`` training
  examples, step η = c/(μmax/N + λ) (:func:`linft.predict.descent_lr`, c = ``step_fraction``) so every λ respects the
  descent condition of the linearized objective; the SGD kernel predicts the training-loss curve
  (:meth:`linft.predict.KernelRegression.curves`) and the eval outputs after the same number of steps;
- *practice setting*: cross-entropy + AdamW (minibatches) from the same start; its eval predictions are compared
  with kernel regression on the asymmetric SignGD kernel (:func:`linft.predict.asymmetric_regression`), the kernel
  Malladi et al. derive for Adam-style updates, and with the SGD kernel's;
- the kernel's own movement ‖K(θ_T) − K(θ0)‖_F / ‖K(θ0)‖_F on the training examples (lazy regime: small), and the
  share of K(θ_T)'s trace carried by the LoRA A matrices (exactly 0 at θ0, where B = 0).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from linft import kernel_summary, ntk, predict
from linft.bars import AGREEMENT_BAR, LOSS_ERROR_BAR
from linft.device import seed_everything
from linft.experiments.tasks import prepare_chapter
from linft.functional import batch_logits
from linft.scales import Scale
from linft.stats import accuracy_ci, bootstrap_ci
from linft.train import fine_tune

__all__ = ["KRStudy", "kernel_regression_study", "AGREEMENT_BAR", "LOSS_ERROR_BAR"]

# the pass bars are linft.bars' (defined once; re-exported here for the chapters)


@dataclass
class KRStudy:
    """Per (task, λ) rows of the comparison, the measured and predicted loss curves, and the headline numbers."""

    table: pd.DataFrame
    curves: pd.DataFrame
    seconds: float
    text: dict = field(default_factory=dict)
    headline: dict = field(default_factory=dict)


def _relative(a: torch.Tensor, b: torch.Tensor, ref: torch.Tensor) -> float:
    denom = float((ref).norm())
    return float((a - b).norm()) / denom if denom > 0 else float("nan")


def _one_task(task: str, cfg: Scale, lambdas, n_eval: int, seed: int, step_fraction: float, log_every: int):
    run = prepare_chapter(task, cfg, seed, n_train=cfg.ntk_n, n_heldout=n_eval, head="frozen")
    model, train, evalb, num_labels = run.model, run.train, run.heldout, run.num_labels
    K = ntk.empirical_ntk(model, train, params="lora")
    Kx = ntk.empirical_ntk(model, evalb, train, params="lora")
    A = ntk.empirical_ntk(model, train, params="lora", kernel="asym_signgd")
    Ax = ntk.empirical_ntk(model, evalb, train, params="lora", kernel="asym_signgd")
    f0, f0x = K.outputs, Kx.outputs  # f(θ0) from the kernels' own forward passes
    y, yx = train["labels"], evalb["labels"].numpy()
    rows, curves = [], []
    for lam in lambdas:
        kr = predict.KernelRegression.fit(K, y, f0, lam)
        lr = step_fraction * predict.descent_lr(kr.spectrum, lam=lam)
        seed_everything(seed)
        gd = fine_tune(copy.deepcopy(model), train, None, loss="mse", optimizer="gd", lr=lr, steps=cfg.train_steps,
                       lam=lam, seed=seed, log_every=log_every, track_gap=False, progress=False)
        predicted = kr.curves(lr=lr, steps=cfg.train_steps).loss.numpy()
        steps = gd.log["step"].to_numpy()
        measured = gd.log["task_loss"].to_numpy()
        rel_err = np.abs(predicted[steps] - measured) / measured
        curves.append(pd.DataFrame({"task": task, "lam": lam, "step": steps, "measured": measured,
                                    "predicted": predicted[steps]}))
        f_gd = batch_logits(gd.model, evalb)
        f_kr = kr.predict(Kx, f0x, step=cfg.train_steps, lr=lr)
        K_T = ntk.empirical_ntk(gd.model, train, params="lora")
        K_T_A = ntk.empirical_ntk(gd.model, train, params=["lora_A"], per_layer=False)
        seed_everything(seed)
        adam = fine_tune(copy.deepcopy(model), train, evalb, loss="ce", optimizer="adamw", lr=cfg.lr,
                         steps=cfg.train_steps, batch_size=cfg.batch_size, lam=lam, seed=seed,
                         log_every=cfg.train_steps or 1, track_gap=False, progress=False)
        f_adam = batch_logits(adam.model, evalb)
        f_sign = predict.asymmetric_regression(A, Ax, y, f0, f0x, lam)
        f_sgd_limit = kr.predict(Kx, f0x)
        labels = {"gd": f_gd.argmax(1).numpy(), "kr": f_kr.argmax(1).numpy(), "adam": f_adam.argmax(1).numpy(),
                  "sign": f_sign.argmax(1).numpy(), "sgd_limit": f_sgd_limit.argmax(1).numpy()}
        agree = {key: bootstrap_ci((labels[a] == labels[b]).astype(float), seed=seed)
                 for key, (a, b) in {"gd_vs_kr": ("gd", "kr"), "adam_vs_sign": ("adam", "sign"),
                                     "adam_vs_sgd_limit": ("adam", "sgd_limit")}.items()}
        accs = {key: accuracy_ci(labels[key], yx, seed=seed) for key in labels}
        rows.append({
            "task": task, "lam": lam, "N": int(y.shape[0]), "M": int(yx.shape[0]), "C": num_labels,
            "max_length": cfg.max_length, "lr": lr,
            "steps": cfg.train_steps, "kappa_lambda": kernel_summary.from_spectrum(kr.spectrum, lam=lam).kappa_lambda,
            "R0": float(measured[0]), "R_T": float(measured[-1]), "R_T_predicted": float(predicted[-1]),
            "loss_rel_error_mean": float(rel_err[1:].mean()) if len(rel_err) > 1 else float("nan"),
            "loss_rel_error_final": float(rel_err[-1]),
            "descent_violations": int((np.diff(gd.objective) > 1e-6 * measured[0]).sum()),  # every step
            "output_rel_error": _relative(f_gd, f_kr, f_gd - f0x),
            "kernel_change": float((K_T.values - K.values).norm() / K.values.norm()),
            "a_share_T": float(torch.einsum("iicc->", K_T_A.values) / torch.einsum("iicc->", K_T.values)),
            **{f"agree_{k}": v[0] for k, v in agree.items()},
            **{f"agree_{k}_low": v[1] for k, v in agree.items()},
            **{f"agree_{k}_high": v[2] for k, v in agree.items()},
            **{f"acc_{k}": v["acc"] for k, v in accs.items()},
            **{f"acc_{k}_low": v["low"] for k, v in accs.items()},
            **{f"acc_{k}_high": v["high"] for k, v in accs.items()},
            "adam_R_T": float(adam.final["task_loss"]),
        })
    return rows, curves


def kernel_regression_study(tasks, cfg: Scale, lambdas=(0.0, 0.5), *, n_eval: int | None = None, seed: int = 0,
                            step_fraction: float = 1.0, log_every: int | None = None) -> KRStudy:
    """Run the protocol of the module docstring on every task; one row per (task, λ). Sizes: ``cfg.ntk_n`` training
    and ``n_eval`` (default ``cfg.n_eval``, at most the validation split) held-out examples, ``cfg.train_steps`` steps.

    Columns: sizes (N, M, C), the GD step ``lr`` and κ_λ, the measured and predicted training loss (``R0``,
    ``R_T``, ``R_T_predicted``) and the predicted curve's relative error (mean over logged steps after 0, and final),
    descent violations of the logged anchored objective, the eval-output relative error ‖f_GD − f_KR‖/‖f_GD − f0‖,
    the kernel's relative movement, label agreement (GD vs SGD-kernel prediction; AdamW vs SignGD-kernel and
    vs SGD-kernel limits) and accuracies, each with a bootstrap 95 % interval over eval examples.
    """
    log_every = log_every or max(1, cfg.train_steps // 10)
    n_eval = n_eval or cfg.n_eval
    rows, curves, start = [], [], time.perf_counter()
    for task in tasks:
        task_rows, task_curves = _one_task(task, cfg, lambdas, n_eval, seed, step_fraction, log_every)
        rows += task_rows
        curves += task_curves
    study = KRStudy(pd.DataFrame(rows), pd.concat(curves, ignore_index=True), time.perf_counter() - start)
    _numbers(study, lambdas)
    return study


def _numbers(study: KRStudy, lambdas) -> None:
    t = study.table
    agree_pass = int((t["agree_gd_vs_kr"] >= AGREEMENT_BAR).sum())
    loss_pass = int((t["loss_rel_error_mean"] <= LOSS_ERROR_BAR).sum())
    n = len(t)
    study.text = {
        "kr_tasks": ", ".join(dict.fromkeys(t["task"])), "kr_n_rows": n, "kr_N": int(t["N"].iloc[0]),
        "kr_max_length": int(t["max_length"].iloc[0]),
        "kr_M": f"{int(t['M'].min())}–{int(t['M'].max())}" if t["M"].nunique() > 1 else str(int(t["M"].iloc[0])),
        "kr_steps": int(t["steps"].iloc[0]), "kr_lams": ", ".join(f"{lam:g}" for lam in lambdas),
        "kr_agree_bar": f"{AGREEMENT_BAR:.0%}", "kr_loss_bar": f"{LOSS_ERROR_BAR:.0%}",
        "kr_agree_pass": agree_pass, "kr_loss_pass": loss_pass,
        "kr_agree_lo": f"{t['agree_gd_vs_kr'].min():.1%}", "kr_agree_hi": f"{t['agree_gd_vs_kr'].max():.1%}",
        "kr_loss_err_lo": f"{t['loss_rel_error_mean'].min():.1%}",
        "kr_loss_err_hi": f"{t['loss_rel_error_mean'].max():.1%}",
        "kr_sign_lo": f"{t['agree_adam_vs_sign'].min():.1%}", "kr_sign_hi": f"{t['agree_adam_vs_sign'].max():.1%}",
        "kr_kchange_lo": f"{t['kernel_change'].min():.2g}", "kr_kchange_hi": f"{t['kernel_change'].max():.2g}",
        "kr_descent": int(t["descent_violations"].sum()),
        "kr_a_share_lo": f"{t['a_share_T'].min():.1%}", "kr_a_share_hi": f"{t['a_share_T'].max():.1%}",
        "kr_verdict": ("holds" if agree_pass == n and loss_pass == n else
                       "does not hold" if agree_pass == 0 and loss_pass == 0 else "holds only in part"),
    }
    study.headline = {
        "rows": t.to_dict(orient="records"), "agreement_bar": AGREEMENT_BAR, "loss_error_bar": LOSS_ERROR_BAR,
        "rows_meeting_agreement_bar": agree_pass, "rows_meeting_loss_bar": loss_pass,
        "verdict": study.text["kr_verdict"], "seconds": study.seconds,
    }
