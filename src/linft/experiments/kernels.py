"""Chapter 3 (the empirical NTK of a LoRA-adapted language model): per-task spectra and κ_λ, the head's share and
the head seed, per-layer blocks, κ against the number of examples, LoRA target sets, SGD/SignGD kernel variants,
and a decoder.

Protocol: the κ experiments are of a model whose classifier head is frozen at its seeded initialization, so the
LoRA kernel is the kernel of the trained parameters. Kernels are computed over ``params="trainable"`` of a model
with a trainable head (LoRA + head) once per task; the LoRA kernel (no head) is the sum of its layer blocks,
``Kernel.blocks(exclude=("head",))``, shape [N, N, C, C], and equals the trainable-parameter kernel of the same
model with the head frozen (:func:`block_checks` and :func:`head_seed_kernels` check it), while the head block
shows what training the head too would add.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from linft import data, models, ntk, predict, spectral
from linft.batches import take
from linft.experiments.tasks import prepare_chapter
from linft.scales import Scale

__all__ = ["LAMBDAS", "TARGET_SETS", "TaskKernels", "task_kernels", "frozen_head_model", "kappa_lambda_table",
           "kappa_lambda_curve", "head_seed_kernels", "lanczos_check", "layer_share_table", "block_checks",
           "kappa_growth", "target_set_kernels", "nesting_text", "kernel_variants", "variants_text",
           "decoder_comparison", "memory_mib"]

#: the reference study's anchor strengths λ of the anchored mean loss, beside λ = 0 (plain κ)
LAMBDAS = (0.0, 0.5, 5.0, 50.0)

#: LoRA target sets compared in chapter 3, by label (architecture-aware aliases of :mod:`linft.models`)
TARGET_SETS = {"query, value": ("q", "v"), "query, key, value": ("q", "k", "v"),
               "attn_out, ffn_in, ffn_out": ("o", "ffn_in", "ffn_out")}


def frozen_head_model(cfg: Scale, num_labels: int, seed: int = 0, *, head_seed: int | None = None, targets=None):
    """``cfg.model`` + LoRA (rank ``cfg.lora_rank`` on ``targets``, default ``cfg.lora_targets``, A drawn with ``seed``)
    with a ``num_labels``-way head initialized with ``head_seed`` (default ``seed``) and frozen: its
    ``params="trainable"`` kernel is the LoRA kernel."""
    base = models.load(cfg.model, num_labels=num_labels, seed=seed if head_seed is None else head_seed).model
    return models.add_lora(base, targets if targets is not None else cfg.lora_targets, rank=cfg.lora_rank, seed=seed,
                           train_head=False)


def memory_mib(K: ntk.Kernel) -> float:
    """The kernel code's own memory estimate for ``K`` (kernel plus stored per-example gradients), MiB."""
    return K.meta.get("estimated_bytes", 0) / 2**20


@dataclass
class TaskKernels:
    """One ``params="trainable"`` kernel per task on ``ntk_n`` training examples, and tables about them.

    ``kernels``: {task: Kernel}; ``lora``: {task: LoRA-only values [N, N, C, C]}; ``batches``: {task: the kernel's
    tokenized examples, ``{"input_ids", "attention_mask": [N, L], "labels": [N]}``};
    ``per_task``: spectrum of the LoRA kernel per task, with κ_λ for every λ of ``lambdas``; ``kappa_lambda``:
    summary of κ_λ across tasks per λ (:func:`kappa_lambda_table`); ``heads``: λmax and κ with and without the head.
    """

    kernels: dict
    lora: dict
    batches: dict
    per_task: pd.DataFrame
    heads: pd.DataFrame
    tokenizer: object
    lora_params: int
    kappa_lambda: pd.DataFrame = field(default_factory=pd.DataFrame)
    text: dict = field(default_factory=dict)


