"""Chapter 3 (the empirical NTK of a LoRA-adapted language model): per-task spectra, the head's share, per-layer
blocks, κ against the number of examples, LoRA target sets, SGD/SignGD kernel variants, and a decoder.

Kernels are computed over ``params="trainable"`` (LoRA + head) once per task; the LoRA kernel (no head) is the
sum of its layer blocks, ``Kernel.blocks(exclude=("head",))``, shape [N, N, C, C].
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from linft import data, models, ntk, spectral
from linft.experiments.tasks import batch_of, lora_model, task_sample
from linft.scales import Scale

__all__ = ["TARGET_SETS", "TaskKernels", "task_kernels", "lanczos_check", "layer_share_table", "block_checks",
           "kappa_growth", "target_set_kernels", "kernel_variants", "decoder_comparison", "memory_mib"]

#: LoRA target sets compared in chapter 3, by label (architecture-aware aliases of :mod:`linft.models`)
TARGET_SETS = {"query, value": ("q", "v"), "query, key, value": ("q", "k", "v"),
               "attn_out, ffn_in, ffn_out": ("o", "ffn_in", "ffn_out")}


def memory_mib(K: ntk.Kernel) -> float:
    """The kernel code's own memory estimate for ``K`` (kernel plus stored per-example gradients), MiB."""
    return K.meta.get("estimated_bytes", 0) / 2**20


@dataclass
class TaskKernels:
    """One ``params="trainable"`` kernel per task on ``ntk_n`` training examples, and tables about them.

    ``kernels``: {task: Kernel}; ``lora``: {task: LoRA-only values [N, N, C, C]}; ``samples``: {task: Dataset};
    ``per_task``: spectrum of the LoRA kernel per task; ``heads``: λmax and κ with and without the head.
    """

    kernels: dict
    lora: dict
    samples: dict
    per_task: pd.DataFrame
    heads: pd.DataFrame
    tokenizer: object
    lora_params: int
    text: dict = field(default_factory=dict)


def task_kernels(
    tasks, cfg: Scale, seed: int = 0, ridge_rel: float = 1e-3, focus_task: str | None = None
) -> TaskKernels:
    """The trainable-parameter eNTK of ``cfg.model`` + LoRA on ``cfg.ntk_n`` examples of every task."""
    tokenizer = models.load(cfg.model, num_labels=2, seed=seed).tokenizer
    kernels, lora, samples, rows, head_rows = {}, {}, {}, [], []
    for key in tasks:
        num_labels = data.get_task(key).num_labels
        samples[key] = task_sample(key, cfg.ntk_n, seed)
        K = ntk.empirical_ntk(lora_model(cfg, num_labels, seed), batch_of(samples[key], tokenizer, cfg.max_length),
                              params="trainable")
        kernels[key], lora[key] = K, K.blocks(exclude=("head",))
        n_out = lora[key].shape[0] * num_labels
        rep = spectral.spectrum_report(lora[key], ridge=ridge_rel * float(torch.einsum("iicc->", lora[key])) / n_out)
        full = spectral.spectrum_report(K)
        rows.append({"task": key, "C": num_labels, "N·C": rep.n, "λmax": rep.lambda_max, "λmin": rep.lambda_min,
                     "κ": rep.kappa, "κ (ridge)": rep.kappa_ridge, "eff. rank": rep.effective_rank,
                     "part. ratio": rep.participation_ratio, "negative": rep.n_negative, "seconds": K.seconds,
                     "memory MiB": memory_mib(K), "note": rep.note})
        head_rows.append({"task": key, "λmax LoRA": rep.lambda_max, "λmax LoRA+head": full.lambda_max,
                          "κ LoRA": rep.kappa, "κ LoRA+head": full.kappa,
                          "head share of tr K": spectral.layer_shares(K.per_layer).get("head", 0.0)})
    per_task, heads = pd.DataFrame(rows).set_index("task"), pd.DataFrame(head_rows).set_index("task")
    focus = focus_task if focus_task in tasks else tasks[0]
    lora_params = models.count_parameters(lora_model(cfg, data.get_task(focus).num_labels, seed))["lora"]
    result = TaskKernels(kernels, lora, samples, per_task, heads, tokenizer, lora_params)
    result.text = _task_text(per_task, heads, cfg, ridge_rel, lora_params)
    return result


