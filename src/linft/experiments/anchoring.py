"""Chapter 2 (the anchored-regularization bound): full-batch gradient descent against the drift and gap bounds,
the Jacobian-Lipschitz estimate the gap bound needs, and the accuracy/linearity trade-off across tasks."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from linft import LinftError, bound, check_positive_int, data
from linft.batches import take
from linft.device import seed_everything
from linft.experiments.tasks import TaskSetup, setup_task
from linft.functional import batch_logits
from linft.linearize import LinearizedModel
from linft.scales import Scale
from linft.stats import hierarchical_ci, verdict
from linft.train import TrainResult, fine_tune, gd_step_size

__all__ = ["GDRuns", "gd_runs", "GAP_RATIO_BAR", "DESCENT_RTOL", "Plan", "PLANS", "plan_for", "task_setups",
           "GDSeeds", "gd_seeds", "DIRECTION_KINDS", "SUBSETS", "HeldOutLipschitz", "lipschitz_held_out",
           "BoundCheckSeeds", "BOUND_RTOL", "plan_text", "TIME_BUDGET", "styled",
           "bound_check_seeds", "TradeoffSeeds",
           "tradeoff_seeds"]

#: the book's bar: anchoring at the largest λ cuts the eval relative gap at least this many times (per task; the
#: seeds protocol asks the lower end of the 95 % interval to reach it)
GAP_RATIO_BAR = 5.0


@dataclass
class GDRuns:
    """Full-batch MSE + GD runs, one per λ, on the first ``n`` training examples (``batch``), logged at every step."""

    runs: dict[float, TrainResult]
    descent: dict[float, int]  # steps at which the anchored objective increased (every step, TrainResult.objective)
    batch: dict
    lr: float | dict  # one step for every λ, or η_λ by λ
    seconds: float
    beta: float = float("nan")  # β̂ = μmax/N at θ0 (gd_step_size), when the steps are η_λ = c/(β̂ + λ)
    c: float = float("nan")
    seed: int = 0
    increases: pd.DataFrame = field(default_factory=pd.DataFrame)  # every rise of F: lam, step, rise, rel_rise
    kappa_lambda: dict = field(default_factory=dict)  # κ_λ = (μmax + Nλ)/(μmin + Nλ) of the trained eNTK at θ0, by λ

    def lr_of(self, lam: float) -> float:
        """The step size the run at ``lam`` used."""
        return float(self.lr[lam]) if isinstance(self.lr, dict) else float(self.lr)


#: relative tolerance of a rise of the anchored objective (float rounding of the float32 loss is far below it)
DESCENT_RTOL = 1e-6


def gd_runs(setup: TaskSetup, cfg: Scale, lr: float | None = None, gap_n: int = 32, seed: int = 0, lambdas=None, *,
            c: float = 1.0, steps: int | None = None, rtol: float = DESCENT_RTOL) -> GDRuns:
    """Train LoRA + head (every trained tensor anchored: ``anchor="all"``, the bound's setting) with squared loss
    (one-hot targets) and full-batch gradient descent for every λ, on the ``gap_n`` training examples whose gap is
    logged, logging every step.

    Step size: with ``lr=None`` (the book's protocol) each λ gets η_λ = c/(β̂ + λ), β̂ = μmax/N measured at θ0 on
    this batch (:func:`linft.train.gd_step_size`), so the descent condition η ≤ 1/(β + λ) holds for c ≤ 1 as far as
    β̂ is β; a number gives one step for every λ (the old protocol, kept for comparison). ``steps`` defaults to
    ``cfg.train_steps``. Every step's anchored objective (``TrainResult.objective``) is checked for rises above the
    relative tolerance ``rtol``: ``descent`` counts them per λ and ``increases`` lists them all.
    """
    batch = take(setup.train, gap_n)
    steps = cfg.train_steps if steps is None else int(steps)
    lams = tuple(cfg.lambdas if lambdas is None else lambdas)
    start = time.perf_counter()
    beta, kappas = float("nan"), {}
    if lr is None:
        measured = gd_step_size(setup.model, batch, 0.0, c)
        beta, N = measured["beta"], measured["N"]
        lrs = {lam: c / (beta + lam) for lam in lams}
        kappas = {lam: (measured["mu_max"] + N * lam) / (measured["mu_min"] + N * lam)
                  if measured["mu_min"] + N * lam > 0 else float("inf") for lam in lams}
    else:
        lrs = {lam: float(lr) for lam in lams}
    runs = {}
    for lam in lams:
        seed_everything(seed)
        runs[lam] = fine_tune(copy.deepcopy(setup.model), batch, None, loss="mse", optimizer="gd", lr=lrs[lam],
                              steps=steps, batch_size=None, lam=lam, anchor="all", seed=seed, log_every=1,
                              gap_n=gap_n, progress=False)
    descent = {lam: bound.descent_violations(run.objective, rtol) for lam, run in runs.items()}
    increases = pd.concat([bound.objective_increases(run.objective, rtol).assign(lam=lam, seed=seed)
                           for lam, run in runs.items()], ignore_index=True)
    return GDRuns(runs, descent, batch, lrs if lr is None else float(lr), time.perf_counter() - start, beta=beta,
                  c=c if lr is None else float("nan"), seed=seed, increases=increases, kappa_lambda=kappas)


# ================================================================================= the chapter's protocol (seeds)
#
# The bound is checked on several seeds' gradient-descent runs, with η_λ = c/(β̂ + λ) per λ, every step logged, and
# L estimated for each seed from directions that do not come from that seed's runs (random, power-iterated, other
# seeds' θ_T − θ0). The trade-off sweep repeats AdamW runs over seeds and compares the anchor on every trained tensor
# ("all") with the anchor on the LoRA matrices only ("lora"), with bootstrap intervals over seeds and examples.


@dataclass(frozen=True)
class Plan:
    """Chapter 2's protocol sizes (:func:`plan_for`; per-scale defaults in :data:`PLANS`).

    Bound check (full-batch GD, MSE): ``gd_seeds``, ``gd_n`` training examples (the full batch, also the gap
    examples), ``gd_steps`` steps at η_λ = ``c``/(β̂ + λ), every step logged. Lipschitz estimate: ``n_radii`` radii
    from far/300 to ``headroom``·far (far: the largest drift bound or measured drift), ``n_random`` random and
    ``n_power`` power-iterated directions (``power_iters`` iterations each) per seed, plus every other seed's
    θ_T − θ0. Trade-off sweep (AdamW, cross-entropy): ``n_tasks`` tasks, ``sweep_seeds`` seeds, ``sweep_steps``
    steps, ``sweep_lambdas``, ``anchors`` for λ > 0, accuracy on min(``sweep_eval``, validation size) examples and
    the gap on the first ``gap_n`` of them.
    """

    gd_seeds: tuple[int, ...]
    gd_n: int
    gd_steps: int
    c: float
    n_radii: int
    n_random: int
    n_power: int
    power_iters: int
    headroom: float
    n_tasks: int
    sweep_seeds: tuple[int, ...]
    sweep_eval: int
    sweep_steps: int
    sweep_lambdas: tuple[float, ...]
    anchors: tuple[str, ...]
    gap_n: int

    def as_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


#: per-scale defaults of :class:`Plan` (None: the scale's own ``train_steps`` / ``lambdas``). At ``default`` the
#: sizes are set by the measured cost of one run on 2 CPU cores so that the chapter fits its time budget (see the
#: chapter's "Where this chapter trades size for time").
PLANS: dict[str, dict] = {
    "smoke": {"gd_seeds": 2, "gd_n": 8, "gd_steps": 4, "c": 1.0, "n_radii": 5, "n_random": 1, "n_power": 1,
              "power_iters": 2, "headroom": 1.25, "n_tasks": 2, "sweep_seeds": 2, "sweep_eval": 32,
              "sweep_steps": None, "sweep_lambdas": None, "anchors": ("all", "lora"), "gap_n": 8},
    "default": {"gd_seeds": 3, "gd_n": 16, "gd_steps": 12, "c": 1.0, "n_radii": 8, "n_random": 2, "n_power": 2,
                "power_iters": 3, "headroom": 1.25, "n_tasks": 3, "sweep_seeds": 3, "sweep_eval": 1000,
                "sweep_steps": None, "sweep_lambdas": (0.0, 50.0), "anchors": ("all", "lora"), "gap_n": 16},
    "paper": {"gd_seeds": 3, "gd_n": 32, "gd_steps": 100, "c": 1.0, "n_radii": 10, "n_random": 4, "n_power": 2,
              "power_iters": 5, "headroom": 1.25, "n_tasks": 5, "sweep_seeds": 3, "sweep_eval": 1000,
              "sweep_steps": None, "sweep_lambdas": None, "anchors": ("all", "lora"), "gap_n": 32},
}


def _seeds(value) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value < 1:
            raise LinftError(f"a seed count must be >= 1, got {value}")
        return tuple(range(int(value)))
    seeds = tuple(int(v) for v in value)
    if not seeds or len(set(seeds)) != len(seeds):
        raise LinftError(f"seeds must be a count or distinct integers, got {value!r}")
    return seeds


def plan_for(cfg: Scale, **overrides) -> Plan:
    """The protocol sizes of chapter 2 at ``cfg``'s scale (:data:`PLANS`), with ``overrides`` (e.g. from the
    chapter's ``plan`` parameter). Seeds may be given as a count (``gd_seeds=3`` → seeds 0, 1, 2) or a list."""
    base = dict(PLANS.get(cfg.name, PLANS["default"]))
    unknown = set(overrides) - set(base)
    if unknown:
        raise LinftError(f"unknown plan field(s) {sorted(unknown)}: valid fields are {sorted(base)}")
    base.update(overrides)
    base["gd_seeds"], base["sweep_seeds"] = _seeds(base["gd_seeds"]), _seeds(base["sweep_seeds"])
    base["sweep_steps"] = int(cfg.train_steps if base["sweep_steps"] is None else base["sweep_steps"])
    base["sweep_lambdas"] = tuple(float(v) for v in (cfg.lambdas if base["sweep_lambdas"] is None
                                                     else base["sweep_lambdas"]))
    base["anchors"] = tuple(base["anchors"])
    if len(base["gd_seeds"]) < 2:
        raise LinftError("the bound check needs >= 2 GD seeds: L for one seed comes from the others' trajectories")
    for name in ("gd_n", "gd_steps", "n_radii", "n_random", "n_power", "n_tasks", "sweep_eval", "gap_n"):
        base[name] = check_positive_int(base[name], name)
    if not 0 < float(base["c"]) < 2:
        raise LinftError(f"c must be in (0, 2) (1: the descent condition's largest step), got {base['c']!r}")
    return Plan(**base)


#: the chapter's time budget at the default scale (the whole chapter, on the book's 2-core reference machine)
TIME_BUDGET = "15 minutes on 2 CPU cores"


def styled(frame: pd.DataFrame, caption: str, digits: int = 3):
    """``frame`` as a Styler for display: numeric columns to ``digits`` significant digits, index hidden when it is
    a plain range, with ``caption``."""
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and frame[c].dtype != bool]
    style = frame.style.format(f"{{:.{digits}g}}", subset=numeric, na_rep="–").set_caption(caption)
    return style.hide(axis="index") if isinstance(frame.index, pd.RangeIndex) else style


#: relative tolerance of bound_table: a measured value counts as above its bound beyond this (float32 ties)
BOUND_RTOL = 1e-3


def plan_text(plan: Plan, cfg: Scale) -> dict:
    """The plan's sizes and the pass bars as strings for :func:`linft.results.glue_all` (``plan_*``, ``bar_*``), so
    that the chapter can state its protocol and bars before any result."""
    lams = ", ".join(f"{v:g}" for v in plan.sweep_lambdas)
    return {
        "plan_gd_seeds": len(plan.gd_seeds), "plan_gd_n": plan.gd_n, "plan_gd_steps": plan.gd_steps,
        "plan_c": f"{plan.c:g}", "plan_n_radii": plan.n_radii, "plan_n_random": plan.n_random,
        "plan_n_power": plan.n_power, "plan_power_iters": plan.power_iters, "plan_headroom": f"{plan.headroom:g}",
        "plan_n_tasks": plan.n_tasks, "plan_sweep_seeds": len(plan.sweep_seeds), "plan_sweep_eval": plan.sweep_eval,
        "plan_sweep_steps": plan.sweep_steps, "plan_cfg_steps": cfg.train_steps, "plan_sweep_lambdas": lams,
        "plan_cfg_lambdas": ", ".join(f"{v:g}" for v in cfg.lambdas), "plan_gap_n": plan.gap_n,
        "plan_anchors": ", ".join(plan.anchors), "plan_n_train": cfg.n_train, "plan_max_length": cfg.max_length,
        "plan_batch": cfg.batch_size, "plan_lr": f"{cfg.lr:g}", "plan_model": cfg.model,
        "bar_gap": f"{GAP_RATIO_BAR:g}", "bar_descent_rtol": f"{DESCENT_RTOL:g}",
        "bar_bound_rtol": f"{BOUND_RTOL:.1%}", "plan_budget": TIME_BUDGET,
    }


def task_setups(task: str, cfg: Scale, seeds, n_eval: int) -> dict[int, TaskSetup]:
    """:func:`setup_task` for every seed (each seed draws its own data sample, LoRA init and head), with
    min(``n_eval``, validation size) eval examples."""
    out = {}
    for seed in _seeds(seeds):
        available = len(data.load_task(task, seed=seed)["validation"])
        out[seed] = setup_task(task, replace(cfg, n_eval=min(int(n_eval), available)), seed)
    return out


@dataclass
class GDSeeds:
    """:func:`gd_runs` (η_λ = c/(β̂ + λ)) for several seeds of one task."""

    task: str
    runs: dict[int, GDRuns]
    setups: dict[int, TaskSetup]
    seconds: float


def gd_seeds(task: str, cfg: Scale, plan: Plan, setups: dict[int, TaskSetup] | None = None) -> GDSeeds:
    """The bound protocol's gradient-descent runs: for each seed of ``plan.gd_seeds``, every λ of ``cfg`` with
    η_λ = c/(β̂ + λ), ``plan.gd_n`` examples, ``plan.gd_steps`` steps, every step logged and checked for descent."""
    setups = dict(setups or {})
    start = time.perf_counter()
    runs = {}
    for seed in plan.gd_seeds:
        if seed not in setups:
            setups.update(task_setups(task, cfg, [seed], plan.sweep_eval))
        runs[seed] = gd_runs(setups[seed], cfg, None, plan.gd_n, seed=seed, c=plan.c, steps=plan.gd_steps)
    return GDSeeds(task, runs, {s: setups[s] for s in plan.gd_seeds}, time.perf_counter() - start)


def _delta(run: TrainResult) -> dict:
    trained = dict(run.model.named_parameters())
    return {n: trained[n].detach() - run.anchor[n] for n in run.anchor}


#: the direction kinds of :func:`lipschitz_held_out`
DIRECTION_KINDS = ("random", "power-iterated", "other seeds' θ_T − θ0")


@dataclass
class HeldOutLipschitz:
    """Jacobian-Lipschitz samples per checked seed, from directions that do not come from that seed's runs."""

    samples: pd.DataFrame  # seed (checked), direction (kind), source, sample, radius, L_jac, L_taylor, f_change
    curves: dict[int, pd.DataFrame]  # per checked seed: every held-out direction
    curves_random: dict[int, pd.DataFrame]  # per checked seed: random directions only (for comparison)
    power: pd.DataFrame  # power-iteration history: seed, start, iteration, radius, L_jac
    radii: list
    seconds: float
    text: dict = field(default_factory=dict)
    headline: dict = field(default_factory=dict)
    #: L curves from subsets of the directions, {subset: {seed: curve}}, for comparing what each kind contributes
    subsets: dict = field(default_factory=dict)
    #: the unit-free directions probed for each checked seed, in ``sample`` order (name → tensor each)
    directions: dict = field(default_factory=dict, repr=False)


#: the direction subsets :func:`bound_check_seeds` also counts violations for
SUBSETS = {"random only": ("random",), "power-iterated only": ("power-iterated",),
           "other seeds' θ_T − θ0 only": (DIRECTION_KINDS[2],),
           "random + other seeds' θ_T − θ0": ("random", DIRECTION_KINDS[2]), "all held-out (used)": DIRECTION_KINDS}


def lipschitz_held_out(gds: GDSeeds, plan: Plan) -> HeldOutLipschitz:
    """For each seed s, estimate L on s's GD batch around s's θ0 from ``plan.n_random`` isotropic random
    directions, ``plan.n_power`` power-iterated worst directions (:func:`linft.bound.worst_direction`, started from
    random ones, iterated at radii spread over the upper half of the grid) and θ_T − θ0 of every other seed's runs
    (every λ), never from s's own runs. One radius grid for all seeds: ``plan.n_radii`` radii from far/300 to
    ``plan.headroom``·far, far = the largest drift bound (λ > 0) or measured drift of any run, so that every drift
    and drift bound has a grid radius at or above it (:func:`linft.bound.lipschitz_at`)."""
    seeds = list(gds.runs)
    if len(seeds) < 2:
        raise LinftError("held-out directions need >= 2 seeds: run gd_seeds with two seeds or more")
    far = 0.0
    for gd in gds.runs.values():
        R0 = float(next(iter(gd.runs.values())).log["task_loss"].iloc[0])
        far = max([far] + [bound.drift_bound(R0, lam) for lam in gd.runs if lam > 0]
                  + [float(run.log["drift_total"].max()) for run in gd.runs.values()])
    radii = [float(r) for r in np.geomspace(far / 300, far * plan.headroom, plan.n_radii)]
    power_radii = ([radii[-1]] if plan.n_power == 1
                   else [float(r) for r in np.geomspace(radii[len(radii) // 2], radii[-1], plan.n_power)])
    start = time.perf_counter()
    frames, history, curves, curves_random, probed = [], [], {}, {}, {}
    for seed in seeds:
        f, theta0 = bound.functional(copy.deepcopy(gds.setups[seed].model), gds.runs[seed].batch)
        directions = bound.random_directions(theta0, plan.n_random, seed=10_000 + seed)
        kinds, sources = ["random"] * plan.n_random, ["random"] * plan.n_random
        for k, r in enumerate(power_radii):
            u, hist = bound.worst_direction(f, theta0, r, plan.power_iters, seed=20_000 + 100 * seed + k)
            directions.append(u)
            kinds.append("power-iterated")
            sources.append(f"power r = {r:.3g}")
            history.append(hist.assign(seed=seed, start=k))
        for other in seeds:
            if other == seed:
                continue  # never the checked seed's own trajectories
            for lam, run in gds.runs[other].runs.items():
                delta = _delta(run)
                if sum(float((d**2).sum()) for d in delta.values()) > 0:
                    directions.append(delta)
                    kinds.append(DIRECTION_KINDS[2])
                    sources.append(f"seed {other}, λ = {lam:g}")
        probed[seed] = directions
        samples = bound.jacobian_lipschitz(f, theta0, radii, directions=directions)
        samples = samples.assign(seed=seed, direction=samples["sample"].map(dict(enumerate(kinds))),
                                 source=samples["sample"].map(dict(enumerate(sources))))
        frames.append(samples)
        curves[seed] = bound.lipschitz_curve(samples)
        curves_random[seed] = bound.lipschitz_curve(samples[samples["direction"] == "random"])
    samples = pd.concat(frames, ignore_index=True)
    subsets = {name: {seed: bound.lipschitz_curve(part[part["direction"].isin(kinds)])
                      for seed, part in samples.groupby("seed") if part["direction"].isin(kinds).any()}
               for name, kinds in SUBSETS.items()}
    study = HeldOutLipschitz(samples, curves, curves_random, pd.concat(history, ignore_index=True), radii,
                             time.perf_counter() - start, subsets={k: v for k, v in subsets.items() if v},
                             directions=probed)
    _held_out_numbers(study, plan)
    return study


def _held_out_numbers(study: HeldOutLipschitz, plan: Plan) -> None:
    samples = study.samples
    by_kind = samples.groupby("direction")["L_jac"].max()
    power_max = by_kind.get("power-iterated", np.nan)
    power = study.power
    gain = power.groupby(["seed", "start"])["L_jac"].agg(lambda v: v.max() / v.iloc[0])
    # grid coarseness: the second difference along a sampled direction cannot exceed the sup of the Jacobian ratio
    # along the segment; count samples where it exceeds the largest ratio sampled at radii up to its own
    excess = 0
    for seed, part in samples.groupby("seed"):
        cover = bound.lipschitz_at(study.curves[seed], part["radius"].to_numpy())
        excess += int((part["L_taylor"] > cover * (1 + 1e-3)).sum())
    n_other = int((samples["direction"] == DIRECTION_KINDS[2]).sum() / len(study.radii))
    study.text = {
        "lip_r_lo": f"{study.radii[0]:.2g}", "lip_r_hi": f"{study.radii[-1]:.2g}", "lip_n_radii": len(study.radii),
        "lip_n_random": plan.n_random, "lip_n_power": plan.n_power, "lip_power_iters": plan.power_iters,
        "lip_n_other": n_other, "lip_n_seeds": samples["seed"].nunique(),
        "lip_rand_max": f"{by_kind.get('random', float('nan')):.3g}",
        "lip_power_max": f"{by_kind.get('power-iterated', float('nan')):.3g}",
        "lip_other_max": f"{by_kind.get(DIRECTION_KINDS[2], float('nan')):.3g}",
        "lip_power_gain": f"{gain.min():.2g}–{gain.max():.2g}",
        "lip_power_over_rand": f"{power_max / by_kind.get('random', np.nan):.3g}",
        "lip_power_over_other": f"{power_max / by_kind.get(DIRECTION_KINDS[2], np.nan):.3g}",
        "lip_taylor_excess": excess, "lip_taylor_total": len(samples), "lip_seconds": f"{study.seconds:.0f}",
    }
    study.headline = {
        "radii": study.radii, "max_by_direction": by_kind.to_dict(),
        "curve_max_by_seed": {int(s): c["max"].tolist() for s, c in study.curves.items()},
        "power_gain": {f"seed={s},start={k}": float(v) for (s, k), v in gain.items()},
        "taylor_excess": excess, "seconds": study.seconds,
    }


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