def task_kernels(tasks, cfg: Scale, seed: int = 0, focus_task: str | None = None, lambdas=LAMBDAS) -> TaskKernels:
    """The trainable-parameter eNTK of ``cfg.model`` + LoRA on ``cfg.ntk_n`` examples of every task, its LoRA blocks'
    spectrum (κ, κ_λ for each λ of ``lambdas`` with N = ``cfg.ntk_n``, effective rank, top-10 % trace share) and
    what the head adds."""
    focus = focus_task if focus_task in tasks else tasks[0]
    kernels, lora, batches, rows, head_rows = {}, {}, {}, [], []
    for key in tasks:
        run = prepare_chapter(key, cfg, seed, n_train=cfg.ntk_n, n_heldout=0)  # head trained: params="trainable"
        num_labels, batches[key], tokenizer = run.num_labels, run.train, run.tokenizer
        K = ntk.empirical_ntk(run.model, run.train, params="trainable")
        if key == focus:
            focus_model = run.model
        kernels[key], lora[key] = K, K.blocks(exclude=("head",))
        rep, full = spectral.spectrum_report(lora[key]), spectral.spectrum_report(K)
        rows.append({"task": key, "C": num_labels, "N·C": rep.n, "λmax": rep.lambda_max, "λmin": rep.lambda_min,
                     "κ": rep.kappa, **{_kl(lam): _kappa_lambda(rep, cfg.ntk_n, lam) for lam in lambdas if lam > 0},
                     "eff. rank": rep.effective_rank, "part. ratio": rep.participation_ratio,
                     "top 10 % share": spectral.top_share(rep.eigenvalues, 0.1), "negative": rep.n_negative,
                     "seconds": K.seconds, "memory MiB": memory_mib(K), "note": rep.note})
        head_rows.append({"task": key, "λmax LoRA": rep.lambda_max, "λmax LoRA+head": full.lambda_max,
                          "κ LoRA": rep.kappa, "κ LoRA+head": full.kappa,
                          "head share of tr K": spectral.layer_shares(K.per_layer).get("head", 0.0),
                          "head-gradient cosine": _median_head_cosine(K),
                          **{f"κ_λ LoRA+head λ={lam:g}": _kappa_lambda(full, cfg.ntk_n, lam)
                             for lam in lambdas if lam > 0}})
    per_task, heads = pd.DataFrame(rows).set_index("task"), pd.DataFrame(head_rows).set_index("task")
    counts = models.count_parameters(focus_model)
    result = TaskKernels(kernels, lora, batches, per_task, heads, tokenizer, counts["lora"])
    result.kappa_lambda = kappa_lambda_table(per_task, cfg.ntk_n, lambdas)
    result.text = {**_task_text(per_task, heads, cfg, counts),
                   **_kappa_lambda_text(result.kappa_lambda, per_task, cfg.ntk_n),
                   **_head_kappa_lambda_text(per_task, heads, lambdas), "model_layers": models.num_layers(focus_model)}
    return result


def _kl(lam: float) -> str:
    """Column name of κ_λ in the per-task table."""
    return f"κ_λ λ={lam:g}"


def _kappa_lambda(rep: spectral.SpectrumReport, n_examples: int, lam: float) -> float:
    """κ_λ from the report's eigenvalues (``linft.predict.kappa_lambda``; λ = 0 keeps κ's ``inf`` for λmin ≤ 0)."""
    if lam == 0:
        return rep.kappa
    return predict.kappa_lambda(rep.eigenvalues, N=n_examples, lam=lam)


def _median_head_cosine(K: ntk.Kernel) -> float:
    """Median over example pairs i ≠ j of the cosine between the head gradients of logit 0 (for a linear head: the
    pooled features, with a 1 for the bias), from the head block; NaN without a head block or with one example."""
    head = K.per_layer.get("head")
    if head is None or head.shape[0] < 2:
        return float("nan")
    gram = head[..., 0, 0] if head.dim() == 4 else head
    norms = torch.sqrt(torch.diagonal(gram))
    cos = gram / torch.outer(norms, norms)
    off = ~torch.eye(gram.shape[0], dtype=torch.bool)
    return float(cos[off].median())


