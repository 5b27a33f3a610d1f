"""Chapter 5's keystone: does κ of a small calibration kernel rank LoRA configurations as fine-tuning does?

Reads a reference-protocol study CSV (:mod:`linft.study._reference`; ``data/results/study-reference.csv``) and
computes the tests fixed before its numbers were seen:

- **Unit.** A LoRA configuration within a task. Its outcome is the mean over seeds of the held-out accuracy after
  fine-tuning (``eval_acc``); its predictor the mean over seeds of log10 κ. Runs are not the unit: log κ is almost
  a function of the configuration, so a run-level test counts one configuration several times.
- **Primary test** (:data:`PRIMARY`): Spearman ρ between configuration means of log10 κ of the reference kernel at
  N = 32 and of eval accuracy, within each task, with a percentile bootstrap over configurations (configurations
  resampled with replacement, seeds kept together); pooled across tasks from within-task ranks scaled to [−1, 1],
  resampling configurations within each task (configurations as clusters).
- **Bar** (:func:`verdict_of`): the claim (lower κ, higher accuracy) **holds** when the interval's upper end is
  below 0; it **fails** when the interval lies above 0 (the opposite sign) or entirely above :data:`USEFUL_RHO`
  (κ ranks configurations too weakly to be useful even if the sign is right); otherwise it is **not resolved**.
  Each outcome is reachable: the bootstrap interval moves with the numbers.
- **Power** (:func:`power_table`): from the runs at hand (the first two seeds are the pilot), the configuration
  effect against seed noise per task (one-way ANOVA F and its p), the reliability of configuration means across seeds
  (split-half, Spearman–Brown to all seeds; :func:`linft.rankstats.noise_ceiling`), and the power of the primary
  test to detect a true ρ of :data:`POWER_RHO` once attenuated by that reliability (Fisher z, two-sided 5 %).
  A task below :data:`POWER_BAR` is reported, its verdict marked as underpowered.
- **Rivals** (:data:`RIVALS`) at equal N, compared by **signed** paired bootstrap differences of the
  claim-direction ρ (ρ·expected sign), resampling the same configurations for both predictors.
- **ρ(N)**: the primary statistic for every calibration size and both kernels, beside the seconds each costs and
  the seconds of the fine-tuning it predicts, measured in the same runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from linft import LinftError, require_columns
from linft.rankstats import noise_ceiling
from linft.stats import bootstrap_ci

__all__ = ["PRIMARY", "RIVALS", "USEFUL_RHO", "POWER_RHO", "POWER_BAR", "load_reference_study", "config_means",
           "config_bootstrap", "primary_test", "verdict_of", "power_table", "configs_needed", "rival_differences",
           "rho_by_n",
           "ReferenceStudy", "reference_study", "rerun_check", "planned_runs", "RERUN_TOLERANCES", "finding"]

#: the primary predictor and outcome: the reference kernel's κ at the reference's N = 32, held-out accuracy
PRIMARY = {"predictor": "log_kappa_ref_32", "outcome": "eval_acc", "sign": -1}
#: the claim-direction |ρ| below which κ would not be a useful ranker of configurations, even with the right sign
USEFUL_RHO = 0.3
#: the true configuration-level ρ the design should detect, and the power the design should have for it
POWER_RHO = 0.6
POWER_BAR = 0.8
#: rivals of κ: column template (``{n}`` = calibration size, when the rival has one) → expected sign with accuracy
RIVALS = {
    "log_kappa_trained_{n}": -1,   # the kernel of what is trained (LoRA + head, SignGD)
    "kr_acc_trained_{n}": +1,      # kernel regression with it, on n_kr held-out examples
    "grad_norm_{n}": +1,           # ‖∇L(θ0)‖ over the calibration points
    "logme_jacobian_{n}": +1,      # LogME on the Jacobian features
    "log_n_params": +1,            # the configuration's LoRA parameter count
    "short_eval_acc": +1,          # the same run after 10 % of its steps
}


def load_reference_study(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """The ok runs of a reference-protocol CSV with derived columns (``log_kappa_<kernel>_<N>``, ``log_n_params``),
    and counts: ``runs``, ``ok``, ``failed``, ``tasks``, ``configs`` (per task), ``seeds``, ``calib``."""
    path = Path(path)
    if not path.is_file():
        raise LinftError(f"study CSV {path} does not exist: run `linft study --config sweeps/reference.yaml --out "
                         f"{path}` first")
    frame = pd.read_csv(path, keep_default_na=False, na_values=["", "nan", "NaN"])
    require_columns(frame, ["protocol", "task", "config", "seed", "status", "eval_acc", "calib"], str(path))
    if set(frame["protocol"]) != {"reference"}:
        raise LinftError(f"{path} is not a reference-protocol study (protocol {sorted(set(frame['protocol']))})")
    ok = frame[frame["status"] == "ok"].copy()
    calib = tuple(int(n) for n in str(frame["calib"].iloc[0]).split(","))
    for column in [c for c in ok.columns if c.startswith("kappa_")]:
        ok["log_" + column] = np.log10(ok[column].astype(float).clip(lower=1.0))
    ok["log_n_params"] = np.log10(ok["n_params_lora"].astype(float))
    counts = {"runs": int(len(frame)), "ok": int(len(ok)), "failed": int((frame["status"] != "ok").sum()),
              "tasks": sorted(ok["task"].unique().tolist()),
              "configs": {t: int(g["config"].nunique()) for t, g in ok.groupby("task")},
              "seeds": sorted(int(s) for s in ok["seed"].unique()), "calib": calib}
    return ok, counts


def config_means(frame: pd.DataFrame, columns) -> pd.DataFrame:
    """Per task × configuration: the mean over seeds of each column, and ``n_seeds``."""
    columns = list(dict.fromkeys(columns))
    require_columns(frame, ["task", "config", "seed", *columns], "frame")
    grouped = frame.groupby(["task", "config"], sort=True)
    means = grouped[columns].mean()
    means["n_seeds"] = grouped["seed"].nunique()
    return means.reset_index()


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(scipy_stats.spearmanr(x, y).statistic)


def _scaled_ranks(values: np.ndarray) -> np.ndarray:
    ranks = scipy_stats.rankdata(values)
    return (2 * ranks - values.size - 1) / max(values.size - 1, 1)


def config_bootstrap(means: pd.DataFrame, x: str, y: str, *, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> pd.DataFrame:
    """Spearman ρ of configuration means ``x`` vs ``y`` per task and pooled, with bootstrap intervals over
    configurations (within each task; pooled = within-task scaled ranks, configurations resampled per task).
    Rows: ``task`` (or "pooled"), ``rho``, ``low``, ``high``, ``n_configs``; also the resampled ρ in ``attrs``
    (``draws``: {task: array [n_boot]}) for paired comparisons with the same resamples."""
    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2
    rows, draws, index = [], {}, {}
    parts = {t: g.dropna(subset=[x, y]) for t, g in means.groupby("task", sort=True)}
    for task, part in parts.items():
        index[task] = rng.integers(0, len(part), (n_boot, len(part)))
    pooled_draws = np.zeros(n_boot)
    pooled_x, pooled_y = [], []
    for task, part in parts.items():
        xv, yv = part[x].to_numpy(float), part[y].to_numpy(float)
        boots = np.array([_spearman(xv[i], yv[i]) for i in index[task]])
        draws[task] = boots
        finite = boots[np.isfinite(boots)]
        low, high = (np.quantile(finite, [tail, 1 - tail]) if finite.size else (math.nan, math.nan))
        rows.append({"task": task, "rho": _spearman(xv, yv), "low": float(low), "high": float(high),
                     "n_configs": len(part)})
        pooled_x.append(_scaled_ranks(xv))
        pooled_y.append(_scaled_ranks(yv))
    if parts:
        gx, gy = np.concatenate(pooled_x), np.concatenate(pooled_y)
        offsets = np.cumsum([0] + [len(p) for p in parts.values()])[:-1]
        stacked = np.concatenate([index[t] + o for t, o in zip(parts, offsets)], axis=1)
        pooled_draws = np.array([_spearman(gx[i], gy[i]) for i in stacked])
        finite = pooled_draws[np.isfinite(pooled_draws)]
        low, high = (np.quantile(finite, [tail, 1 - tail]) if finite.size else (math.nan, math.nan))
        rows.append({"task": "pooled", "rho": _spearman(gx, gy), "low": float(low), "high": float(high),
                     "n_configs": int(gx.size)})
        draws["pooled"] = pooled_draws
    table = pd.DataFrame(rows)
    table.attrs["draws"] = draws
    return table


def verdict_of(low: float, high: float, sign: int = -1) -> str:
    """The bar of the module docstring on an interval of ρ whose claimed sign is ``sign``: "holds", "fails",
    "not resolved" (NaN bounds: "not tested")."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "not tested"
    lo, hi = sorted((sign * low, sign * high))  # the interval of the claim-direction ρ
    if lo > 0:
        return "holds"
    if hi < 0 or hi < USEFUL_RHO:
        return "fails"
    return "not resolved"


