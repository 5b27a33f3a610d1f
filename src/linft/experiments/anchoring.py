"""Chapter 2 (the anchored-regularization bound): full-batch gradient descent against the drift and gap bounds,
the Jacobian-Lipschitz estimate the gap bound needs, and the accuracy/linearity trade-off across tasks."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from linft import bound
from linft.batches import take
from linft.device import seed_everything
from linft.experiments.tasks import TaskSetup, setup_task
from linft.scales import Scale
from linft.train import TrainResult, fine_tune

__all__ = ["GDRuns", "gd_runs", "LipschitzStudy", "lipschitz_study", "BoundCheck", "bound_check",
           "Tradeoff", "tradeoff_sweep", "GAP_RATIO_BAR"]

#: the book's bar: anchoring at the largest λ cuts the eval relative gap at least this many times on ≥ 3 tasks
GAP_RATIO_BAR = 5.0


@dataclass
class GDRuns:
    """Full-batch MSE + GD runs, one per λ, on the first ``n`` training examples (``batch``)."""

    runs: dict[float, TrainResult]
    descent: dict[float, int]  # logged steps at which the anchored objective increased
    batch: dict
    lr: float
    seconds: float


def gd_runs(setup: TaskSetup, cfg: Scale, lr: float, gap_n: int, seed: int = 0, lambdas=None) -> GDRuns:
    """Train LoRA + head with squared loss (one-hot targets) and full-batch gradient descent at step ``lr`` for
    every λ, on the ``gap_n`` training examples whose gap is logged."""
    batch = take(setup.train, gap_n)
    log_every = max(1, cfg.train_steps // (2 if cfg.name == "smoke" else 5))
    runs, start = {}, time.perf_counter()
    for lam in tuple(cfg.lambdas if lambdas is None else lambdas):
        seed_everything(seed)
        runs[lam] = fine_tune(copy.deepcopy(setup.model), batch, None, loss="mse", optimizer="gd", lr=lr,
                              steps=cfg.train_steps, batch_size=None, lam=lam, anchor="all", seed=seed,
                              log_every=log_every, gap_n=gap_n, progress=False)
    descent = {lam: bound.descent_violations(run.log["loss"]) for lam, run in runs.items()}
    return GDRuns(runs, descent, batch, lr, time.perf_counter() - start)


@dataclass
class LipschitzStudy:
    """Jacobian-Lipschitz samples around θ0 (random and trajectory directions) and their per-radius curves."""

    samples: pd.DataFrame
    curve_all: pd.DataFrame
    curve_random: pd.DataFrame
    radii: list
    R0: float
    seconds: float
    text: dict = field(default_factory=dict)
    headline: dict = field(default_factory=dict)


def lipschitz_study(setup: TaskSetup, gd: GDRuns, scale: str, seed: int = 0) -> LipschitzStudy:
    """Estimate L on the GD batch at radii from far/300 to 1.05·far (far: the largest drift bound or measured
    drift), along isotropic random directions and along each run's θ_T − θ0."""
    gap_n = gd.batch["input_ids"].shape[0]
    f_gap, theta0 = bound.functional(copy.deepcopy(setup.model), gd.batch)
    trajectories = []
    for run in gd.runs.values():
        trained = dict(run.model.named_parameters())
        delta = {n: trained[n].detach() - run.anchor[n] for n in theta0}
        if sum(float((d**2).sum()) for d in delta.values()) > 0:
            trajectories.append(delta)
    lams = list(gd.runs)
    R0 = float(gd.runs[lams[0]].log["task_loss"].iloc[0])
    far = max([bound.drift_bound(R0, lam) for lam in lams if lam > 0]
              + [float(run.log["drift_total"].max()) for run in gd.runs.values()])
    n_radii, n_random = (4, 2) if scale == "smoke" else (6, 3)
    radii = list(np.geomspace(far / 300, far * 1.05, n_radii))
    start = time.perf_counter()
    random = bound.jacobian_lipschitz(f_gap, theta0, radii, n_samples=n_random, seed=seed).assign(direction="random")
    traj = bound.jacobian_lipschitz(f_gap, theta0, radii, directions=trajectories).assign(
        direction="trajectory θ_T − θ0")
    seconds = time.perf_counter() - start
    samples = pd.concat([random, traj], ignore_index=True)
    study = LipschitzStudy(samples, bound.lipschitz_curve(samples), bound.lipschitz_curve(random), radii, R0, seconds)
    L_rand, L_traj = random["L_jac"].max(), traj["L_jac"].max()
    curve = study.curve_all
    study.text = {
        "lip_r_lo": f"{radii[0]:.2g}", "lip_r_hi": f"{radii[-1]:.2g}", "lip_L_small": f"{curve['max'].iloc[0]:.3g}",
        "lip_L_large": f"{curve['max'].iloc[-1]:.3g}", "lip_rand_max": f"{L_rand:.3g}", "lip_traj_max": f"{L_traj:.3g}",
        "lip_traj_over_rand": f"{L_traj / L_rand:.1f}", "lip_n_random": n_random,
        "lip_n_traj": len(trajectories), "lip_seconds": f"{seconds:.0f}", "lip_gap_n": gap_n,
        "lip_taylor_excess": int((traj["L_taylor"] > traj.groupby("sample")["L_jac"].cummax() * (1 + 1e-3)).sum()),
        "lip_taylor_total": len(traj),
    }
    study.headline = {"radius": curve["radius"].tolist(), "max": curve["max"].tolist(), "mean": curve["mean"].tolist(),
                      "random_max": float(L_rand), "trajectory_max": float(L_traj)}
    return study