def kappa_lambda_table(per_task: pd.DataFrame, n_examples: int, lambdas=LAMBDAS) -> pd.DataFrame:
    """κ_λ across tasks per λ: its range, the spread max/min, Nλ/max λmax, and the Spearman rank correlation of the
    tasks' κ_λ with their κ and with their λmax (finite values only)."""
    rows = []
    for lam in lambdas:
        values = per_task["κ"] if lam == 0 else per_task[_kl(lam)]
        finite = values.replace([np.inf, -np.inf], np.nan).dropna()
        ok = finite.index
        rows.append({"λ": lam, "Nλ": n_examples * lam, "Nλ / max λmax": n_examples * lam / per_task["λmax"].max(),
                     "κ_λ min": finite.min(), "κ_λ max": finite.max(), "spread max/min": finite.max() / finite.min(),
                     "(κ_λ−1) spread": (finite.max() - 1) / (finite.min() - 1) if finite.min() > 1 else np.nan,
                     "rank corr. with κ": _spearman(finite, per_task.loc[ok, "κ"]),
                     "rank corr. with λmax": _spearman(finite, per_task.loc[ok, "λmax"])})
    return pd.DataFrame(rows).set_index("λ")


def kappa_lambda_curve(per_task: pd.DataFrame, n_examples: int, lambdas=None) -> pd.DataFrame:
    """Tidy (task, lam, kappa_lambda) on a grid of λ from each task's λmax and λmin (``linft.predict.kappa_lambda`` of
    the two extreme eigenvalues: κ_λ needs nothing else). Default grid: 40 log-spaced λ from a hundredth of the
    smallest μmin/N (where κ_λ ≈ κ) to 10²."""
    if lambdas is None:
        positive = per_task["λmin"][per_task["λmin"] > 0] / n_examples
        low = np.log10(positive.min() / 100) if len(positive) else -8.0
        grid = np.logspace(min(low, 1.0), 2, 40)
    else:
        grid = np.asarray(lambdas, dtype=float)
    return pd.DataFrame([{"task": key, "lam": float(lam),
                          "kappa_lambda": predict.kappa_lambda([row["λmin"], row["λmax"]], N=n_examples, lam=lam)}
                         for key, row in per_task.iterrows() for lam in grid])


def _spearman(a: pd.Series, b: pd.Series) -> float:
    """Spearman rank correlation (NaN for fewer than 3 values or a constant series)."""
    if len(a) < 3 or a.nunique() < 2 or b.nunique() < 2:
        return float("nan")
    return float(a.rank().corr(b.rank()))


def _kappa_lambda_text(table: pd.DataFrame, per_task: pd.DataFrame, n_examples: int) -> dict:
    """Glue values for the κ_λ paragraph: κ's spread across tasks, one sentence on κ_λ for every λ > 0, and which
    of kernel and anchor sets the slowest rate at the smallest λ > 0, and the range of μmin/N across tasks."""
    positive = [lam for lam in table.index if lam > 0]
    parts = []
    for lam in positive:
        row = table.loc[lam]
        parts.append(f"at λ = {lam:g} (Nλ = {row['Nλ']:g}), κ_λ runs from {_near_one(row['κ_λ min'])} to "
                     f"{_near_one(row['κ_λ max'])}, the largest {_excess(row['spread max/min'])} the smallest (rank "
                     f"correlation of the tasks' κ_λ with their κ {_fmt_corr(row['rank corr. with κ'])}, with their "
                     f"λmax {_fmt_corr(row['rank corr. with λmax'])})")
    text = {"kl_lams": ", ".join(f"{lam:g}" for lam in positive), "kl_summary": "; ".join(parts) or "no λ > 0 given",
            "kappa_spread": f"{table.loc[0.0, 'spread max/min']:.3g}" if 0.0 in table.index else "n/a",
            "kl_rate_lo": f"{(per_task['λmin'] / n_examples).min():.2g}",
            "kl_rate_hi": f"{(per_task['λmin'] / n_examples).max():.2g}"}
    if positive:
        lam = min(positive)
        row = table.loc[lam]
        ratio, c_kappa, c_lmax = row["Nλ / max λmax"], row["rank corr. with κ"], row["rank corr. with λmax"]
        if ratio > 1:
            text["kl_regime"] = (f"Already at λ = {lam:g}, Nλ is {ratio:.3g} times the largest λmax of any task, so "
                                 "κ_λ ≈ 1 + (μmax − μmin)/(Nλ): the anchor, not the kernel's smallest eigenvalue, "
                                 "sets the slowest rate")
        else:
            text["kl_regime"] = (f"At λ = {lam:g}, Nλ is only {ratio:.3g} times the largest λmax: the kernel still "
                                 "sets part of the spread of rates")
        if np.isfinite(c_kappa) and np.isfinite(c_lmax):
            closer = "more closely than" if c_lmax > c_kappa else "no more closely than"
            text["kl_regime"] += (f". The order of the tasks by κ_λ at λ = {lam:g} follows their λmax (rank "
                                  f"correlation {c_lmax:.2f}) {closer} their κ ({c_kappa:.2f})")
    return text