def primary_test(frame: pd.DataFrame, predictor: str = PRIMARY["predictor"], outcome: str = PRIMARY["outcome"],
                 sign: int = PRIMARY["sign"], *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """:func:`config_bootstrap` of ``predictor`` vs ``outcome`` with a ``verdict`` column (:func:`verdict_of`)."""
    table = config_bootstrap(config_means(frame, [predictor, outcome]), predictor, outcome, n_boot=n_boot, seed=seed)
    table["verdict"] = [verdict_of(lo, hi, sign) for lo, hi in zip(table["low"], table["high"])]
    return table


def _fisher_power(rho: float, n: int, alpha: float = 0.05) -> float:
    """Power of a two-sided Spearman test at level ``alpha`` against true ρ with n units (Fisher z, the 1.06
    variance factor of Spearman's ρ; Fieller et al. 1957)."""
    if n < 4 or not math.isfinite(rho):
        return math.nan
    se = math.sqrt(1.06 / (n - 3))
    z = abs(math.atanh(min(abs(rho), 0.999))) / se
    crit = scipy_stats.norm.ppf(1 - alpha / 2)
    return float(scipy_stats.norm.cdf(z - crit) + scipy_stats.norm.cdf(-z - crit))


def power_table(frame: pd.DataFrame, outcome: str = PRIMARY["outcome"], rho: float = POWER_RHO) -> pd.DataFrame:
    """Per task: configurations, seeds, SD of configuration means, pooled within-configuration (seed) SD, the
    one-way ANOVA F and p of the configuration effect, the reliability of configuration means over the seeds at
    hand (:func:`linft.rankstats.noise_ceiling`; NaN with one seed), the attenuated ρ a true ``rho`` would show, and
    the primary test's power for it (``power``), with ``adequate`` = power ≥ :data:`POWER_BAR` and
    ``configs_needed`` for that power (:func:`configs_needed`); a last row "pooled" for the pooled test (all tasks'
    configurations, the mean reliability)."""
    rows = []
    ceiling = noise_ceiling(frame, outcome).set_index("group") if frame["seed"].nunique() > 1 else None
    for task, part in frame.groupby("task", sort=True):
        groups = [g[outcome].dropna().to_numpy(float) for _, g in part.groupby("config")]
        means = np.array([g.mean() for g in groups if g.size])
        within = [g.var(ddof=1) for g in groups if g.size > 1]
        f, p = (scipy_stats.f_oneway(*[g for g in groups if g.size]) if len(within) >= 2 else (math.nan, math.nan))
        reliability = float(ceiling.loc[task, "reliability"]) if ceiling is not None and task in ceiling.index \
            else math.nan
        observed = rho * math.sqrt(max(reliability, 0.0)) if math.isfinite(reliability) else math.nan
        power = _fisher_power(observed, len(means))
        rows.append({"task": task, "n_configs": int(len(means)), "n_seeds": int(part["seed"].nunique()),
                     "sd_config_means": float(means.std(ddof=1)) if means.size > 1 else math.nan,
                     "sd_seed": float(math.sqrt(np.mean(within))) if within else math.nan,
                     "anova_f": float(f), "anova_p": float(p), "reliability": reliability,
                     "attenuated_rho": observed, "power": power,
                     "adequate": bool(math.isfinite(power) and power >= POWER_BAR),
                     "configs_needed": configs_needed(observed)})
    if rows:
        n = sum(r["n_configs"] for r in rows)
        reliability = float(np.nanmean([r["reliability"] for r in rows])) if any(
            math.isfinite(r["reliability"]) for r in rows) else math.nan
        observed = rho * math.sqrt(max(reliability, 0.0)) if math.isfinite(reliability) else math.nan
        power = _fisher_power(observed, n)
        rows.append({"task": "pooled", "n_configs": n, "n_seeds": int(frame["seed"].nunique()),
                     "reliability": reliability, "attenuated_rho": observed, "power": power,
                     "adequate": bool(math.isfinite(power) and power >= POWER_BAR),
                     "configs_needed": configs_needed(observed)})
    return pd.DataFrame(rows)


def configs_needed(rho: float, power: float = POWER_BAR, alpha: float = 0.05) -> float:
    """The configurations a Spearman test needs to reach ``power`` against true ρ (Fisher z; NaN for ρ NaN or 0)."""
    if not math.isfinite(rho) or rho == 0:
        return math.nan
    z = scipy_stats.norm.ppf(1 - alpha / 2) + scipy_stats.norm.ppf(power)
    return float(math.ceil(3 + 1.06 * (z / math.atanh(min(abs(rho), 0.999))) ** 2))


def _rival_columns(n: int) -> dict[str, int]:
    return {template.format(n=n): s for template, s in RIVALS.items()}


def rival_differences(frame: pd.DataFrame, n: int = 32, *, outcome: str = PRIMARY["outcome"], n_boot: int = 2000,
                      seed: int = 0) -> pd.DataFrame:
    """Each rival against log κ of the reference kernel at the same N: the claim-direction ρ of both (ρ·expected
    sign) and their **signed** difference (rival − κ) with a paired bootstrap interval (the same configuration
    resamples for both). Rows: ``task`` (and "pooled"), ``rival``, ``rho_dir``, ``kappa_rho_dir``, ``diff``,
    ``low``, ``high`` (diff > 0: the rival ranks configurations better in its expected direction)."""
    base = f"log_kappa_ref_{n}"
    rivals = {c: s for c, s in _rival_columns(n).items() if c in frame}
    means = config_means(frame, [base, outcome, *rivals])
    kappa = config_bootstrap(means, base, outcome, n_boot=n_boot, seed=seed)
    rows = []
    for column, sign in rivals.items():
        table = config_bootstrap(means, column, outcome, n_boot=n_boot, seed=seed)  # same seed: same resamples
        for (_, k), (_, r) in zip(kappa.iterrows(), table.iterrows()):
            d = sign * table.attrs["draws"][r["task"]] - (-1) * kappa.attrs["draws"][k["task"]]
            d = d[np.isfinite(d)]
            low, high = (np.quantile(d, [0.025, 0.975]) if d.size else (math.nan, math.nan))
            rows.append({"task": r["task"], "rival": column, "rho_dir": sign * r["rho"], "kappa_rho_dir": -k["rho"],
                         "diff": sign * r["rho"] + k["rho"], "low": float(low), "high": float(high)})
    return pd.DataFrame(rows)


def rho_by_n(frame: pd.DataFrame, calib, *, outcome: str = PRIMARY["outcome"], n_boot: int = 1000,
             seed: int = 0) -> pd.DataFrame:
    """Pooled configuration-level ρ(log κ, outcome) per calibration size and kernel, with its interval, beside the
    median seconds of that kernel and of the fine-tuning run. Rows: ``kernel``, ``n``, ``rho``, ``low``, ``high``,
    ``kernel_seconds``, ``train_seconds``, ``cost_ratio`` (kernel over fine-tuning)."""
    rows = []
    for kernel in ("ref", "trained"):
        for n in calib:
            column = f"log_kappa_{kernel}_{n}"
            if column not in frame:
                continue
            table = config_bootstrap(config_means(frame, [column, outcome]), column, outcome, n_boot=n_boot,
                                     seed=seed)
            pooled = table[table["task"] == "pooled"].iloc[0]
            kernel_seconds = float(frame[f"kernel_seconds_{n}"].median())
            train_seconds = float(frame["train_seconds"].median())
            rows.append({"kernel": kernel, "n": int(n), "rho": pooled["rho"], "low": pooled["low"],
                         "high": pooled["high"], "kernel_seconds": kernel_seconds, "train_seconds": train_seconds,
                         "cost_ratio": kernel_seconds / train_seconds})
    return pd.DataFrame(rows)


#: the claims page's words for the bar's outcomes (:func:`verdict_of`)
CLAIM_WORDS = {"holds": "holds", "fails": "does not hold", "not resolved": "not yet tested",
               "not tested": "not yet tested"}


def _interval(row) -> str:
    return f"ρ = {row['rho']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}]"


@dataclass
class ReferenceStudy:
    """Every table of the keystone study (see the module docstring): ``accuracy`` per task (mean eval accuracy with a
    95 % interval over configurations, min, max, the majority-class share, accuracy before training), its
    configuration means (``means``: task × config, log κ of both kernels at every N, eval accuracy mean/min/max
    over seeds), its sentences and its headline dict (``headline``). ``planned``: the runs the sweep plans
    (None: unknown)."""

    counts: dict
    primary: pd.DataFrame
    power: pd.DataFrame
    rivals: pd.DataFrame
    rho_n: pd.DataFrame
    accuracy: pd.DataFrame
    means: pd.DataFrame
    planned: int | None = None

    def design_text(self) -> str:
        """"<ok> of <planned> planned runs: <tasks> tasks × <configs> configurations × <seeds> seeds …"."""
        c = self.counts
        configs = sorted(set(c["configs"].values()))
        planned = f" of the {self.planned} the sweep plans" if self.planned else ""
        def plural(n: int, word: str) -> str:
            return f"{n} {word}" + ("" if n == 1 else "s")

        return (f"{plural(c['ok'], 'finished run')}{planned} ({c['failed']} failed): "
                f"{plural(len(c['tasks']), 'task')} ({', '.join(c['tasks'])}) × "
                f"{'/'.join(str(n) for n in configs)} configurations × {plural(len(c['seeds']), 'seed')} "
                f"({', '.join(str(s) for s in c['seeds'])})")

    def primary_text(self) -> str:
        """The primary test's result, pooled then per task, with the verdict of each and the pooled power."""
        table = self.primary.set_index("task")
        pooled = table.loc["pooled"]
        power = self.power.set_index("task")
        per_task = "; ".join(f"{t} {_interval(r)} ({r['verdict']})" for t, r in table.drop(index="pooled").iterrows())
        pw = power.loc["pooled"]
        power_note = (f"the design's power to detect a true ρ of {-POWER_RHO:+.1f} pooled is {pw['power']:.2f} at the "
                      f"seeds' measured reliability {pw['reliability']:.2f}" if math.isfinite(pw["power"])
                      else "its power cannot be measured yet (one seed per configuration)")
        return (f"pooled over {int(pooled['n_configs'])} configurations, {_interval(pooled)}: {pooled['verdict']}; "
                f"per task: {per_task}; {power_note}")

    def cost_text(self, n: int = 32) -> str:
        """What κ at calibration size ``n`` costs against the run it predicts, and how well it ranks."""
        row = self.rho_n[(self.rho_n["kernel"] == "ref") & (self.rho_n["n"] == n)]
        if row.empty:
            return f"no kernel at N = {n} in this study"
        row = row.iloc[0]
        return (f"at N = {n} the reference kernel costs {row['kernel_seconds']:.1f} s, 1/{1 / row['cost_ratio']:.0f} "
                f"of the {row['train_seconds']:.0f} s fine-tuning run it predicts, and ranks configurations with "
                f"pooled {_interval(row)}")

    def claim(self, section: str = "ch5-reference") -> dict:
        """The claims-page entry ``{"verdict", "evidence", "section"}`` of "κ predicts CE + Adam fine-tuning"."""
        pooled = self.primary.set_index("task").loc["pooled"]
        word = CLAIM_WORDS[pooled["verdict"]]
        power = self.power.set_index("task").loc["pooled"]
        if word == "holds" or power["adequate"]:
            note = ""
        else:
            note = " The design is not yet powered for a verdict of no effect (see the power table)."
        evidence = (f"Reference protocol ({self.design_text()}): {self.primary_text()}.{note}")
        if pooled["verdict"] == "not resolved":
            evidence = "Not resolved. " + evidence
        return {"verdict": word, "evidence": evidence, "section": section}

    @property
    def headline(self) -> dict:
        primary = {row["task"]: {k: row[k] for k in ("rho", "low", "high", "n_configs", "verdict")}
                   for _, row in self.primary.iterrows()}
        return {"counts": self.counts, "planned": self.planned, "primary": primary,
                "primary_spec": dict(PRIMARY), "useful_rho": USEFUL_RHO, "power_rho": POWER_RHO,
                "power": self.power.set_index("task").to_dict(orient="index"),
                "rivals": self.rivals.to_dict(orient="records"), "rho_n": self.rho_n.to_dict(orient="records"),
                "accuracy": self.accuracy.to_dict(orient="records")}


def reference_study(path: str | Path, *, n_boot: int = 2000, seed: int = 0, planned: int | None = None
                    ) -> ReferenceStudy:
    """All of the keystone study from its CSV (see the module docstring); ``planned``: the sweep's planned runs."""
    frame, counts = load_reference_study(path)
    if frame.empty:
        raise LinftError(f"{path} holds no finished run yet: let the sweep run, then read it again")
    accuracy = frame.groupby("task").agg(runs=("eval_acc", "size"), eval_acc=("eval_acc", "mean"),
                                         eval_acc_min=("eval_acc", "min"), eval_acc_max=("eval_acc", "max"),
                                         majority=("eval_majority", "mean"),
                                         eval_acc_init=("eval_acc_init", "mean")).reset_index()
    intervals = {task: bootstrap_ci(part.groupby("config")["eval_acc"].mean().to_numpy(), seed=seed)
                 for task, part in frame.groupby("task")}  # configurations resampled, their seed means kept
    accuracy["eval_acc_low"] = accuracy["task"].map(lambda t: intervals[t][1])
    accuracy["eval_acc_high"] = accuracy["task"].map(lambda t: intervals[t][2])
    accuracy = accuracy[["task", "runs", "eval_acc", "eval_acc_low", "eval_acc_high", "eval_acc_min",
                         "eval_acc_max", "majority", "eval_acc_init"]]
    kappa_columns = [c for c in frame.columns if c.startswith("log_kappa_") and "draw" not in c]
    means = config_means(frame, [*kappa_columns, "eval_acc"])
    spread = frame.groupby(["task", "config"])["eval_acc"].agg(["min", "max"]).add_prefix("eval_acc_")
    means = means.merge(spread.reset_index(), on=["task", "config"])
    return ReferenceStudy(counts=counts, primary=primary_test(frame, n_boot=n_boot, seed=seed),
                          power=power_table(frame), rivals=rival_differences(frame, n_boot=n_boot, seed=seed),
                          rho_n=rho_by_n(frame, counts["calib"], n_boot=max(200, n_boot // 2), seed=seed),
                          accuracy=accuracy, means=means, planned=planned)


#: how closely a re-run must reproduce a committed row: relative for κ (threads and machine fixed, float
#: round-off only), absolute for accuracies
RERUN_TOLERANCES = {"kappa_ref_32": ("rel", 1e-6), "kappa_trained_32": ("rel", 1e-6), "kappa_ref_256": ("rel", 1e-6),
                    "eval_acc": ("abs", 0.005), "short_eval_acc": ("abs", 0.005), "train_loss": ("abs", 0.005)}


def planned_runs(config_path: str | Path) -> list:
    """The run keys the sweep file ``config_path`` plans (:func:`linft.study.plan_runs`)."""
    from linft.study import load_config, plan_runs

    return plan_runs(load_config(config_path))


def rerun_check(path: str | Path, config_path: str | Path, *, task: str, config: str, seed: int,
                threads: int = 1) -> pd.DataFrame:
    """Run the planned run (``task``, ``config``, ``seed``) of ``config_path`` here and compare it with its committed
    row in ``path`` (when there is one) on :data:`RERUN_TOLERANCES`. Rows: ``column``, ``committed``, ``rerun``,
    ``tolerance``, ``match`` (NaN committed / match when the CSV has no such row yet)."""
    from linft.study._reference import run_reference

    keys = [k for k in planned_runs(config_path)
            if (k.spec.task, k.config, k.spec.seed) == (task, config, seed)]
    if not keys:
        raise LinftError(f"{config_path} plans no run {task}/{config}/seed {seed}: pick one of its runs")
    key = keys[0]
    row = run_reference(key, threads=threads)
    frame = pd.read_csv(path) if Path(path).is_file() else pd.DataFrame()
    committed = None
    if len(frame):
        ids = pd.DataFrame([key.as_row()]).astype(str)
        match = frame.astype(str).merge(ids, on=list(ids.columns), how="inner")
        committed = match.iloc[0] if len(match) else None
    out = []
    for column, (kind, tol) in RERUN_TOLERANCES.items():
        new = float(row[column])
        old = float(committed[column]) if committed is not None else math.nan
        if committed is None:
            ok = math.nan
        elif kind == "rel":
            ok = abs(new - old) <= tol * max(abs(old), 1e-300)
        else:
            ok = abs(new - old) <= tol
        out.append({"column": column, "committed": old, "rerun": new, "tolerance": f"{kind} {tol:g}", "match": ok})
    table = pd.DataFrame(out)
    table.attrs.update(run_seconds=float(row["run_seconds"]), label=key.label())
    return table


def finding(path: str | Path, *, planned: int | None = None, n_boot: int = 2000, seed: int = 0) -> dict:
    """The summary ``linft predict`` ships (:mod:`linft.finding`): the pooled primary test on the study CSV ``path``
    and its scope (model, tasks, runs, configurations, seeds, fine-tuning size, ``planned`` runs)."""
    ok, counts = load_reference_study(path)
    pooled = primary_test(ok, n_boot=n_boot, seed=seed).set_index("task").loc["pooled"]
    n = int(PRIMARY["predictor"].rsplit("_", 1)[1])

    def number(value) -> float | None:
        return float(value) if math.isfinite(float(value)) else None

    return {"predictor": PRIMARY["predictor"], "outcome": PRIMARY["outcome"], "n": n, "rho": number(pooled["rho"]),
            "low": number(pooled["low"]), "high": number(pooled["high"]), "verdict": str(pooled["verdict"]),
            "scope": {"model": str(ok["model"].iloc[0]), "tasks": counts["tasks"], "runs": counts["ok"],
                      "configs": int(pooled["n_configs"]), "seeds": counts["seeds"],
                      "n_train": int(ok["n_train"].iloc[0]), "planned": planned}}