@dataclass
class BoundCheck:
    """Every logged step of every GD run next to both bounds (:func:`linft.bound.bound_table`)."""

    tables: pd.DataFrame
    final_view: pd.DataFrame
    violations: pd.DataFrame
    text: dict = field(default_factory=dict)
    headline: dict = field(default_factory=dict)


def bound_check(gd: GDRuns, lip: LipschitzStudy, task: str, steps: int) -> BoundCheck:
    """Count the logged steps (step 0 excluded) where drift or gap exceeds its bound, with L from all directions
    and, for comparison, from the random directions alone."""
    tables = pd.concat([bound.bound_table(run.log, lip.curve_all, lam) for lam, run in gd.runs.items()],
                       ignore_index=True)
    tables_random = pd.concat([bound.bound_table(run.log, lip.curve_random, lam) for lam, run in gd.runs.items()],
                              ignore_index=True)
    checked, checked_random = tables[tables["step"] > 0], tables_random[tables_random["step"] > 0]
    counts = {c: int(checked[c].sum()) for c in ("gap_exceeds_measured", "gap_exceeds_anchored", "drift_exceeds")}
    final = tables.groupby("lam").last()
    view = final[["R", "drift", "drift_bound", "gap", "bound_measured", "bound_anchored"]].copy()
    view["gap / bound_anchored"] = view["gap"] / view["bound_anchored"]
    view["steps that raised F"] = pd.Series(gd.descent)
    violations = checked[checked["gap_exceeds_measured"] | checked["gap_exceeds_anchored"] | checked["drift_exceeds"]]
    lams = list(gd.runs)
    lam0, lam_hi = min(lams), max(lams)
    tightness = {lam: final.loc[lam, "gap"] / final.loc[lam, "bound_anchored"] for lam in lams if lam > 0}
    ratio = final.loc[lam0, "gap"] / final.loc[lam_hi, "gap"] if final.loc[lam_hi, "gap"] > 0 else math.inf
    anchored = checked["lam"] > 0
    text = {
        "gd_task": task, "gd_lr": f"{gd.lr:g}", "gd_steps": steps, "gd_n": gd.batch["input_ids"].shape[0],
        "gd_seconds": f"{gd.seconds:.0f}", "gd_R0": f"{lip.R0:.3f}",
        "gd_descent": ("no run" if sum(gd.descent.values()) == 0
                       else ", ".join(f"λ = {lam:g} ({v} steps)" for lam, v in gd.descent.items() if v)),
        "n_checked": len(checked), "viol_meas": counts["gap_exceeds_measured"],
        "viol_anch": counts["gap_exceeds_anchored"], "viol_drift": counts["drift_exceeds"],
        "viol_meas_rand": int(checked_random["gap_exceeds_measured"].sum()),
        "viol_anch_rand": int(checked_random["gap_exceeds_anchored"].sum()),
        "max_ratio_meas": f"{checked['ratio_measured'].max():.4g}",
        "max_ratio_anch": f"{checked.loc[anchored, 'ratio_anchored'].max():.3g}" if anchored.any() else "n/a",
        "tight_lo": f"{min(tightness.values()):.2g}" if tightness else "n/a",
        "tight_hi": f"{max(tightness.values()):.2g}" if tightness else "n/a",
        "gd_lam0": f"{lam0:g}", "gd_lam_hi": f"{lam_hi:g}", "gd_ratio": f"{ratio:.3g}",
        "gd_gap0": f"{final.loc[lam0, 'gap']:.3g}", "gd_gap_hi": f"{final.loc[lam_hi, 'gap']:.3g}",
    }
    per_lam = {f"lam={lam:g}": {"gap_train": final.loc[lam, "gap"], "rel_gap_train": run.final["rel_gap_train"],
                                "train_acc": run.final["train_acc"], "drift": final.loc[lam, "drift"],
                                "drift_bound": final.loc[lam, "drift_bound"],
                                "bound_measured": final.loc[lam, "bound_measured"],
                                "bound_anchored": final.loc[lam, "bound_anchored"],
                                "objective_increases": gd.descent[lam]}
               for lam, run in gd.runs.items()}
    headline = {"task": task, "setting": "mse+gd full batch", "lr": gd.lr, "R0": lip.R0, "per_lam": per_lam,
                "steps_checked": len(checked), "violations_measured": counts["gap_exceeds_measured"],
                "violations_anchored": counts["gap_exceeds_anchored"], "violations_drift": counts["drift_exceeds"],
                "violations_measured_random_L": text["viol_meas_rand"],
                "violations_anchored_random_L": text["viol_anch_rand"], "gap_ratio": ratio,
                "lipschitz": lip.headline}
    return BoundCheck(tables, view, violations, text, headline)