def _head_kappa_lambda_text(per_task: pd.DataFrame, heads: pd.DataFrame, lambdas) -> dict:
    """κ_λ at the smallest λ > 0 with and without the head, across tasks (glue values hkl_*)."""
    positive = [lam for lam in lambdas if lam > 0]
    if not positive:
        return {"hkl_lam": "n/a", "hkl_lo": "n/a", "hkl_hi": "n/a", "hkl_lora_lo": "n/a", "hkl_lora_hi": "n/a"}
    lam = min(positive)
    with_head, lora = heads[f"κ_λ LoRA+head λ={lam:g}"], per_task[_kl(lam)]
    return {"hkl_lam": f"{lam:g}", "hkl_lo": _near_one(with_head.min()), "hkl_hi": _near_one(with_head.max()),
            "hkl_lora_lo": _near_one(lora.min()), "hkl_lora_hi": _near_one(lora.max())}


def _near_one(value: float) -> str:
    """A number ≥ 1 for prose: "1 + 1.8e-02" when it is within 10 % of 1 (so the digits that differ show), else 3
    significant digits."""
    if not np.isfinite(value):
        return "∞"
    return f"1 + {value - 1:.2g}" if 1 <= value < 1.1 else f"{value:.3g}"


def _excess(ratio: float) -> str:
    """How much one positive number exceeds another, from their ratio: "2.84 times" or "0.72 % above"."""
    if not np.isfinite(ratio):
        return "infinitely above"
    return f"{ratio:.3g} times" if ratio >= 1.1 else f"{(ratio - 1) * 100:.2g} % above"


def _fmt_corr(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.2f}"


def _task_text(per_task: pd.DataFrame, heads: pd.DataFrame, cfg: Scale, counts: dict) -> dict:
    finite = per_task["κ"].replace(np.inf, np.nan).dropna()
    n_inf = int(np.isinf(per_task["κ"]).sum())
    erank_frac = per_task["eff. rank"] / per_task["N·C"]
    ratio = heads["λmax LoRA+head"] / heads["λmax LoRA"]
    share, cosine = heads["head share of tr K"].median(), heads["head-gradient cosine"].median()
    return {
        "n_tasks": len(per_task), "ntk_n": cfg.ntk_n, "max_length": cfg.max_length, "model_name": cfg.model,
        "lora_params": f"{counts['lora']:,}", "lora_targets": ", ".join(cfg.lora_targets),
        "kappa_lo_task": finite.idxmin() if len(finite) else "none",
        "kappa_lo": f"{finite.min():.3g}" if len(finite) else "inf",
        "kappa_hi_task": finite.idxmax() if len(finite) else "none",
        "kappa_hi": f"{finite.max():.3g}" if len(finite) else "inf",
        "inf_kappa_text": ("every task's kernel is positive definite (finite κ)" if n_inf == 0 else
                           f"{n_inf} task(s) have a singular or indefinite kernel "
                           "(κ = ∞, see the notes under the table)"),
        "erank_lo": f"{per_task['eff. rank'].min():.1f}", "erank_hi": f"{per_task['eff. rank'].max():.1f}",
        "erank_frac_lo": f"{erank_frac.min():.0%}", "erank_frac_hi": f"{erank_frac.max():.0%}",
        "pr_lo": f"{per_task['part. ratio'].min():.1f}", "pr_hi": f"{per_task['part. ratio'].max():.1f}",
        "top10_lo": f"{per_task['top 10 % share'].min():.0%}", "top10_hi": f"{per_task['top 10 % share'].max():.0%}",
        "tasks_seconds": f"{per_task['seconds'].sum():.0f}",
        "slowest_task": per_task["seconds"].idxmax(), "slowest_seconds": f"{per_task['seconds'].max():.1f}",
        "max_mib": f"{per_task['memory MiB'].max():.0f}",
        "head_ratio_lo": f"{ratio.min():.3g}", "head_ratio_hi": f"{ratio.max():.3g}",
        "head_share_median": f"{share:.1%}", "head_mostly": "mostly" if share > 0.5 else "only partly",
        "head_param_share": f"{counts['head'] / counts['trainable']:.1%}", "head_params": f"{counts['head']:,}",
        "head_cosine": f"{cosine:.2f}",
        "head_cosine_verdict": ("point in similar directions, so the head block adds a large common component to "
                                "every entry" if cosine > 0.5 else "are not strongly aligned, so the head block is "
                                "not one common component of the entries"),
    }


