"""Chapter 2 (the anchored-regularization bound): full-batch gradient descent against the drift and gap bounds,
the Jacobian-Lipschitz estimate the gap bound needs, and the accuracy/linearity trade-off across tasks.

The plan, the GD runs and the Lipschitz estimate live in :mod:`linft.experiments.anchoring_runs` (re-exported here,
so ``anchoring.<name>`` keeps working); this module checks the bounds on those runs and studies the trade-off."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from linft import bound
from linft.batches import take
from linft.device import seed_everything
from linft.experiments.anchoring_runs import (
    BOUND_RTOL,
    DESCENT_RTOL,
    DIRECTION_KINDS,
    GAP_RATIO_BAR,
    PLANS,
    SUBSETS,
    TIME_BUDGET,
    GDRuns,
    GDSeeds,
    HeldOutLipschitz,
    Plan,
    gd_runs,
    gd_seeds,
    lipschitz_held_out,
    plan_for,
    plan_text,
    styled,
    task_setups,
)
from linft.functional import batch_logits
from linft.linearize import LinearizedModel
from linft.scales import Scale
from linft.stats import hierarchical_ci, verdict
from linft.train import fine_tune

__all__ = ["GDRuns", "gd_runs", "GAP_RATIO_BAR", "DESCENT_RTOL", "Plan", "PLANS", "plan_for", "task_setups",
           "GDSeeds", "gd_seeds", "DIRECTION_KINDS", "SUBSETS", "HeldOutLipschitz", "lipschitz_held_out",
           "BOUND_RTOL", "plan_text", "TIME_BUDGET", "styled", "BoundCheckSeeds", "bound_check_seeds",
           "TradeoffSeeds", "tradeoff_seeds"]


def _ci(est, low, high, digits=3, pct=False) -> str:
    est, low, high = est + 0.0, low + 0.0, high + 0.0  # no "-0"
    if pct:
        return f"{est:.1%} [{low:.1%}, {high:.1%}]"
    return f"{est:.{digits}g} [{low:.{digits}g}, {high:.{digits}g}]"


def _signed(est, low, high) -> str:
    """An accuracy difference with its interval, in percentage points of accuracy: "+1.2% [−0.5%, +3.0%]"."""
    est, low, high = est + 0.0, low + 0.0, high + 0.0
    return f"{est:+.1%} [{low:+.1%}, {high:+.1%}]"


@dataclass
class BoundCheckSeeds:
    """Every step of every (seed, λ) GD run next to both bounds, with L held out (:func:`bound_check_seeds`)."""

    tables: pd.DataFrame  # bound_table rows (every step), plus seed, lr, rel_gap, rel_change_gap, gap_per_drift2
    final: pd.DataFrame  # last step per (seed, λ): η, R0, R_T, R_T/R0, the gap three ways, bounds, F rises
    summary: pd.DataFrame  # per λ, mean over seeds of the final values
    ratios: pd.DataFrame  # per seed: λ0 / λmax ratios of the gap measures, and R_T/R0 at both
    violations: pd.DataFrame  # every checked step where a measured value exceeds its bound
    increases: pd.DataFrame  # every step where the anchored objective rose
    text: dict = field(default_factory=dict)
    headline: dict = field(default_factory=dict)
    by_directions: pd.DataFrame = field(default_factory=pd.DataFrame)  # violations with L from direction subsets
    objectives: pd.DataFrame = field(default_factory=pd.DataFrame)  # F at every step: seed, lam, step, objective


_GAPS = {"gap": "‖f − f_lin‖", "rel_gap": "‖f − f_lin‖/‖f‖", "rel_change_gap": "‖f − f_lin‖/‖f − f0‖",
         "gap_per_drift2": "‖f − f_lin‖/drift²"}


def bound_check_seeds(gds: GDSeeds, lip: HeldOutLipschitz) -> BoundCheckSeeds:
    """Check every logged step (step 0 excluded) of every seed's and λ's run against the drift bound and both gap
    bounds, with L for seed s from :attr:`HeldOutLipschitz.curves` ``[s]`` (held-out directions), and count the
    steps where the anchored objective rose (every step of ``TrainResult.objective``)."""
    frames, frames_random, objectives = [], [], []
    for seed, gd in gds.runs.items():
        for lam, run in gd.runs.items():
            extra = {"seed": seed, "lr": gd.lr_of(lam), "kappa_lambda": gd.kappa_lambda.get(lam, float("nan")),
                     "rel_gap": run.log["rel_gap_train"].to_numpy(),
                     "rel_change_gap": run.log["rel_change_gap_train"].to_numpy(),
                     "gap_per_drift2": run.log["gap_per_drift2_train"].to_numpy()}
            frames.append(bound.bound_table(run.log, lip.curves[seed], lam, rtol=BOUND_RTOL).assign(**extra))
            frames_random.append(bound.bound_table(run.log, lip.curves_random[seed], lam, rtol=BOUND_RTOL)
                                 .assign(seed=seed))
            objectives.append(pd.DataFrame({"seed": seed, "lam": lam, "step": np.arange(len(run.objective)),
                                            "objective": run.objective}))
    tables = pd.concat(frames, ignore_index=True)
    rand = pd.concat(frames_random, ignore_index=True)
    checked, checked_rand = tables[tables["step"] > 0], rand[rand["step"] > 0]
    by_directions = []
    for name, curves in lip.subsets.items():
        sub = pd.concat([bound.bound_table(run.log, curves[seed], lam, rtol=BOUND_RTOL) for seed, gd in gds.runs.items()
                         for lam, run in gd.runs.items() if seed in curves], ignore_index=True)
        sub = sub[sub["step"] > 0]
        by_directions.append({"L from": name, "steps checked": len(sub),
                              "gap > (L/2)·drift²": int(sub["gap_exceeds_measured"].sum()),
                              "gap > L·R0/λ": int(sub["gap_exceeds_anchored"].sum()),
                              "max gap / ((L/2)·drift²)": sub["ratio_measured"].max(),
                              "L at the largest radius (max over seeds)": max(c["max"].max() for c in curves.values())})
    flags = ["gap_exceeds_measured", "gap_exceeds_anchored", "drift_exceeds"]
    violations = checked[checked[flags].any(axis=1)]
    increases = pd.concat([gd.increases for gd in gds.runs.values()], ignore_index=True)
    # the last logged row of each run as it is (groupby().last() would fill a NaN from an earlier step)
    final = tables.sort_values("step", kind="stable").groupby(["seed", "lam"]).tail(1)
    final = final.sort_values(["seed", "lam"]).reset_index(drop=True)
    R0 = tables[tables["step"] == 0].set_index(["seed", "lam"])["R"]
    final["R0"] = final.set_index(["seed", "lam"]).index.map(R0)
    final["R_T/R0"] = final["R"] / final["R0"]
    final["gap / bound_anchored"] = final["gap"] / final["bound_anchored"]
    final["F rises"] = [gds.runs[s].descent[lam] for s, lam in zip(final["seed"], final["lam"])]
    final = final.rename(columns={"R": "R_T"})
    columns = ["seed", "lam", "lr", "kappa_lambda", "R0", "R_T", "R_T/R0", "drift", "drift_bound", *_GAPS,
               "bound_measured",
               "bound_anchored", "gap / bound_anchored", "F rises"]
    final = final[columns]
    summary = final.drop(columns="seed").groupby("lam").mean()
    lams = sorted(final["lam"].unique())
    lam0, lam_hi = lams[0], lams[-1]
    rows = []
    for seed, part in final.groupby("seed"):
        part = part.set_index("lam")
        row = {"seed": seed, f"R_T/R0 λ={lam0:g}": part.loc[lam0, "R_T/R0"],
               f"R_T/R0 λ={lam_hi:g}": part.loc[lam_hi, "R_T/R0"]}
        row.update({f"{label} ratio": part.loc[lam0, key] / part.loc[lam_hi, key] for key, label in _GAPS.items()})
        rows.append(row)
    ratios = pd.DataFrame(rows).set_index("seed")
    result = BoundCheckSeeds(tables, final, summary, ratios, violations, increases,
                             by_directions=pd.DataFrame(by_directions).set_index("L from"),
                             objectives=pd.concat(objectives, ignore_index=True))
    _bound_numbers(result, gds, checked, checked_rand, lam0, lam_hi)
    return result


def _margin_words(n_violations: int, max_ratio: float) -> str:
    """How the measured gap sits under the a-posteriori bound, in words computed from the numbers."""
    if n_violations:
        return "the bound fails at some steps even with L from the worst directions found"
    if max_ratio < 0.1:
        return "the bound holds with a wide margin: valid here, and loose (the measured gap stays under a tenth of it)"
    return "the bound holds, and the measured gap comes within a factor of ten of it"


def _bound_numbers(result: BoundCheckSeeds, gds: GDSeeds, checked, checked_rand, lam0, lam_hi) -> None:
    counts = {c: int(checked[c].sum()) for c in ("gap_exceeds_measured", "gap_exceeds_anchored", "drift_exceeds")}
    n_viol = int(checked[list(counts)].any(axis=1).sum())
    objective_steps = sum(len(run.objective) - 1 for gd in gds.runs.values() for run in gd.runs.values())
    rises = [np.diff(run.objective) / np.maximum(np.abs(run.objective[:-1]), 1e-12)
             for gd in gds.runs.values() for run in gd.runs.values()]
    max_rise = max(float(r.max()) for r in rises)
    n_rises = len(result.increases)
    anchored = checked["lam"] > 0
    final, summary, ratios = result.final, result.summary, result.ratios
    tight = final[final["lam"] > 0]["gap / bound_anchored"]
    first = next(iter(gds.runs.values()))
    result.text = {
        "gd_task": gds.task, "gd_n": first.batch["input_ids"].shape[0],
        "gd_steps": int(first.runs[lam0].config.steps), "gd_n_seeds": len(gds.runs),
        "gd_c": f"{first.c:g}", "gd_beta": ", ".join(f"{gd.beta:.3g}" for gd in gds.runs.values()),
        "gd_lrs": "; ".join(f"λ = {lam:g}: {summary.loc[lam, 'lr']:.3g}" for lam in summary.index),
        "gd_eta_lam_hi": f"{summary.loc[lam_hi, 'lr'] * lam_hi:.2f}",
        "gd_seconds": f"{gds.seconds:.0f}",
        "gd_R0": ", ".join(f"{v:.3f}" for v in final.groupby("seed")["R0"].first()),
        "obj_steps": objective_steps, "obj_rises": n_rises, "obj_rtol": f"{DESCENT_RTOL:g}",
        "obj_max_rise": f"{max_rise:.2g}",
        "obj_max_rise_note": ("negative: F fell at every step" if max_rise < 0 else
                              "positive, but within the tolerance" if n_rises == 0 else "above the tolerance"),
        "obj_verdict": verdict(objective_steps - n_rises, objective_steps, all_word="held at every step",
                               some_word="failed at some steps", none_word="failed at every step"),
        "n_checked": len(checked), "viol_meas": counts["gap_exceeds_measured"],
        "viol_anch": counts["gap_exceeds_anchored"], "viol_drift": counts["drift_exceeds"], "viol_any": n_viol,
        "viol_meas_rand": int(checked_rand["gap_exceeds_measured"].sum()),
        "viol_anch_rand": int(checked_rand["gap_exceeds_anchored"].sum()),
        "bound_verdict": verdict(len(checked) - n_viol, len(checked), all_word="held at every checked step",
                                 some_word="failed at some checked steps", none_word="failed at every checked step"),
        "max_ratio_meas": f"{checked['ratio_measured'].max():.3g}",
        "max_ratio_anch": f"{checked.loc[anchored, 'ratio_anchored'].max():.3g}" if anchored.any() else "n/a",
        "bound_margin": _margin_words(n_viol, float(checked["ratio_measured"].max())),
        "gd_fit_note": ("the strongly anchored runs settle near θ0 and barely fit their training examples"
                        if summary.loc[lam_hi, "R_T/R0"] > 0.8 else
                        "the strongly anchored runs still lower their training loss substantially"),
        "tight_lo": f"{tight.min():.2g}" if len(tight) else "n/a",
        "tight_hi": f"{tight.max():.2g}" if len(tight) else "n/a",
        "gd_lam0": f"{lam0:g}", "gd_lam_hi": f"{lam_hi:g}",
        "gd_RT0": f"{summary.loc[lam0, 'R_T/R0']:.2f}", "gd_RT_hi": f"{summary.loc[lam_hi, 'R_T/R0']:.2f}",
        "gd_kappa0": f"{summary.loc[lam0, 'kappa_lambda']:.3g}",
        "gd_kappa_hi": f"{summary.loc[lam_hi, 'kappa_lambda']:.3g}",
    }
    for key, label in _GAPS.items():
        values = ratios[f"{label} ratio"]
        result.text[f"gd_ratio_{key}"] = f"{np.exp(np.log(values).mean()):.3g} ({values.min():.3g}–{values.max():.3g})"
    per_lam = {f"lam={lam:g}": {k: summary.loc[lam, k] for k in ["lr", "kappa_lambda", "R0", "R_T", "R_T/R0", "drift",
                                                                 "drift_bound",
                                                                 *_GAPS, "bound_measured", "bound_anchored",
                                                                 "F rises"]}
               for lam in summary.index}
    keys = ["lr", "kappa_lambda", "R0", "R_T", "R_T/R0", "drift", "drift_bound", *_GAPS, "bound_measured",
            "bound_anchored", "F rises"]
    per_run = {f"seed={int(row['seed'])},lam={row['lam']:g}": {k: row[k] for k in keys}
               for row in final.to_dict("records")}
    result.headline = {
        "task": gds.task, "setting": "mse+gd full batch, anchor=all, η_λ = c/(β̂ + λ)", "c": first.c,
        "beta_hat": {int(s): gd.beta for s, gd in gds.runs.items()}, "per_lam_mean_over_seeds": per_lam,
        "per_run": per_run, "ratios_lam0_over_lammax": ratios.reset_index().to_dict("records"),
        "steps_checked": len(checked), "violations_measured": counts["gap_exceeds_measured"],
        "violations_anchored": counts["gap_exceeds_anchored"], "violations_drift": counts["drift_exceeds"],
        "violations_measured_random_L": result.text["viol_meas_rand"],
        "violations_anchored_random_L": result.text["viol_anch_rand"],
        "violation_rows": result.violations[["seed", "lam", "step", "drift", "gap", "bound_measured",
                                             "bound_anchored"]].to_dict("records"),
        "violations_by_L_directions": result.by_directions.reset_index().to_dict("records"),
        "objective_steps_checked": objective_steps, "objective_rises": n_rises,
        "objective_rise_rows": result.increases.to_dict("records"), "objective_max_rel_rise": max_rise,
    }


# ---------------------------------------------------------------------------------------------- trade-off


@dataclass
class TradeoffSeeds:
    """AdamW + cross-entropy runs per (task, seed, λ, anchor), summarized over seeds with bootstrap intervals."""

    runs: pd.DataFrame  # one row per run
    summary: pd.DataFrame  # per (task, λ, anchor)
    ratios: pd.DataFrame  # per (task, anchor): rel-gap ratio λ0/λmax and accuracy change λ0 − λmax, with intervals
    anchors: pd.DataFrame  # per (task, λ > 0): accuracy lora − all and rel-gap ratio all/lora, with intervals
    seconds: float
    text: dict = field(default_factory=dict)
    headline: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict, repr=False)  # (task, seed, λ, anchor) → per-example arrays


def tradeoff_seeds(tasks, cfg: Scale, plan: Plan, setups: dict | None = None) -> TradeoffSeeds:
    """For every task, seed of ``plan.sweep_seeds`` and λ of ``plan.sweep_lambdas`` (for λ > 0, once per anchor of
    ``plan.anchors``: ``"all"`` pulls every trained tensor, head included; ``"lora"`` pulls the LoRA matrices
    only and lets the head train freely), fine-tune with AdamW + cross-entropy + the anchor (``cfg.lr``,
    ``cfg.batch_size``, ``plan.sweep_steps`` steps) and record per example: correctness on min(``plan.sweep_eval``,
    validation size) eval examples, and on the first ``plan.gap_n`` of them ‖f − f_lin‖², ‖f‖² and ‖f − f0‖² at
    the trained parameters (f_lin: the linearization at the seed's θ0). ``setups``: already built setups by
    ``(task, seed)``."""
    setups = dict(setups or {})
    rows, arrays, start = [], {}, time.perf_counter()
    for task in tasks:
        for seed in plan.sweep_seeds:
            setup = setups.pop((task, seed), None) or task_setups(task, cfg, [seed], plan.sweep_eval)[seed]
            reference = LinearizedModel(setup.model)
            gap_batch = take(setup.eval, plan.gap_n)
            with torch.no_grad():
                f0 = reference.base_logits(gap_batch).double()
            labels = setup.eval["labels"].numpy()
            for lam in plan.sweep_lambdas:
                for anchor in (plan.anchors if lam > 0 else ("none",)):
                    seed_everything(seed)
                    run = fine_tune(copy.deepcopy(setup.model), setup.train, None, loss="ce", optimizer="adamw",
                                    lr=cfg.lr, steps=plan.sweep_steps, batch_size=cfg.batch_size, lam=lam,
                                    anchor="all" if anchor == "none" else anchor, seed=seed,
                                    log_every=max(plan.sweep_steps, 1), track_gap=False, progress=False)
                    tic = time.perf_counter()
                    run.model.eval()  # dropout off for the linearization below too
                    logits = batch_logits(run.model, setup.eval)
                    eval_seconds = time.perf_counter() - tic
                    with torch.no_grad():
                        lin = reference(gap_batch, params=run.model).double()
                    f = logits[: lin.shape[0]]
                    arr = {"correct": (logits.argmax(-1).numpy() == labels).astype(np.float64),
                           "gap2": ((f - lin) ** 2).sum(-1).numpy(), "f2": (f**2).sum(-1).numpy(),
                           "change2": ((f - f0) ** 2).sum(-1).numpy()}
                    arrays[(task, seed, lam, anchor)] = arr
                    fin = run.final
                    gap = math.sqrt(arr["gap2"].sum())
                    rows.append({"task": task, "seed": seed, "lam": lam, "anchor": anchor,
                                 "eval_acc": arr["correct"].mean(), "n_eval": len(labels), "gap": gap,
                                 "rel_gap": gap / math.sqrt(arr["f2"].sum()),
                                 "rel_change_gap": gap / math.sqrt(arr["change2"].sum()),
                                 "gap_per_drift2": gap / fin["drift_total"] ** 2 if fin["drift_total"] > 0
                                 else float("nan"),
                                 "drift": fin["drift_total"], "drift_bound": bound.drift_bound(fin["R0"], lam),
                                 "R0": fin["R0"], "R_T": fin["task_loss"], "R_T/R0": fin["task_loss"] / fin["R0"],
                                 "train_acc": fin["train_acc"], "seconds": fin["seconds"],
                                 "eval_seconds": eval_seconds})
            del reference, setup
    runs = pd.DataFrame(rows)
    result = TradeoffSeeds(runs, *_tradeoff_seed_tables(runs, arrays, plan), seconds=time.perf_counter() - start,
                           arrays=arrays)
    _tradeoff_seed_numbers(result, list(tasks), plan)
    return result


def _rel_gap_ratio(a: np.ndarray) -> float:
    """Columns gap²_a, f²_a, gap²_b, f²_b per example → (‖gap_a‖/‖f_a‖) / (‖gap_b‖/‖f_b‖)."""
    return math.sqrt(a[:, 0].sum() / a[:, 1].sum()) / math.sqrt(a[:, 2].sum() / a[:, 3].sum())


def _paired_diff(a: np.ndarray) -> float:
    return float((a[:, 0] - a[:, 1]).mean())


def _tradeoff_seed_tables(runs: pd.DataFrame, arrays: dict, plan: Plan):
    lams = plan.sweep_lambdas
    lam0, lam_hi = min(lams), max(lams)
    rows = []
    for (task, lam, anchor), part in runs.groupby(["task", "lam", "anchor"], sort=False):
        acc = hierarchical_ci([arrays[(task, s, lam, anchor)]["correct"] for s in part["seed"]])
        rows.append({"task": task, "lam": lam, "anchor": anchor, "acc": acc[0], "acc_low": acc[1],
                     "acc_high": acc[2], **part[["rel_gap", "rel_change_gap", "gap_per_drift2", "drift", "R_T",
                                                 "R_T/R0"]].mean().to_dict(), "seeds": len(part)})
    summary = pd.DataFrame(rows)
    seeds = plan.sweep_seeds
    ratio_rows, anchor_rows = [], []
    for task in dict.fromkeys(runs["task"]):
        for anchor in plan.anchors:
            if lam_hi == lam0:
                break
            a0 = [arrays[(task, s, lam0, "none" if lam0 == 0 else anchor)] for s in seeds]
            ah = [arrays[(task, s, lam_hi, anchor)] for s in seeds]
            gaps = [np.column_stack([x["gap2"], x["f2"], y["gap2"], y["f2"]]) for x, y in zip(a0, ah)]
            accs = [np.column_stack([x["correct"], y["correct"]]) for x, y in zip(a0, ah)]
            g, d = hierarchical_ci(gaps, _rel_gap_ratio, log=True), hierarchical_ci(accs, _paired_diff)
            ratio_rows.append({"task": task, "anchor": anchor, "gap_ratio": g[0], "gap_ratio_low": g[1],
                               "gap_ratio_high": g[2], "acc_change": 0.0 - d[0], "acc_change_low": 0.0 - d[2],
                               "acc_change_high": 0.0 - d[1], "passes_gap_bar": bool(g[1] >= GAP_RATIO_BAR)})
        if "all" in plan.anchors and "lora" in plan.anchors:
            for lam in (v for v in lams if v > 0):
                al = [arrays[(task, s, lam, "lora")] for s in seeds]
                aa = [arrays[(task, s, lam, "all")] for s in seeds]
                d = hierarchical_ci([np.column_stack([x["correct"], y["correct"]]) for x, y in zip(al, aa)],
                                    _paired_diff)
                g = hierarchical_ci([np.column_stack([y["gap2"], y["f2"], x["gap2"], x["f2"]]) for x, y in zip(al, aa)],
                                    _rel_gap_ratio, log=True)
                anchor_rows.append({"task": task, "lam": lam, "acc_lora_minus_all": d[0], "low": d[1], "high": d[2],
                                    "rel_gap_all_over_lora": g[0], "ratio_low": g[1], "ratio_high": g[2]})
    return summary, pd.DataFrame(ratio_rows), pd.DataFrame(anchor_rows)


def _tradeoff_seed_numbers(result: TradeoffSeeds, tasks: list, plan: Plan) -> None:
    ratios, anchors, runs = result.ratios, result.anchors, result.runs
    lam0, lam_hi = min(plan.sweep_lambdas), max(plan.sweep_lambdas)
    text = {"tr_tasks": ", ".join(tasks), "tr_n_tasks": len(tasks), "tr_lam0": f"{lam0:g}", "tr_lam_hi": f"{lam_hi:g}",
            "tr_n_seeds": len(plan.sweep_seeds), "tr_seconds": f"{result.seconds:.0f}",
            "tr_n_runs": len(runs), "tr_steps": plan.sweep_steps,
            "tr_n_eval": ", ".join(f"{t}: {n}" for t, n in runs.groupby("task", sort=False)["n_eval"].first().items()),
            "tr_gap_n": plan.gap_n, "tr_run_seconds": f"{runs['seconds'].mean():.1f}",
            "tr_eval_seconds": f"{runs['eval_seconds'].mean():.1f}"}
    headline = {"tradeoff_summary": result.summary.to_dict("records"), "bar": GAP_RATIO_BAR}
    for anchor in plan.anchors:
        part = ratios[ratios["anchor"] == anchor] if len(ratios) else ratios
        n_pass = int(part["passes_gap_bar"].sum()) if len(part) else 0
        cost = int((part["acc_change_high"] < 0).sum()) if len(part) else 0  # accuracy fell, interval below 0
        gain = int((part["acc_change_low"] > 0).sum()) if len(part) else 0
        text[f"tr_{anchor}_ratios"] = "; ".join(f"{r.task}: {_ci(r.gap_ratio, r.gap_ratio_low, r.gap_ratio_high)}×"
                                                for r in part.itertuples())
        text[f"tr_{anchor}_acc"] = "; ".join(
            f"{r.task}: {_signed(r.acc_change, r.acc_change_low, r.acc_change_high)}" for r in part.itertuples())
        text[f"tr_{anchor}_n_pass"] = n_pass
        text[f"tr_{anchor}_gap_verdict"] = verdict(n_pass, len(part), all_word="met on every task",
                                                   some_word="met on some tasks", none_word="not met on any task")
        text[f"tr_{anchor}_n_cost"], text[f"tr_{anchor}_n_gain"] = cost, gain
        text[f"tr_{anchor}_cost_verdict"] = verdict(cost, len(part), all_word="on every task",
                                                    some_word="on some tasks", none_word="on no task")
        headline[f"gap_ratio_lam0_over_lammax_{anchor}"] = {r.task: [r.gap_ratio, r.gap_ratio_low, r.gap_ratio_high]
                                                           for r in part.itertuples()}
        headline[f"acc_change_lam0_to_lammax_{anchor}"] = {
            r.task: [r.acc_change, r.acc_change_low, r.acc_change_high] for r in part.itertuples()}
        headline[f"tasks_meeting_bar_{anchor}"] = n_pass
    if len(anchors):
        top = anchors[anchors["lam"] == lam_hi]
        better = int((top["low"] > 0).sum())
        worse = int((top["high"] < 0).sum())
        text.update({
            "tr_lora_better": better, "tr_lora_worse": worse, "tr_anchor_tasks": len(top),
            "tr_lora_vs_all_verdict": verdict(better, len(top), all_word="on every task", some_word="on some tasks",
                                       none_word="on no task"),
            "tr_lora_diffs": "; ".join(f"{r.task}: {_signed(r.acc_lora_minus_all, r.low, r.high)}"
                                       for r in top.itertuples()),
        })
        headline["acc_lora_minus_all"] = anchors.to_dict("records")
    text["tr_one_example"] = f"{1 / runs['n_eval'].max():.2%}"
    result.text, result.headline = text, headline
