"""The reference protocol: a small calibration kernel before training, then a real fine-tuning run.

One run (a pure function of its :class:`ReferenceKey`, same threads → same numbers), as the reference study ran it
(``../shared/DESIGN.md``, "The reference protocol"), at a size two CPU cores can afford:

1. :func:`linft.runspec.prepare`: the model with a fresh head seeded by the run's seed (**trained**), LoRA of the
   configuration (A seeded per module, B = 0, α = ``alpha_ratio``·r), ``n_train`` fine-tuning examples drawn with
   the seed, the held-out test split (the same examples for every run; its first ``n_kr`` also serve kernel
   regression), and the calibration points: the **first** ``max(calib)`` examples of the fine-tuning sample.
2. Kernels at each calibration size N ∈ ``calib`` (prefixes; one :func:`linft.ntk.empirical_ntks` call per N, timed,
   over LoRA + head with three variants from one set of gradients):

   - ``ref``: the reference study's kernel: LoRA matrices only (the head block left out), asymmetric SignGD
     ⟨∇f, sign ∇f'⟩, per-class logits [N, N, C, C], as its released code;
   - ``trained``: the kernel of what is trained: LoRA + head, the SignGD kernel ⟨sign ∇f, sign ∇f'⟩ (the Adam-style
     sign kernel, symmetric);
   - the SGD kernel of LoRA + head, used only by two rivals: the gradient norm ‖∇L(θ0)‖ and LogME on the Jacobian
     features.

   Each kernel's :class:`linft.kernel_summary.KernelSummary` (κ, λmin, λmax, trace, effective rank) and its
   kernel-regression accuracy on the first ``n_kr`` held-out examples (one more kernel call between those and the
   largest calibration set, timed apart as ``kr_seconds``; its columns are sliced for every N). κ of ``n_draws``
   **disjoint** calibration draws of 32 examples (consecutive blocks of the calibration set, the first being the
   N = 32 prefix) give the kernel's own sampling spread.
3. Fine-tuning from the same θ0: cross-entropy, AdamW (weight decay 0) at ``lr`` for all configurations, linear
   warm-up over ``warmup`` of the steps then linear decay (the reference schedule), minibatches of ``batch_size``,
   ``epochs`` passes over the ``n_train`` examples; held-out accuracy and loss at step 0, after ``short_fraction`` of
   the steps (the short-run rival, its cost that fraction of the training time) and at the end; the training loss
   reached on the calibration prefix (part of the fine-tuning set) at the same steps.

Columns (one tidy row per run): :data:`REFERENCE_RESULT_COLUMNS`; per-N kernel columns are named
``<stat>_<kernel>_<N>`` (e.g. ``kappa_ref_32``, ``kr_acc_trained_256``), per-N rival columns ``<rival>_<N>``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields

from linft.runspec import LoraSpec, RunSpec

__all__ = ["ReferenceKey", "run_reference", "reference_result_columns", "KERNEL_NAMES", "KERNEL_STATS", "RIVALS"]

#: the two kernels of every run (see the module docstring)
KERNEL_NAMES = ("ref", "trained")
#: the statistics of each kernel at each N
KERNEL_STATS = ("kappa", "lambda_min", "lambda_max", "trace", "effective_rank", "kr_acc")
#: the kernel-based rivals at each N (beside the configuration's parameter count and the short run)
RIVALS = ("grad_norm", "logme_jacobian")


@dataclass(frozen=True)
class ReferenceKey:
    """One run of the reference protocol: its LoRA configuration's ``config`` name and :class:`RunSpec`, the
    training schedule (``epochs``, ``lr``, ``batch_size``, ``warmup``, ``short_fraction``), the calibration sizes
    ``calib`` (ascending; kernel points = the first ``max(calib)`` fine-tuning examples), ``n_draws`` disjoint
    draws of 32 and ``n_kr`` held-out examples for kernel regression."""

    config: str
    spec: RunSpec
    epochs: int
    lr: float
    batch_size: int
    warmup: float
    short_fraction: float
    calib: tuple[int, ...]
    n_draws: int
    n_kr: int

    def as_row(self) -> dict[str, str]:
        """The key columns as canonical strings (floats by ``repr``, ``calib`` as "16,32,...")."""
        row = {"protocol": "reference", "config": self.config, **self.spec.as_row()}
        for f in fields(self):
            if f.name in ("config", "spec"):
                continue
            value = getattr(self, f.name)
            row[f.name] = ",".join(str(n) for n in value) if f.name == "calib" else (
                repr(value) if isinstance(value, float) else str(value))
        return row

    @property
    def id(self) -> tuple[str, ...]:
        return tuple(self.as_row().values())

    def label(self) -> str:
        return f"{self.spec.task}/{self.config}/seed{self.spec.seed}"

    @property
    def steps(self) -> int:
        """Optimizer updates: ``epochs`` passes over ``n_train`` examples in minibatches of ``batch_size``."""
        return self.epochs * math.ceil(self.spec.n_train / self.batch_size)

    @property
    def short_steps(self) -> int:
        return max(1, round(self.short_fraction * self.steps))

    @staticmethod
    def runner(key, threads: int = 1) -> dict:
        return run_reference(key, threads=threads)


def reference_key_columns() -> tuple[str, ...]:
    """The key columns of a reference-protocol CSV, in order."""
    spec = RunSpec()
    key = ReferenceKey("c", spec, 1, 1e-3, 16, 0.0, 0.1, (16, 32), 1, 16)
    return tuple(key.as_row())


def reference_result_columns(calib, n_draws: int) -> tuple[str, ...]:
    """The result columns of a reference-protocol CSV for calibration sizes ``calib`` and ``n_draws`` draws."""
    per_n = []
    for n in calib:
        per_n += [f"{stat}_{kernel}_{n}" for kernel in KERNEL_NAMES for stat in KERNEL_STATS]
        per_n += [f"{rival}_{n}" for rival in RIVALS] + [f"kernel_seconds_{n}"]
    draws = [f"kappa_{kernel}_draw{d}" for kernel in KERNEL_NAMES for d in range(n_draws)]
    return (
        "status", "error", "n_classes", "n_train_used", "n_heldout_used", "n_kr_used", "n_params_lora",
        "n_params_trained", *per_n, *draws, "kr_seconds",
        "steps", "short_steps", "eval_majority", "eval_acc_init", "eval_loss_init", "train_loss_init",
        "short_eval_acc", "short_eval_loss", "short_train_loss",
        "eval_acc", "eval_loss", "train_loss", "train_acc",
        "prepare_seconds", "train_seconds", "short_seconds", "run_seconds",
        "threads", "hostname", "linft_version", "torch_version", "transformers_version", "peft_version",
    )


def _kernels(model, batch, batch2=None):
    """{"ref", "trained", "sgd"} kernels of LoRA + head from one set of gradients, and the seconds it took."""
    from linft import ntk

    start = time.perf_counter()
    out = ntk.empirical_ntks(model, batch, batch2, params="trainable", kernels=("asym_signgd", "signgd", "sgd"))
    asym = out["asym_signgd"]
    ref = asym.values - asym.per_layer.get("head", 0.0)  # LoRA only: the reference kernel leaves the head out
    return {"ref": ref, "trained": out["signgd"].values, "sgd": out["sgd"].values,
            "outputs": out["sgd"].outputs, "n_params_lora": asym.n_params - _head_params(model)}, \
        time.perf_counter() - start


def _head_params(model) -> int:
    from linft.models import is_head_param

    return sum(p.numel() for name, p in model.named_parameters() if p.requires_grad and is_head_param(name))


def _kernel_columns(key: ReferenceKey, prepared) -> dict:
    """Every kernel and kernel-rival column of the run (see the module docstring)."""
    from linft.kernel_summary import gradient_norm, summarize
    from linft.transferability import logme_from_kernel

    model, calib = prepared.model, prepared.kernel
    labels = calib["labels"].cpu()
    n_kr = min(key.n_kr, prepared.n_heldout)
    kr_batch = {k: v[:n_kr] for k, v in prepared.heldout.items()}
    largest = max(key.calib)
    t0 = time.perf_counter()
    test, _ = _kernels(model, kr_batch, calib)  # [M, N_max, C, C] blocks for kernel regression at every N
    columns: dict = {"kr_seconds": time.perf_counter() - t0, "n_kr_used": n_kr}
    labels_test = kr_batch["labels"].cpu()
    for n in key.calib:
        sub = {k: v[:n] for k, v in calib.items()}
        K, seconds = _kernels(model, sub)
        columns[f"kernel_seconds_{n}"] = seconds
        for name in KERNEL_NAMES:
            summary = summarize(K[name], K_test=test[name][:, :n], f0=K["outputs"], f0_test=test["outputs"],
                                labels=labels[:n], labels_test=labels_test, asymmetric=name == "ref")
            for stat in KERNEL_STATS:
                columns[f"{stat}_{name}_{n}"] = getattr(summary, stat)
        columns[f"grad_norm_{n}"] = gradient_norm(K["sgd"], K["outputs"], labels[:n])
        try:
            columns[f"logme_jacobian_{n}"] = logme_from_kernel(K["sgd"], labels[:n])
        except Exception:  # one class among the first n examples: LogME is undefined there
            columns[f"logme_jacobian_{n}"] = math.nan
        if n == largest:
            columns["n_params_lora"] = K["n_params_lora"]
            for name in KERNEL_NAMES:
                for d in range(key.n_draws):
                    block = K[name][32 * d: 32 * (d + 1), 32 * d: 32 * (d + 1)]
                    columns[f"kappa_{name}_draw{d}"] = summarize(block, asymmetric=name == "ref").kappa
    return columns


def _train_columns(key: ReferenceKey, prepared) -> dict:
    from linft.device import seed_everything
    from linft.train import fine_tune

    seed_everything(key.spec.seed)
    k = key.short_steps
    result = fine_tune(prepared.model, prepared.train, prepared.heldout, loss="ce", optimizer="adamw", lr=key.lr,
                       steps=key.steps, batch_size=key.batch_size, seed=key.spec.seed, schedule="linear",
                       warmup=key.warmup, log_steps=(k,), score_n=max(key.calib), track_gap=False, progress=False)
    log = result.log.set_index("step")
    first, short, last = log.loc[0], log.loc[k], log.loc[key.steps]
    return {"steps": key.steps, "short_steps": k, "eval_acc_init": float(first["eval_acc"]),
            "eval_loss_init": float(first["eval_loss"]), "train_loss_init": float(first["task_loss"]),
            "short_eval_acc": float(short["eval_acc"]), "short_eval_loss": float(short["eval_loss"]),
            "short_train_loss": float(short["task_loss"]), "eval_acc": float(last["eval_acc"]),
            "eval_loss": float(last["eval_loss"]), "train_loss": float(last["task_loss"]),
            "train_acc": float(last["train_acc"]), "_seconds_per_step": float(result.final["seconds_per_step"])}


def run_reference(key: ReferenceKey, *, threads: int = 1) -> dict:
    """Run ``key`` (see the module docstring) with torch pinned to ``threads`` threads (restored afterwards);
    returns every result column but ``status``/``error``. Raises whatever the run raises."""
    import torch

    from linft import check_positive_int
    from linft.device import seed_everything
    from linft.runspec import prepare
    from linft.study._run import host_columns

    threads = check_positive_int(threads, "threads")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        seed_everything(key.spec.seed)
        prepared = prepare(key.spec)
        labels = prepared.heldout["labels"].cpu()
        sizes = {"n_classes": prepared.num_labels, "n_train_used": int(prepared.train["labels"].shape[0]),
                 "n_heldout_used": prepared.n_heldout, "n_params_trained": sum(
                     p.numel() for p in prepared.model.parameters() if p.requires_grad),
                 "eval_majority": float(torch.bincount(labels).max()) / len(labels),
                 "prepare_seconds": prepared.seconds}
        kernel_columns = _kernel_columns(key, prepared)
        t0 = time.perf_counter()
        train_columns = _train_columns(key, prepared)
        train_seconds = time.perf_counter() - t0
        per_step = train_columns.pop("_seconds_per_step")
        return {**sizes, **kernel_columns, **train_columns, "train_seconds": train_seconds,
                "short_seconds": per_step * train_columns["short_steps"], "run_seconds": time.perf_counter() - start,
                **host_columns(threads)}
    finally:
        torch.set_num_threads(previous)


def reference_key(config: str, lora: LoraSpec, *, model: str, task: str, seed: int, sizes) -> ReferenceKey:
    """The :class:`ReferenceKey` of one configuration, task and seed at the sweep's ``sizes``."""
    spec = RunSpec(model=model, task=task, lora=lora, head="trained", n_train=sizes.n_train,
                   n_kernel=max(sizes.calib), kernel_points="train_prefix", n_heldout=sizes.n_eval,
                   max_length=sizes.max_length, seed=seed, split_seed=sizes.split_seed)
    return ReferenceKey(config=config, spec=spec, epochs=sizes.epochs, lr=sizes.lr, batch_size=sizes.batch_size,
                        warmup=sizes.warmup, short_fraction=sizes.short_fraction, calib=tuple(sizes.calib),
                        n_draws=sizes.n_draws, n_kr=sizes.n_kr)