def head_seed_kernels(tk: TaskKernels, focus_task: str, cfg: Scale, seed: int = 0, head_seeds=(0, 1, 2),
                      lambdas=LAMBDAS) -> tuple[pd.DataFrame, dict]:
    """The LoRA kernel of a frozen-head model on the focus task's examples for several head seeds (LoRA A fixed by
    ``seed``): ‖W_head‖_F, λmax, λmin, κ and κ_λ per head seed.

    The LoRA gradients backpropagate through the head, so the LoRA kernel depends on it (for a linear head on top of
    everything LoRA touches, K_LoRA(x, x')_cc' = w_cᵀ M(x, x') w_c'). For the head seed equal to ``seed`` the kernel
    is compared with the per-task kernel's LoRA blocks (``same_as_task_kernel``: relative max-abs difference).
    Returns (table indexed by head seed, summary with the spreads, that difference, how many pairs of tasks differ in κ
    by more than the head-seed spread, and glue values under ``"text"``).
    """
    batch = tk.batches[focus_task]
    num_labels = data.get_task(focus_task).num_labels
    rows, error = [], float("nan")
    for head_seed in head_seeds:
        model = frozen_head_model(cfg, num_labels, seed, head_seed=head_seed)
        K = ntk.empirical_ntk(model, batch, params="trainable")
        rep = spectral.spectrum_report(K)
        head_norm = sum(float(p.detach().double().pow(2).sum()) for n, p in model.named_parameters()
                        if models.is_head_param(n) and n.endswith("weight"))
        rows.append({"head seed": head_seed, "‖W_head‖_F": head_norm**0.5, "λmax": rep.lambda_max,
                     "λmin": rep.lambda_min, "κ": rep.kappa,
                     **{_kl(lam): _kappa_lambda(rep, cfg.ntk_n, lam) for lam in lambdas if lam > 0},
                     "params": K.params, "seconds": K.seconds})
        if head_seed == seed:
            ref = tk.lora[focus_task]
            error = float((K.values - ref).abs().max() / ref.abs().max())
    table = pd.DataFrame(rows).set_index("head seed")
    summary = {"kappa_spread": float(table["κ"].max() / table["κ"].min()),
               "lmax_spread": float(table["λmax"].max() / table["λmax"].min()),
               "same_as_task_kernel": error, "n_seeds": len(table)}
    summary["text"] = {
        "hs_n": len(table), "hs_kappa_lo": f"{table['κ'].min():.3g}", "hs_kappa_hi": f"{table['κ'].max():.3g}",
        "hs_kappa_spread": f"{summary['kappa_spread']:.3g}", "hs_lmax_lo": f"{table['λmax'].min():.3g}",
        "hs_lmax_hi": f"{table['λmax'].max():.3g}", "hs_lmax_spread": f"{summary['lmax_spread']:.3g}",
        "hs_same": f"{error:.1e}", "hs_norm_lo": f"{table['‖W_head‖_F'].min():.3g}",
        "hs_norm_hi": f"{table['‖W_head‖_F'].max():.3g}",
    }
    finite = tk.per_task["κ"].replace([np.inf, -np.inf], np.nan).dropna().to_numpy()
    ratios = [max(a, b) / min(a, b) for i, a in enumerate(finite) for b in finite[i + 1:]]
    summary["task_pairs"] = len(ratios)
    summary["task_pairs_beyond"] = int(sum(r > summary["kappa_spread"] for r in ratios))
    summary["text"].update({"hs_pairs": summary["task_pairs"], "hs_pairs_beyond": summary["task_pairs_beyond"]})
    return table, summary


