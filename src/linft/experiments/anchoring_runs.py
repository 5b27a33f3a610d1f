"""Chapter 2's protocol and its gradient-descent runs: the plan per scale, full-batch GD runs per seed against the
drift bound, and the held-out Jacobian-Lipschitz estimate the gap bound needs (:mod:`linft.experiments.anchoring`
checks the bounds and the accuracy/linearity trade-off on these runs, and re-exports every name here)."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from linft import LinftError, bound, check_positive_int
from linft.bars import GAP_RATIO_BAR
from linft.batches import take
from linft.device import seed_everything
from linft.experiments.tasks import TaskSetup, setup_task
from linft.scales import Scale
from linft.spectral import kappa_from_extremes
from linft.train import TrainResult, fine_tune, gd_step_size

__all__ = ["GDRuns", "gd_runs", "GAP_RATIO_BAR", "DESCENT_RTOL", "Plan", "PLANS", "plan_for", "task_setups",
           "GDSeeds", "gd_seeds", "DIRECTION_KINDS", "SUBSETS", "HeldOutLipschitz", "lipschitz_held_out",
           "BOUND_RTOL", "plan_text", "TIME_BUDGET", "styled"]

# the pass bars are linft.bars' (defined once; re-exported here for the chapters)


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
        kappas = {lam: kappa_from_extremes(measured["mu_max"], measured["mu_min"], N * lam) for lam in lams}
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
        out[seed] = setup_task(task, replace(cfg, n_eval=int(n_eval)), seed)  # prepare caps n_eval at the split
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