@dataclass
class Tradeoff:
    """Final eval accuracy, relative gap and drift per (task, λ, plain/selective anchor) of AdamW + CE runs."""

    sweep: pd.DataFrame
    view: pd.DataFrame
    ratios: pd.DataFrame
    seconds: float
    text: dict = field(default_factory=dict)
    headline: dict = field(default_factory=dict)


def tradeoff_sweep(tasks, cfg: Scale, seed: int = 0, gap_n: int = 32, setups: dict | None = None) -> Tradeoff:
    """For every task and λ (plain, and selective for λ > 0), fine-tune with AdamW + cross-entropy + the anchor and
    record the final eval accuracy, the relative gap at the trained parameters and the drift. ``setups`` reuses
    already built :class:`TaskSetup` objects by task."""
    setups = dict(setups or {})
    rows, start = [], time.perf_counter()
    for task in tasks:
        setup = setups.get(task) or setup_task(task, cfg, seed)
        for lam in cfg.lambdas:
            for selective in [False, True] if lam > 0 else [False]:
                seed_everything(seed)
                fin = fine_tune(copy.deepcopy(setup.model), setup.train, setup.eval, loss="ce", optimizer="adamw",
                                lr=cfg.lr, steps=cfg.train_steps, batch_size=cfg.batch_size, lam=lam,
                                selective=selective, anchor="all", seed=seed, log_every=cfg.train_steps or 1,
                                gap_n=gap_n, progress=False).final
                rows.append({"task": task, "lam": lam, "selective": selective, "eval_acc": fin["eval_acc"],
                             "rel_gap_eval": fin["rel_gap_eval"], "agree_eval": fin["agree_eval"],
                             "drift": fin["drift_total"], "drift_bound": bound.drift_bound(fin["R0"], lam),
                             "train_loss": fin["task_loss"], "seconds": fin["seconds"]})
    sweep = pd.DataFrame(rows)
    result = Tradeoff(sweep, *_tradeoff_tables(sweep, tasks, cfg), seconds=time.perf_counter() - start)
    _tradeoff_numbers(result, tasks, cfg)
    return result