def lanczos_check(tk: TaskKernels) -> dict:
    """κ of the largest LoRA kernel by Lanczos (one extreme eigenvalue each end) against the dense κ."""
    task = tk.per_task["N·C"].idxmax()
    big = spectral.as_matrix(tk.lora[task])
    start = time.perf_counter()
    ext = spectral.extreme_eigenvalues(big, k=1, which="both", method="lanczos")
    seconds = time.perf_counter() - start
    kappa = float(ext["largest"][0] / ext["smallest"][0])
    error = abs(kappa - tk.per_task.loc[task, "κ"]) / tk.per_task.loc[task, "κ"]
    return {"task": task, "size": big.shape[0], "kappa": kappa, "seconds": seconds, "error": error}


def layer_share_table(tk: TaskKernels) -> pd.DataFrame:
    """Tidy (task, layer, share): each layer's share of the LoRA kernel's trace."""
    rows = []
    for key, K in tk.kernels.items():
        shares = spectral.layer_shares({k: v for k, v in K.per_layer.items() if k != "head"})
        rows += [{"task": key, "layer": layer, "share": s} for layer, s in shares.items()]
    return pd.DataFrame(rows)


def block_checks(tk: TaskKernels, focus_task: str, cfg: Scale, seed: int = 0, n_check: int = 16) -> dict:
    """Σ_l K_l against K on the focus task, and the LoRA blocks against the trainable-parameter kernel of the same
    model with its head frozen (:func:`frozen_head_model`) on the first ``n_check`` examples (relative max-abs
    errors): the kernel the κ experiments are about."""
    focus = tk.kernels[focus_task]
    sum_error = float((sum(focus.per_layer.values()) - focus.values).abs().max() / focus.values.abs().max())
    n_check = min(n_check, cfg.ntk_n)
    direct = ntk.empirical_ntk(frozen_head_model(cfg, data.get_task(focus_task).num_labels, seed),
                               take(tk.batches[focus_task], n_check), params="trainable")
    lora = tk.lora[focus_task]
    direct_error = float((lora[:n_check, :n_check] - direct.values).abs().max() / direct.values.abs().max())
    return {"sum_error": sum_error, "direct_error": direct_error, "n_check": n_check}


def kappa_growth(tk: TaskKernels, max_n: int) -> tuple[pd.DataFrame, dict]:
    """κ of the LoRA kernel on nested samples N' = 4, 8, …, ≤ ``max_n`` (principal sub-matrices).

    Returns the tidy (task, n, kappa) frame and a summary: the N grid, the task × N table, whether κ is monotone
    on every task, and the median growth factor.
    """
    ns = [n for n in (2**k for k in range(2, 12)) if n <= max_n]
    rows = [{"task": key, "n": n, "kappa": spectral.condition_number(values[:n, :n])}
            for key, values in tk.lora.items() for n in ns]
    frame = pd.DataFrame(rows)
    growth = frame.pivot(index="task", columns="n", values="kappa")
    monotone = bool((growth.diff(axis=1).iloc[:, 1:] >= -1e-9 * growth.iloc[:, 1:]).all().all())
    fold = (growth[ns[-1]] / growth[ns[0]]).replace([np.inf, -np.inf], np.nan)
    return frame, {"ns": ns, "growth": growth, "monotone": monotone, "fold_median": float(fold.median())}