def _task_text(per_task: pd.DataFrame, heads: pd.DataFrame, cfg: Scale, ridge_rel: float, lora_params: int) -> dict:
    finite = per_task["κ"].replace(np.inf, np.nan).dropna()
    n_inf = int(np.isinf(per_task["κ"]).sum())
    erank_frac = per_task["eff. rank"] / per_task["N·C"]
    ratio = heads["λmax LoRA+head"] / heads["λmax LoRA"]
    return {
        "n_tasks": len(per_task), "ntk_n": cfg.ntk_n, "max_length": cfg.max_length, "model_name": cfg.model,
        "lora_params": f"{lora_params:,}",
        "kappa_lo_task": finite.idxmin() if len(finite) else "none",
        "kappa_lo": f"{finite.min():.3g}" if len(finite) else "inf",
        "kappa_hi_task": finite.idxmax() if len(finite) else "none",
        "kappa_hi": f"{finite.max():.3g}" if len(finite) else "inf",
        "inf_kappa_text": ("every task's kernel is positive definite (finite κ)" if n_inf == 0 else
                           f"{n_inf} task(s) have a singular or indefinite kernel "
                           "(κ = ∞, see the notes under the table)"),
        "erank_lo": f"{per_task['eff. rank'].min():.1f}", "erank_hi": f"{per_task['eff. rank'].max():.1f}",
        "erank_frac_lo": f"{erank_frac.min():.0%}", "erank_frac_hi": f"{erank_frac.max():.0%}",
        "ridge_rel": f"{ridge_rel:g}", "tasks_seconds": f"{per_task['seconds'].sum():.0f}",
        "slowest_task": per_task["seconds"].idxmax(), "slowest_seconds": f"{per_task['seconds'].max():.1f}",
        "max_mib": f"{per_task['memory MiB'].max():.0f}",
        "head_ratio_lo": f"{ratio.min():.3g}", "head_ratio_hi": f"{ratio.max():.3g}",
        "head_share_median": f"{heads['head share of tr K'].median():.1%}",
    }


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
    """Σ_l K_l against K on the focus task, and the LoRA blocks against a direct ``params="lora"`` kernel on the
    first ``n_check`` examples (relative max-abs errors)."""
    focus = tk.kernels[focus_task]
    sum_error = float((sum(focus.per_layer.values()) - focus.values).abs().max() / focus.values.abs().max())
    n_check = min(n_check, cfg.ntk_n)
    direct = ntk.empirical_ntk(lora_model(cfg, data.get_task(focus_task).num_labels, seed),
                               batch_of(tk.samples[focus_task].select(range(n_check)), tk.tokenizer, cfg.max_length),
                               params="lora")
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


def target_set_kernels(tk: TaskKernels, focus_task: str, cfg: Scale, seed: int = 0, target_sets=None) -> pd.DataFrame:
    """Spectrum of the LoRA kernel (no head) on the focus task's examples for each LoRA target set."""
    focus, focus_batch = tk.kernels[focus_task], batch_of(tk.samples[focus_task], tk.tokenizer, cfg.max_length)
    num_labels = data.get_task(focus_task).num_labels
    default = models.match_targets(models.load(cfg.model, num_labels=2).model, cfg.lora_targets)
    rows = []
    for label, targets in (target_sets or TARGET_SETS).items():
        base = models.load(cfg.model, num_labels=2).model
        if models.match_targets(base, targets) == default:  # the per-task kernel already has these adapters
            K_t, values, n_params = focus, tk.lora[focus_task], tk.lora_params
        else:
            K_t = ntk.empirical_ntk(lora_model(cfg, num_labels, seed, targets=targets), focus_batch, params="lora")
            values, n_params = K_t.values, K_t.n_params
        rep = spectral.spectrum_report(values)
        rows.append({"targets": label, "task": focus_task, "LoRA params": n_params, "λmax": rep.lambda_max,
                     "λmin": rep.lambda_min, "kappa": rep.kappa, "eff. rank": rep.effective_rank,
                     "seconds": K_t.seconds, "memory MiB": memory_mib(K_t)})
    return pd.DataFrame(rows)