def _tradeoff_tables(sweep: pd.DataFrame, tasks, cfg: Scale):
    view = sweep.assign(anchor=np.where(sweep["selective"], "selective", "plain")).pivot_table(
        index=["task", "lam"], columns="anchor", values=["eval_acc", "rel_gap_eval", "drift"])
    plain = sweep[~sweep["selective"]].set_index(["task", "lam"])
    lam0, lam_hi = min(cfg.lambdas), max(cfg.lambdas)
    ratios = pd.DataFrame({
        "gap ratio λ=0 / λ=max": {t: plain.loc[(t, lam0), "rel_gap_eval"] / plain.loc[(t, lam_hi), "rel_gap_eval"]
                                  for t in tasks},
        "accuracy λ=0 − λ=max": {t: plain.loc[(t, lam0), "eval_acc"] - plain.loc[(t, lam_hi), "eval_acc"]
                                 for t in tasks},
    })
    return view, ratios


def _tradeoff_numbers(result: Tradeoff, tasks, cfg: Scale) -> None:
    sweep = result.sweep
    ratios = result.ratios["gap ratio λ=0 / λ=max"].to_dict()
    acc_drop = result.ratios["accuracy λ=0 − λ=max"].to_dict()
    n_pass = sum(r >= GAP_RATIO_BAR for r in ratios.values())
    sel = sweep[sweep["lam"] > 0].pivot_table(index=["task", "lam"], columns="selective", values="rel_gap_eval")
    sel_looser = int((sel[True] > sel[False]).sum()) if True in sel and False in sel else 0
    lam0, lam_hi = min(cfg.lambdas), max(cfg.lambdas)
    result.text = {
        "tr_tasks": ", ".join(tasks), "tr_n_tasks": len(tasks), "tr_lam0": f"{lam0:g}", "tr_lam_hi": f"{lam_hi:g}",
        "tr_ratios": "; ".join(f"{t}: {r:.1f}×" for t, r in ratios.items()),
        "tr_min_ratio": f"{min(ratios.values()):.1f}", "tr_n_pass": int(n_pass), "tr_bar": f"{GAP_RATIO_BAR:g}",
        "tr_verdict": "meets" if n_pass >= 3 else "does NOT meet",
        "tr_acc_drops": "; ".join(f"{t}: {d:+.1%}" for t, d in acc_drop.items()),
        "tr_acc_direction": ("in every task in the direction of the reference study's CoLA example"
                             if all(d > 0 for d in acc_drop.values()) else
                             "not in every task in the direction of the reference study's CoLA example"),
        "tr_one_example": f"{1 / cfg.n_eval:.1%}",
        "tr_sel_looser": sel_looser, "tr_sel_total": len(sel), "tr_seconds": f"{result.seconds:.0f}",
        "tr_steps": cfg.train_steps, "tr_n_train": cfg.n_train, "tr_n_eval": cfg.n_eval,
        "tr_max_length": cfg.max_length, "tr_batch": cfg.batch_size, "tr_lr": f"{cfg.lr:g}",
    }
    result.headline = {
        "tradeoff": {
            task: {f"lam={row.lam:g}" + (",selective" if row.selective else ""): {
                "rel_gap_eval": row.rel_gap_eval, "eval_acc": row.eval_acc, "drift": row.drift,
                "drift_bound": row.drift_bound}
                for row in sweep[sweep["task"] == task].itertuples()}
            for task in tasks
        },
        "gap_ratio_lam0_over_lammax": ratios, "bar": GAP_RATIO_BAR, "tasks_meeting_bar": n_pass,
    }