def target_set_kernels(tk: TaskKernels, focus_task: str, cfg: Scale, seed: int = 0,
                       target_sets=None) -> tuple[pd.DataFrame, list[dict]]:
    """Spectrum of the LoRA kernel (frozen head) on the focus task's examples for each LoRA target set, and the
    nesting check for every pair of sets whose modules are nested.

    ``add_lora`` draws each module's A from a seed of its own name, so the adapters of a smaller set are the same in
    a larger one and the larger set's kernel is the smaller's plus a PSD term. For each such pair the check records
    λmin(K_large − K_small)/λmax(K_large) (≥ 0 up to round-off when nested) and whether every sorted eigenvalue of
    the larger kernel is at least the smaller's (Weyl). Returns (table, [check per nested pair]).
    """
    focus, focus_batch = tk.kernels[focus_task], tk.batches[focus_task]
    num_labels = data.get_task(focus_task).num_labels
    base = models.load(cfg.model, num_labels=2).model
    default = models.match_targets(base, cfg.lora_targets)
    rows, kernels_by_set = [], {}
    for label, targets in (target_sets or TARGET_SETS).items():
        modules = models.match_targets(base, targets)
        if modules == default:  # the per-task kernel already has these adapters
            K_t, values, n_params = focus, tk.lora[focus_task], tk.lora_params
        else:
            K_t = ntk.empirical_ntk(frozen_head_model(cfg, num_labels, seed, targets=targets), focus_batch,
                                    params="trainable")
            values, n_params = K_t.values, K_t.n_params
        kernels_by_set[label] = (set(modules), spectral.as_matrix(values))
        rep = spectral.spectrum_report(values)
        rows.append({"targets": label, "task": focus_task, "LoRA params": n_params, "λmax": rep.lambda_max,
                     "λmin": rep.lambda_min, "kappa": rep.kappa, "eff. rank": rep.effective_rank,
                     "seconds": K_t.seconds, "memory MiB": memory_mib(K_t)})
    nested = []
    for small, (small_modules, K_small) in kernels_by_set.items():
        for large, (large_modules, K_large) in kernels_by_set.items():
            if small_modules < large_modules:
                ev_small, ev_large = torch.linalg.eigvalsh(K_small), torch.linalg.eigvalsh(K_large)
                top = float(ev_large[-1])
                nested.append({"smaller": small, "larger": large,
                               "min_eig_difference_rel": float(torch.linalg.eigvalsh(K_large - K_small)[0]) / top,
                               "eigenvalues_dominate": bool((ev_large >= ev_small - 1e-9 * top).all()),
                               "kappa_ratio": spectral.condition_number(K_large) / spectral.condition_number(K_small)})
    return pd.DataFrame(rows), nested


def kernel_variants(tk: TaskKernels, focus_task: str, cfg: Scale, seed: int = 0) -> tuple[pd.DataFrame, dict, dict]:
    """SGD, SignGD and asymmetric SignGD kernels (LoRA, frozen head) on the focus task.

    Every variant is reported by the spectrum of its symmetric part (K + Kᵀ)/2 (the kernel itself for SGD and
    SignGD) and by σmax/σmin of K itself; the asymmetric kernel's complex eigenvalues are not reported.
    Returns (table per variant, {variant: values}, {variant: correlation of entries with SGD's}).
    """
    focus, focus_batch = tk.kernels[focus_task], tk.batches[focus_task]
    values = {"sgd": tk.lora[focus_task]}
    rows = [{"kernel": "sgd", "seconds": focus.seconds, "memory MiB": memory_mib(focus)}]
    for name in ("signgd", "asym_signgd"):
        K_v = ntk.empirical_ntk(frozen_head_model(cfg, data.get_task(focus_task).num_labels, seed), focus_batch,
                                params="trainable", kernel=name)
        values[name] = K_v.values
        rows.append({"kernel": name, "seconds": K_v.seconds, "memory MiB": memory_mib(K_v)})
    for row in rows:
        matrix = spectral.as_matrix(values[row["kernel"]])
        rep = spectral.spectrum_report(spectral.symmetric_part(matrix))
        row.update({"asymmetry": spectral.asymmetry(matrix), "λmax (sym)": rep.lambda_max,
                    "λmin (sym)": rep.lambda_min, "κ (sym)": rep.kappa,
                    "σmax/σmin": spectral.singular_condition_number(matrix), "eff. rank (sym)": rep.effective_rank,
                    "note": rep.note})
    sgd = spectral.as_matrix(values["sgd"]).flatten()
    corr = {k: float(np.corrcoef(sgd, spectral.as_matrix(v).flatten())[0, 1]) for k, v in values.items() if k != "sgd"}
    return pd.DataFrame(rows).set_index("kernel"), values, corr