def kernel_variants(tk: TaskKernels, focus_task: str, cfg: Scale, seed: int = 0) -> tuple[pd.DataFrame, dict, dict]:
    """SGD, SignGD and asymmetric SignGD kernels (LoRA, no head) on the focus task.

    Returns (table of spectra per variant, {variant: values}, {variant: correlation of entries with SGD's}).
    """
    focus, focus_batch = tk.kernels[focus_task], batch_of(tk.samples[focus_task], tk.tokenizer, cfg.max_length)
    values = {"sgd": tk.lora[focus_task]}
    rows = [{"kernel": "sgd", "seconds": focus.seconds, "memory MiB": memory_mib(focus)}]
    for name in ("signgd", "asym_signgd"):
        K_v = ntk.empirical_ntk(lora_model(cfg, data.get_task(focus_task).num_labels, seed), focus_batch,
                                params="lora", kernel=name)
        values[name] = K_v.values
        rows.append({"kernel": name, "seconds": K_v.seconds, "memory MiB": memory_mib(K_v)})
    for row in rows:
        rep = spectral.spectrum_report(values[row["kernel"]])
        row.update({"symmetric": rep.symmetric, "λmax": rep.lambda_max, "λmin": rep.lambda_min, "κ": rep.kappa,
                    "eff. rank": rep.effective_rank, "note": rep.note})
    sgd = spectral.as_matrix(values["sgd"]).flatten()
    corr = {k: float(np.corrcoef(sgd, spectral.as_matrix(v).flatten())[0, 1]) for k, v in values.items() if k != "sgd"}
    return pd.DataFrame(rows).set_index("kernel"), values, corr


def decoder_comparison(tk: TaskKernels, focus_task: str, cfg: Scale, decoder: str, decoder_n: int,
                       seed: int = 0) -> tuple[pd.DataFrame, dict, str]:
    """The LoRA kernel of a decoder (same rank, same target aliases) on the first ``decoder_n`` focus examples,
    beside the encoder's sub-kernel on the same texts. Returns (table, the decoder's row, a sentence)."""
    start = time.perf_counter()
    loaded = models.load(decoder, num_labels=data.get_task(focus_task).num_labels, seed=seed)
    load_seconds = time.perf_counter() - start
    adapted = "/".join(name.split(".")[-1] for name in models.match_targets(loaded.model, cfg.lora_targets, layers=[0]))
    model = models.add_lora(loaded.model, cfg.lora_targets, rank=cfg.lora_rank, seed=seed)
    n = min(decoder_n, cfg.ntk_n)
    K = ntk.empirical_ntk(model, batch_of(tk.samples[focus_task].select(range(n)), loaded.tokenizer, cfg.max_length),
                          params="lora")
    dec, enc = spectral.spectrum_report(K), spectral.spectrum_report(tk.lora[focus_task][:n, :n])
    row = {"model": decoder, "task": focus_task, "N": n, "LoRA params": K.n_params, "λmax": dec.lambda_max,
           "λmin": dec.lambda_min, "κ": dec.kappa, "eff. rank": dec.effective_rank, "seconds": K.seconds,
           "load seconds": load_seconds, "memory MiB": memory_mib(K)}
    enc_row = {"model": cfg.model, "task": focus_task, "N": n, "LoRA params": tk.lora_params, "λmax": enc.lambda_max,
               "λmin": enc.lambda_min, "κ": enc.kappa, "eff. rank": enc.effective_rank}
    text = (f"On the first {n} {focus_task} examples, {decoder} with LoRA r={cfg.lora_rank} on "
            f"{adapted} ({K.n_params:,} LoRA parameters) has κ = {dec.kappa:.3g} (λmax = {dec.lambda_max:.3g}, "
            f"λmin = {dec.lambda_min:.3g}), against κ = {enc.kappa:.3g} for {cfg.model} on the same texts. "
            f"The kernel took {K.seconds:.0f} s (loading the model {load_seconds:.0f} s)")
    return pd.DataFrame([enc_row, row]).set_index("model"), row, text

