"""Does κ of the eNTK at initialization predict LoRA fine-tuning? (chapter 5, the validation study).

Input: a sweep CSV of :mod:`linft.study` (one row per run: task × LoRA configuration × seed × setting × λ; the kernel
of exactly the trained parameters at θ0, then the fine-tuning outcome). Protocol:

- runs that failed, or whose training loss did not fall by at least :data:`MOVE_TOL` (relative), are set aside and
  counted: a run that did not move says nothing about how well its configuration trains;
- within each task (across configurations and seeds) and pooled across tasks after ranking within each task
  (:func:`linft.rankstats.grouped_rank_correlation`): Spearman ρ of each predictor with eval accuracy, training loss
  and eval loss, with permutation p-values and bootstrap 95 % intervals; Kendall τ for log κ;
- rival predictors κ must beat to matter (:data:`PREDICTORS`), each with its compute cost per run;
- the seeds' noise ceiling of each outcome (:func:`linft.rankstats.noise_ceiling`);
- the claim's verdict per setting against the bar fixed beforehand (:data:`P_BAR`, the sign the claim predicts, the
  interval excluding 0);
- the anchored slice (:func:`anchored_study`): runs trained at λ > 0 paired with the same cells at λ = 0, κ_λ at the
  trained λ against the outcome under the same bar, and the λ effect beside how far training got;
- the chapter's sentences, computed here: :meth:`AnchoredStudy.text`, :func:`slice_text`, and the combined verdicts
  of :func:`combined_claims` (:func:`claim_text`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from linft import LinftError, require_columns
from linft.rankstats import grouped_rank_correlation, noise_ceiling, rank_correlation

__all__ = [
    "ANCHORED_PREDICTORS", "AnchoredStudy", "CLAIM_SETTINGS", "MOVE_TOL", "OUTCOMES", "P_BAR", "PREDICTORS",
    "SETTING_NAMES", "TENAS_TAU", "ValidationStudy", "anchored_study", "claim_text", "claim_verdict",
    "combine_verdicts", "combined_claims", "load_study", "model_available", "predictor_correlations", "rerun_check",
    "slice_summary", "slice_text", "validation_study",
]

#: a run "moved" when its final training loss is below (1 − MOVE_TOL)·(its loss at θ0)
MOVE_TOL = 0.01
#: the pass bar, fixed before the numbers: permutation p-value below this, the claimed sign, the 95 % interval
#: excluding 0
P_BAR = 0.05
#: Kendall τ of the NTK condition number with accuracy in architecture search (TE-NAS, NAS-Bench-201), the anchor
#: number the issue sets beside ours; cited, not computed here
TENAS_TAU = -0.42
SETTING_NAMES = {"ce_adamw": "CE + AdamW", "mse_gd": "MSE + GD"}
#: the claims page's ids of chapter 5's claims (:mod:`linft.claims`) -> the setting whose verdict judges each
CLAIM_SETTINGS = {"kappa-orders-adamw": "ce_adamw", "kappa-orders-mse": "mse_gd"}
#: outcome column -> (label, the sign of its correlation with κ that the claim predicts)
OUTCOMES = {"eval_acc": ("eval accuracy", -1), "train_loss": ("training loss", +1), "eval_loss": ("eval loss", +1)}
#: predictor column -> (label, cost column: seconds per run to compute it; None: free)
PREDICTORS = {
    "log_kappa": ("log₁₀ κ (the claim)", "kernel_seconds"),
    "n_params": ("trainable parameters", None),
    "log_trace": ("log₁₀ trace (gradient norm²)", "kernel_seconds"),
    "log_lambda_max": ("log₁₀ λmax", "kernel_seconds"),
    "log_lambda_min": ("log₁₀ λmin", "kernel_seconds"),
    "effective_rank": ("effective rank", "kernel_seconds"),
    "kr_acc": ("kernel-regression accuracy", "kernel_seconds"),
    "logme_jacobian": ("LogME, Jacobian features", "logme_seconds"),
    "short_eval_acc": ("short run's eval accuracy", "short_seconds"),
    "short_train_loss": ("short run's training loss", "short_seconds"),
}
#: the predictors of the anchored slice: κ_λ at the trained λ (the claim there), plain κ and the strongest rivals
ANCHORED_PREDICTORS = {
    "log_kappa_lambda": ("log₁₀ κ_λ at the trained λ (the claim)", "kernel_seconds"),
    "log_kappa": ("log₁₀ κ (λ ignored)", "kernel_seconds"),
    "n_params": PREDICTORS["n_params"],
    "kr_acc": PREDICTORS["kr_acc"],
    "short_eval_acc": PREDICTORS["short_eval_acc"],
}
_ALL_PREDICTORS = {**PREDICTORS, **ANCHORED_PREDICTORS}
_NEEDED = ("task", "config", "seed", "setting", "lam", "status", "kappa", "lambda_min", "lambda_max", "trace",
           "train_loss_init", "train_loss", "eval_acc", "eval_loss")


def _log10(values: pd.Series) -> pd.Series:
    values = pd.to_numeric(values, errors="coerce").astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.Series(np.where(values > 0, np.log10(values), np.nan), index=values.index)


def load_study(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """The sweep CSV at ``path`` with derived columns, and counts ``{"rows", "failed", "not_moved", "used"}``.

    Adds ``log_kappa``, ``log_kappa_lambda`` (κ_λ at the run's λ; κ where the CSV has no ``kappa_lambda``),
    ``log_trace``, ``log_lambda_max``, ``log_lambda_min`` (log₁₀; NaN for κ = inf or λmin = 0) and ``moved`` (bool);
    keeps every row (filter on ``status == "ok"`` and ``moved``).
    """
    path = Path(path)
    if not path.is_file():
        raise LinftError(f"no sweep CSV at {path}: run `linft study --config sweeps/<name>.yaml --out {path}` first")
    frame = pd.read_csv(path)
    require_columns(frame, _NEEDED, f"sweep CSV {path.name}", "write it with linft.study")
    for column in ("kappa", "trace", "lambda_max", "lambda_min"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["lam"] = pd.to_numeric(frame["lam"], errors="coerce").astype(float)
    frame["log_kappa"] = _log10(frame["kappa"])
    if "kappa_lambda" not in frame:
        frame["kappa_lambda"] = frame["kappa"]
    frame["kappa_lambda"] = pd.to_numeric(frame["kappa_lambda"], errors="coerce")
    frame["log_kappa_lambda"] = _log10(frame["kappa_lambda"])
    frame["log_trace"] = _log10(frame["trace"])
    frame["log_lambda_max"] = _log10(frame["lambda_max"])
    frame["log_lambda_min"] = _log10(frame["lambda_min"])
    ok = frame["status"] == "ok"
    frame["moved"] = ok & (frame["train_loss"] < (1 - MOVE_TOL) * frame["train_loss_init"])
    counts = {"rows": len(frame), "failed": int((~ok).sum()), "not_moved": int((ok & ~frame["moved"]).sum()),
              "used": int(frame["moved"].sum())}
    return frame, counts


def _runs(frame: pd.DataFrame, setting: str, lam: float = 0.0) -> pd.DataFrame:
    """The moved runs of ``setting`` trained at ``lam``."""
    return frame[(frame["setting"] == setting) & frame["moved"] & np.isclose(frame["lam"], lam)]


def predictor_correlations(frame: pd.DataFrame, *, setting: str, outcomes=tuple(OUTCOMES), predictors=tuple(PREDICTORS),
                           n_permutations: int = 2000, n_boot: int = 1000, seed: int = 0, lam: float = 0.0
                           ) -> pd.DataFrame:
    """Pooled within-task Spearman ρ (and per task) of every predictor with every outcome, for one setting.

    Uses the moved runs of ``setting`` trained at ``lam``. ``predictors``: names of :data:`PREDICTORS` or
    :data:`ANCHORED_PREDICTORS`. Returns one row per (predictor, outcome, group): ``group`` is a task or "pooled";
    columns ``r``, ``p_value``, ``low``, ``high``, ``n``, ``note`` and the predictor's median ``cost_s``.
    """
    used = _runs(frame, setting, lam)
    rows = []
    for predictor in predictors:
        cost_column = _ALL_PREDICTORS[predictor][1]
        cost = float(used[cost_column].median()) if cost_column and len(used) else 0.0
        for outcome in outcomes:
            if used.empty or predictor not in used:
                continue
            table = grouped_rank_correlation(used, predictor, outcome, n_permutations=n_permutations, n_boot=n_boot,
                                             seed=seed)
            table.insert(0, "outcome", outcome)
            table.insert(0, "predictor", predictor)
            table["cost_s"] = cost
            rows.append(table)
    if not rows:
        return pd.DataFrame(columns=["predictor", "outcome", "group", "r", "p_value", "low", "high", "n", "cost_s"])
    return pd.concat(rows, ignore_index=True)


def _correlations_by_setting(frame: pd.DataFrame, settings, *, predictors=tuple(PREDICTORS), lam: float = 0.0,
                             n_permutations: int = 2000, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """:func:`predictor_correlations` of every setting in ``settings``, stacked with a ``setting`` column; an empty
    frame when ``settings`` is empty."""
    if not settings:
        return pd.DataFrame()
    return pd.concat(
        [predictor_correlations(frame, setting=s, predictors=predictors, lam=lam, n_permutations=n_permutations,
                                n_boot=n_boot, seed=seed).assign(setting=s) for s in settings], ignore_index=True)


def _passes(row: pd.Series, sign: int) -> bool:
    return bool(np.isfinite(row["r"]) and np.sign(row["r"]) == sign and row["p_value"] < P_BAR
                and (row["high"] < 0 if sign < 0 else row["low"] > 0))


def claim_verdict(correlations: pd.DataFrame, setting: str, predictor: str = "log_kappa",
                  label: str = "log κ") -> tuple[str, str]:
    """(verdict, one computed sentence) for "lower κ → higher eval accuracy and lower training loss" in ``setting``.

    Holds: pooled ``predictor`` (log κ; log κ_λ for anchored runs, named ``label`` in the sentence) passes the bar
    against both eval accuracy (ρ < 0) and training loss (ρ > 0); partly: one of the two; does not hold: neither;
    not yet tested: no pooled correlations (no usable runs).
    """
    if correlations.empty:
        return "not yet tested", f"{SETTING_NAMES.get(setting, setting)}: no usable runs to correlate."
    pooled = correlations[(correlations["predictor"] == predictor) & (correlations["group"] == "pooled")
                          & (correlations["setting"] == setting)].set_index("outcome")
    name = SETTING_NAMES.get(setting, setting)
    if not {"eval_acc", "train_loss"} <= set(pooled.index) or not np.isfinite(
            pd.to_numeric(pooled["r"], errors="coerce").astype(float)).any():
        return "not yet tested", f"{name}: no usable runs to correlate."
    acc, loss = pooled.loc["eval_acc"], pooled.loc["train_loss"]
    passed = [_passes(acc, OUTCOMES["eval_acc"][1]), _passes(loss, OUTCOMES["train_loss"][1])]
    word = "holds" if all(passed) else "partly" if any(passed) else "does not hold"
    sentence = (f"{name}: pooled within tasks, {label} vs eval accuracy ρ = {acc['r']:.2f} "
                f"[{acc['low']:.2f}, {acc['high']:.2f}], p = {acc['p_value']:.3f}; vs training loss ρ = "
                f"{loss['r']:.2f} [{loss['low']:.2f}, {loss['high']:.2f}], p = {loss['p_value']:.3f} "
                f"(n = {int(acc['n'])} runs).")
    return word, sentence


def rival_table(correlations: pd.DataFrame, outcome: str = "eval_acc") -> pd.DataFrame:
    """Pooled ρ of every predictor with ``outcome``, one row per (setting, predictor), ranked by |ρ| within a setting,
    with ``beats_kappa`` (|ρ| larger than log κ's)."""
    pooled = correlations[(correlations["group"] == "pooled") & (correlations["outcome"] == outcome)].copy()
    if pooled.empty:
        return pooled
    pooled["abs_r"] = pooled["r"].abs()
    kappa = pooled[pooled["predictor"] == "log_kappa"].set_index("setting")["abs_r"]
    pooled["beats_kappa"] = pooled["abs_r"] > pooled["setting"].map(kappa)
    pooled["label"] = pooled["predictor"].map(lambda p: PREDICTORS[p][0])
    return pooled.sort_values(["setting", "abs_r"], ascending=[True, False]).reset_index(drop=True)


def kendall_kappa(frame: pd.DataFrame, setting: str, outcome: str = "eval_acc", seed: int = 0) -> dict:
    """Kendall τ of log κ with ``outcome`` on the within-task ranks (pooled), for the TE-NAS comparison."""
    used = _runs(frame, setting)
    if used.empty:
        return {"r": math.nan, "p_value": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    table = grouped_rank_correlation(used, "log_kappa", outcome, method="kendall", n_permutations=500, n_boot=300,
                                     seed=seed)
    row = table[table["group"] == "pooled"].iloc[0]
    return {k: row[k] for k in ("r", "p_value", "low", "high", "n")}


def across_tasks(frame: pd.DataFrame, setting: str, predictor: str = "logme_frozen", outcome: str = "eval_acc",
                 seed: int = 0) -> dict:
    """Spearman across tasks of the task-mean ``predictor`` with the task-mean ``outcome`` (one point per task)."""
    used = _runs(frame, setting)
    means = used.groupby("task")[[predictor, outcome]].mean()
    res = rank_correlation(means[predictor], means[outcome], n_permutations=2000, n_boot=500, seed=seed)
    return {**res.as_dict(), "tasks": list(means.index)}


def rerun_check(frame: pd.DataFrame, keys: list[dict], config_path: str | Path, *, threads: int = 1,
                kernel_rtol: float = 1e-3, outcome_atol: float = 0.02) -> pd.DataFrame:
    """Re-run the committed rows named by ``keys`` (dicts of task, config, seed, setting) with
    :func:`linft.study.run_one` and compare: kernel numbers (κ, λmax, trace) to ``kernel_rtol`` relative, outcomes
    (eval accuracy, training loss) to ``outcome_atol`` absolute. One row per key with committed and re-run values
    and ``match``."""
    from linft.study import load_config, plan_runs, run_one

    plan = plan_runs(load_config(config_path))
    rows = []
    for want in keys:
        found = [k for k in plan if all(str(getattr(k, f)) == str(v) for f, v in want.items())]
        if len(found) != 1:
            raise LinftError(f"re-run key {want} matches {len(found)} planned runs: name task, config, seed, setting "
                             "(and lam)")
        key = found[0]
        committed = frame[(frame["task"] == key.task) & (frame["config"] == key.config) & (frame["seed"] == key.seed)
                          & (frame["setting"] == key.setting) & (frame["lam"] == key.lam)]
        if committed.empty:
            raise LinftError(f"the committed CSV has no row for {want}: choose keys of finished runs")
        old = committed.iloc[0]
        new = run_one(key, threads=threads)
        row = {"task": key.task, "config": key.config, "seed": key.seed, "setting": key.setting}
        ok = True
        for column in ("kappa", "lambda_max", "trace"):
            row[f"{column}_committed"], row[f"{column}_rerun"] = float(old[column]), float(new[column])
            ok &= math.isclose(float(old[column]), float(new[column]), rel_tol=kernel_rtol)
        for column in ("eval_acc", "train_loss"):
            row[f"{column}_committed"], row[f"{column}_rerun"] = float(old[column]), float(new[column])
            ok &= abs(float(old[column]) - float(new[column])) <= outcome_atol
        row["seconds"] = float(new["run_seconds"])
        row["match"] = bool(ok)
        rows.append(row)
    return pd.DataFrame(rows)


def _pooled_numbers(correlations: pd.DataFrame, setting: str, predictor: str) -> dict:
    """{outcome: {r, p_value, low, high}} of ``predictor``'s pooled correlations in ``setting``."""
    pooled = correlations[(correlations["setting"] == setting) & (correlations["group"] == "pooled")
                          & (correlations["predictor"] == predictor)].set_index("outcome")
    return {o: {k: float(pooled.loc[o, k]) for k in ("r", "p_value", "low", "high")} for o in pooled.index}


@dataclass
class ValidationStudy:
    """Everything chapter 5 shows: the runs, the correlation tables, the verdicts and the headline numbers."""

    frame: pd.DataFrame
    counts: dict
    correlations: pd.DataFrame
    rivals: pd.DataFrame
    ceilings: pd.DataFrame
    verdicts: dict
    headline: dict = field(default_factory=dict)


def validation_study(path: str | Path, *, n_permutations: int = 2000, n_boot: int = 1000, seed: int = 0
                     ) -> ValidationStudy:
    """Analyse the sweep CSV at ``path`` (see the module docstring) for every setting it holds."""
    frame, counts = load_study(path)
    settings = [s for s in SETTING_NAMES if s in set(frame["setting"])]
    correlations = _correlations_by_setting(frame, settings, n_permutations=n_permutations, n_boot=n_boot,
                                            seed=seed)
    ceilings = []
    for s in settings:
        used = _runs(frame, s)
        for outcome in ("eval_acc", "train_loss"):
            if len(used):
                ceilings.append(noise_ceiling(used, outcome).assign(setting=s, outcome=outcome))
    ceilings = pd.concat(ceilings, ignore_index=True) if ceilings else pd.DataFrame()
    verdicts = {s: claim_verdict(correlations, s) for s in settings}
    headline = {"counts": counts, "tasks": sorted(frame["task"].unique().tolist()),
                "configs": sorted(frame["config"].unique().tolist()),
                "seeds": sorted(int(x) for x in frame["seed"].unique()),
                "verdicts": {s: {"verdict": v, "evidence": t} for s, (v, t) in verdicts.items()}}
    for s in settings:
        headline[s] = _pooled_numbers(correlations, s, "log_kappa")
        headline[s]["kendall_eval_acc"] = {k: float(v) for k, v in kendall_kappa(frame, s, seed=seed).items()}
    return ValidationStudy(frame, counts, correlations, rival_table(correlations), ceilings, verdicts, headline)


_CELL = ["task", "config", "seed", "setting"]


def combine_verdicts(words) -> str:
    """One verdict from several tests of the same claim: "holds" when all hold, "does not hold" when none holds
    (even partly), "partly" otherwise; tests "not yet tested" are left out (all of them: "not yet tested")."""
    tested = [w for w in words if w != "not yet tested"]
    if not tested:
        return "not yet tested"
    if all(w == "holds" for w in tested):
        return "holds"
    if all(w == "does not hold" for w in tested):
        return "does not hold"
    return "partly"


@dataclass
class AnchoredStudy:
    """The anchored slice beside its λ = 0 cells.

    ``pairs``: one row per cell (task, config, seed, setting) run at both λ, with ``kappa``, ``kappa_lambda``,
    ``train_loss``/``eval_acc``/``moved`` at each λ (suffixes ``_0`` and ``_lam``).
    ``summary``: one row per setting: runs, pairs where both moved, median κ and κ_λ, ``kappa_rel_diff`` (the
    largest relative difference of a cell's κ between the two CSVs: 0 up to round-off, θ0 does not depend on λ),
    the median training loss reached at each λ, the paired mean change of eval accuracy with its 95 % interval.
    ``correlations``: :func:`predictor_correlations` of :data:`ANCHORED_PREDICTORS` on the anchored runs;
    ``verdicts``: per setting, the claim with κ_λ at the trained λ; ``lam``: that λ; ``counts``: :func:`load_study`'s
    counts of the anchored CSV. :meth:`text` puts a setting's numbers and verdict in words.
    """

    pairs: pd.DataFrame
    summary: pd.DataFrame
    correlations: pd.DataFrame
    verdicts: dict
    lam: float
    counts: dict
    headline: dict = field(default_factory=dict)

    def text(self, setting: str) -> str:
        """One computed paragraph (a ``str``) on ``setting``'s anchored runs: how many moved at each λ, the median κ
        and κ_λ, the training loss reached and the eval-accuracy change with its interval over the cells where both
        runs moved (when at least two did), and the verdict for κ_λ with its sentence. "not in this slice" when the
        slice has no run of ``setting``."""
        if setting not in set(self.summary.get("setting", ())):
            return "not in this slice"
        r = next(row for row in self.summary.to_dict("records") if row["setting"] == setting)  # ints stay ints
        loss_text = (f"over the {r['both_moved']} cells where both runs moved, the median training loss "
                     f"reached is {r['median_train_loss_lam']:.3f} with the penalty against "
                     f"{r['median_train_loss_0']:.3f} without, and eval accuracy changes by "
                     f"{r['eval_acc_change']:+.3f} [{r['eval_acc_change_low']:+.3f}, {r['eval_acc_change_high']:+.3f}]"
                     if r["both_moved"] >= 2 else "no pair of runs both moved")
        word, sentence = self.verdicts[setting]
        return (f"{r['moved_at_lam']} of {r['runs']} runs moved at λ = {self.lam:g} ({r['moved_at_0']} at λ = 0); "
                f"median κ {r['median_kappa']:.3g} becomes κ_λ {r['median_kappa_lambda']:.3g}; {loss_text}. "
                f"Verdict for κ_λ: {word} — {sentence}")


def anchored_study(path: str | Path, base_path: str | Path, *, n_permutations: int = 2000, n_boot: int = 1000,
                   seed: int = 0) -> AnchoredStudy:
    """Analyse the anchored sweep CSV at ``path`` (one λ > 0) beside the λ = 0 sweep at ``base_path``.

    The claim at λ > 0 is tested with κ_λ at the trained λ, under the same bar as at λ = 0 (:func:`claim_verdict`);
    the λ effect is read only on cells where both runs moved (:data:`MOVE_TOL`), beside the training loss each
    reached. Raises :class:`LinftError` when the CSV holds no λ > 0, several λ, or no cell of ``base_path``.
    """
    from linft.stats import paired_bootstrap_ci

    frame, counts = load_study(path)
    base, _ = load_study(base_path)
    lams = sorted(set(frame.loc[frame["lam"] > 0, "lam"]))
    if len(lams) != 1:
        raise LinftError(f"{Path(path).name} must hold runs at exactly one λ > 0, it has {lams or 'none'}: split it "
                         "by λ")
    lam = float(lams[0])
    keep = _CELL + ["kappa", "kappa_lambda", "train_loss", "eval_acc", "moved"]
    anchored = frame[np.isclose(frame["lam"], lam)]
    pairs = base[np.isclose(base["lam"], 0.0)][keep].merge(anchored[keep], on=_CELL, suffixes=("_0", "_lam"))
    if pairs.empty:
        raise LinftError(f"no cell of {Path(path).name} is in {Path(base_path).name}: pair an anchored slice with "
                         "the λ = 0 sweep it was cut from")
    pairs = pairs.drop(columns=["kappa_lambda_0"]).rename(columns={"kappa_0": "kappa", "kappa_lambda_lam":
                                                                   "kappa_lambda", "kappa_lam": "kappa_check"})
    settings = [s for s in SETTING_NAMES if s in set(anchored["setting"])]
    rows = []
    for s in settings:
        cell = pairs[pairs["setting"] == s]
        both = cell[cell["moved_0"] & cell["moved_lam"]]
        row = {"setting": s, "runs": len(cell), "moved_at_0": int(cell["moved_0"].sum()),
               "moved_at_lam": int(cell["moved_lam"].sum()), "both_moved": len(both),
               "median_kappa": float(cell["kappa"].median()),
               "median_kappa_lambda": float(cell["kappa_lambda"].median()),
               "kappa_rel_diff": float(((cell["kappa_check"] - cell["kappa"]).abs() / cell["kappa"]).max()),
               "median_train_loss_0": float(both["train_loss_0"].median()) if len(both) else math.nan,
               "median_train_loss_lam": float(both["train_loss_lam"].median()) if len(both) else math.nan}
        if len(both) >= 2:
            delta, low, high = paired_bootstrap_ci(both["eval_acc_lam"], both["eval_acc_0"], n_boot=n_boot, seed=seed)
        else:
            delta = low = high = math.nan
        row.update(eval_acc_change=delta, eval_acc_change_low=low, eval_acc_change_high=high)
        rows.append(row)
    summary = pd.DataFrame(rows)
    correlations = _correlations_by_setting(frame, settings, predictors=tuple(ANCHORED_PREDICTORS), lam=lam,
                                            n_permutations=n_permutations, n_boot=n_boot, seed=seed)
    verdicts = {s: claim_verdict(correlations, s, predictor="log_kappa_lambda", label=f"log κ_λ (λ = {lam:g})")
                for s in settings}
    for row in rows:
        if row["moved_at_lam"] < 3:  # too few runs trained to rank anything: say so instead of "no usable runs"
            name = SETTING_NAMES[row["setting"]]
            verdicts[row["setting"]] = (
                "not yet tested", f"{name}: only {row['moved_at_lam']} of the {row['runs']} runs at λ = {lam:g} "
                f"lowered their training loss by {MOVE_TOL:.0%} (at λ = 0, {row['moved_at_0']} did), so κ_λ has "
                "nothing to rank here.")
    headline = {"lam": lam, "counts": counts, "summary": summary.to_dict(orient="records"),
                "verdicts": {s: {"verdict": v, "evidence": t} for s, (v, t) in verdicts.items()}}
    for s in settings:
        headline[s] = _pooled_numbers(correlations, s, "log_kappa_lambda")
    return AnchoredStudy(pairs, summary, correlations, verdicts, lam, counts, headline)


def combined_claims(study: ValidationStudy, anchored: AnchoredStudy, *, section: str = "ch5-verdict") -> dict:
    """The chapter's verdicts for the claims page, combining the λ = 0 sweep and the anchored slice.

    Returns ``{claim id: {"verdict", "evidence", "section"}}`` (all ``str``), one entry per claim of
    :data:`CLAIM_SETTINGS` whose setting ``study`` tested, in that order: ``verdict`` is
    :func:`combine_verdicts` of ``study``'s and ``anchored``'s verdicts for the setting (a setting missing from the
    slice counts as "not yet tested"); ``evidence`` the two verdict sentences, "At λ = 0: … At λ = <λ>: …";
    ``section`` the MyST label of the section that shows them (:mod:`linft.claims` reads the entries)."""
    claims = {}
    for claim, s in CLAIM_SETTINGS.items():
        if s not in study.verdicts:
            continue
        anchored_word, anchored_sentence = anchored.verdicts.get(s, ("not yet tested", "not in the slice."))
        claims[claim] = {"verdict": combine_verdicts([study.verdicts[s][0], anchored_word]),
                         "evidence": f"At λ = 0: {study.verdicts[s][1]} At λ = {anchored.lam:g}: {anchored_sentence}",
                         "section": section}
    return claims


def claim_text(claims: dict, claim: str) -> str:
    """The line "<verdict> — <evidence>" (a ``str``) for the claim id ``claim`` in ``claims`` (as
    :func:`combined_claims` returns them); "not yet tested" when it is not there."""
    entry = claims.get(claim)
    return f"{entry['verdict']} — {entry['evidence']}" if entry else "not yet tested"


def model_available(name: str) -> tuple[bool, str]:
    """(whether the shipped model ``name`` can be loaded here, the reason when not) — e.g. mpnet is an optional
    download."""
    from linft import models

    try:
        models.resolve(name)
    except LinftError as err:
        return False, str(err)
    return True, ""


def slice_summary(path: str | Path, *, seed: int = 0) -> dict:
    """A slice sweep (another model, one or a few tasks): per setting, Spearman of log κ with eval accuracy and with
    training loss over its moved runs, and the counts. ``{"available": False}`` when the CSV is absent."""
    path = Path(path)
    if not path.is_file() or len(pd.read_csv(path)) == 0:
        return {"available": False, "path": str(path)}
    frame, counts = load_study(path)
    out = {"available": True, "path": str(path), "counts": counts, "model": str(frame["model"].iloc[0]),
           "tasks": sorted(frame["task"].unique().tolist())}
    for setting in sorted(frame["setting"].unique()):
        used = _runs(frame, setting)
        out[setting] = {o: rank_correlation(used["log_kappa"], used[o], n_permutations=2000, n_boot=500,
                                            seed=seed).as_dict() for o in ("eval_acc", "train_loss")}
    return out


def slice_text(summary: dict, *, installed: bool = True) -> str:
    """One computed clause (a ``str``) on a slice of :func:`slice_summary`: its moved runs and the Spearman ρ of
    log κ with eval accuracy under CE + AdamW, with the 95 % interval and p-value; when the slice has no such runs,
    that its CSV is not in this build, adding that the model is not installed here when the CSV is absent and
    ``installed`` is false (:func:`model_available`)."""
    adamw = summary.get("ce_adamw", {}).get("eval_acc", {})
    if adamw:
        return (f"over its {summary['counts']['used']} moved runs, log κ against eval accuracy gives ρ = "
                f"{adamw['r']:.2f} [{adamw['low']:.2f}, {adamw['high']:.2f}], p = {adamw['p_value']:.3f}")
    text = f"its slice CSV ({summary['path']}) is not in this build"
    if not summary["available"] and not installed:
        text += " and the model is not installed here"
    return text