def nesting_text(nested: list[dict], targets_df: pd.DataFrame) -> dict:
    """Glue values for the target-set paragraph: the best set, the spread, and a sentence on each nested pair."""
    best = targets_df.loc[targets_df["kappa"].idxmin()]
    parts = []
    for check in nested:
        holds = check["min_eig_difference_rel"] >= -1e-9 and check["eigenvalues_dominate"]
        parts.append(f"K({check['larger']}) − K({check['smaller']}) has smallest eigenvalue "
                     f"{check['min_eig_difference_rel']:.2g} × λmax, and every eigenvalue of the larger kernel is "
                     f"{'at least' if check['eigenvalues_dominate'] else 'NOT always at least'} the corresponding one "
                     f"of the smaller: the kernels {'are' if holds else 'are NOT'} nested; κ changes by a factor "
                     f"{check['kappa_ratio']:.3g}")
    return {"best_targets": best["targets"], "best_targets_kappa": f"{best['kappa']:.3g}",
            "targets_spread": f"{targets_df['kappa'].max() / targets_df['kappa'].min():.2g}",
            "nesting_text": "; ".join(parts) if parts else "no two target sets here are nested"}


def variants_text(variants_df: pd.DataFrame, corr: dict) -> dict:
    """Glue values for the kernel-variant paragraph (κ of the symmetric part, its λmin sign, σmax/σmin per variant)."""
    text = {"corr_signgd": f"{corr['signgd']:.3f}", "corr_asym": f"{corr['asym_signgd']:.3f}"}
    for key, name in (("sgd", "sgd"), ("signgd", "signgd"), ("asym", "asym_signgd")):
        row = variants_df.loc[name]
        text.update({f"kappa_{key}": f"{row['κ (sym)']:.3g}", f"sigma_kappa_{key}": f"{row['σmax/σmin']:.3g}",
                     f"lmin_sign_{key}": "positive" if row["λmin (sym)"] > 0 else "not positive"})
    text["asymmetry"] = f"{variants_df.loc['asym_signgd', 'asymmetry']:.2g}"
    return text


def decoder_comparison(tk: TaskKernels, focus_task: str, cfg: Scale, decoder: str, decoder_n: int,
                       seed: int = 0) -> tuple[pd.DataFrame, dict, str]:
    """The LoRA kernel of a decoder (same rank, same target aliases) on the first ``decoder_n`` focus examples,
    beside the encoder's sub-kernel on the same texts. Returns (table, the decoder's row, a sentence)."""
    n = min(decoder_n, cfg.ntk_n)
    # the same draw of the focus task's examples as the encoder's kernel, tokenized by the decoder's tokenizer
    run = prepare_chapter(focus_task, cfg, seed, n_train=cfg.ntk_n, n_heldout=0, head="frozen", model=decoder)
    load_seconds, model = run.seconds, run.model
    adapted = "/".join(name.removesuffix(".base_layer").split(".")[-1]
                       for name in models.match_targets(model, cfg.lora_targets, layers=[0]))
    n_layers = models.num_layers(model)
    K = ntk.empirical_ntk(model, take(run.train, n), params="trainable")
    dec, enc = spectral.spectrum_report(K), spectral.spectrum_report(tk.lora[focus_task][:n, :n])
    row = {"model": decoder, "layers": n_layers, "task": focus_task, "N": n, "LoRA params": K.n_params,
           "λmax": dec.lambda_max, "λmin": dec.lambda_min, "κ": dec.kappa, "eff. rank": dec.effective_rank,
           "seconds": K.seconds, "load seconds": load_seconds, "memory MiB": memory_mib(K)}
    enc_row = {"model": cfg.model, "layers": tk.text.get("model_layers"), "task": focus_task, "N": n,
               "LoRA params": tk.lora_params, "λmax": enc.lambda_max, "λmin": enc.lambda_min, "κ": enc.kappa,
               "eff. rank": enc.effective_rank}
    text = (f"On the first {n} {focus_task} examples, {decoder} ({n_layers} layers, head frozen) with LoRA "
            f"r={cfg.lora_rank} on {adapted} in every layer ({K.n_params:,} LoRA parameters) has κ = {dec.kappa:.3g} "
            f"(λmax = {dec.lambda_max:.3g}, λmin = {dec.lambda_min:.3g}), against κ = {enc.kappa:.3g} for "
            f"{cfg.model} on the same texts. The kernel took {K.seconds:.0f} s (loading the model "
            f"{load_seconds:.0f} s)")
    return pd.DataFrame([enc_row, row]).set_index("model"), row, text

