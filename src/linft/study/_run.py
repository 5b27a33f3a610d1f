"""One run of a sweep: a pure function of its :class:`~linft.study.RunKey` (same key, same threads → same numbers).

Protocol of one run (the chapter-3 set-up at one LoRA configuration; its start is :func:`run_spec`, prepared by
:func:`linft.runspec.prepare`):

1. ``key.model`` with a ``C``-way classifier head seeded by ``key.seed`` and **frozen**, LoRA (rank, targets, layers
   of the key; A seeded per module by ``key.seed``, B = 0), so the trained parameters are exactly the LoRA matrices;
2. N = ``n_train`` examples of the task's train split and M = min(``n_test``, split size) of its test split, drawn
   with ``key.seed`` (the task's split is seeded by ``key.seed`` too), tokenized to ``max_length``;
3. the eNTK at initialization of exactly the trained parameters (``params="lora"``) on the N training examples,
   [N, N, C, C]: the SGD kernel for ``mse_gd``, the SignGD kernel ⟨sign ∇f, sign ∇f'⟩ for ``ce_adamw`` (a Gram
   matrix of sign vectors, so symmetric PSD; its symmetric part is what the spectrum is taken of). From its
   spectrum: κ, κ_λ = (μmax + Nλ)/(μmin + Nλ) at the run's λ, λmin, λmax, the trace and the entropy effective rank;
   and kernel (ridge) regression on the M held-out examples (the t → ∞ limit, and for ``mse_gd`` also after the
   run's steps at its step size);
4. fine-tuning from the same start: ``mse_gd`` = squared loss on one-hot targets, full-batch gradient descent with
   step η = 1/(μmax/N + λ) (:func:`linft.predict.descent_lr`, the descent condition of the linearized objective);
   ``ce_adamw`` = cross-entropy + AdamW at ``adamw_lr`` with minibatches of ``batch_size``; λ anchors the LoRA
   matrices, (λ/2)‖θ − θ0‖².

5. rival predictors, each with its cost: LogME on the Jacobian features (from the run's kernel, so within a task it
   varies with the configuration) and on the frozen model's pooled features (one value per task and seed)
   (:mod:`linft.transferability`); and the run itself read after its first ``short_steps`` steps (a short LoRA run, the
   cost-matched upper bound: its cost ``short_seconds`` is that fraction of the training time).

:func:`run_one` returns the result columns (:data:`RESULT_COLUMNS` less ``status``/``error``); :func:`attempt`
wraps it into a whole CSV row, recording a raised error as ``status="failed"`` with a one-line message.
"""

from __future__ import annotations

import importlib.metadata
import math
import socket
import time

from linft.study._config import RunKey

__all__ = ["RESULT_COLUMNS", "run_one", "attempt", "failed_row", "one_line"]

#: result columns of a run, in CSV order (after the key columns); see :func:`run_one`
RESULT_COLUMNS = (
    "status", "error",
    "n_classes", "n_train_used", "n_test_used", "n_params", "kernel",
    "kappa", "kappa_lambda", "lambda_min", "lambda_max", "trace", "effective_rank",
    "kr_acc", "kr_acc_at_steps", "train_loss_predicted", "logme_jacobian", "logme_frozen",
    "lr", "steps_done", "train_loss_init", "train_loss", "train_objective", "train_acc", "eval_loss", "eval_acc",
    "short_steps", "short_train_loss", "short_eval_loss", "short_eval_acc",
    "kernel_seconds", "logme_seconds", "train_seconds", "short_seconds", "run_seconds",
    "threads", "hostname", "linft_version", "torch_version", "transformers_version", "peft_version",
)

#: the columns that vary between identical runs (wall times, where it ran)
VOLATILE_COLUMNS = ("kernel_seconds", "logme_seconds", "train_seconds", "short_seconds", "run_seconds", "hostname")
#: the short run (a cost-matched rival predictor) is the same run read at this fraction of its steps
SHORT_FRACTION = 0.2

_MAX_ERROR = 400


def one_line(err: BaseException) -> str:
    """``"Type: first line of the message"``, at most 400 characters, no line breaks."""
    text = str(err).strip().splitlines()
    message = f"{type(err).__name__}: {text[0] if text else ''}".strip().rstrip(":")
    return message.replace("\r", " ")[:_MAX_ERROR]


def _versions() -> dict[str, str]:
    import linft

    out = {"linft_version": linft.__version__}
    for package in ("torch", "transformers", "peft"):
        try:
            out[f"{package}_version"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[f"{package}_version"] = ""
    return out


def host_columns(threads: int) -> dict:
    """Where and with what a run ran: ``threads``, ``hostname`` and the versions of linft, torch, transformers, peft."""
    return {"threads": threads, "hostname": socket.gethostname(), **_versions()}


def run_spec(key: RunKey):
    """The :class:`linft.runspec.RunSpec` of the run's start: frozen head, LoRA of the key, the kernel points *are*
    the N fine-tuning examples (``kernel_points="same"``), and the task split, the training sample and the M
    held-out (test) examples are all drawn with ``key.seed`` (``split_seed = seed``)."""
    from linft.runspec import LoraSpec, RunSpec

    lora = LoraSpec(targets=tuple(key.targets), layers=key.layers, rank=key.rank)
    return RunSpec(model=key.model, task=key.task, lora=lora, head="frozen", n_train=key.n_train,
                   n_kernel=key.n_train, kernel_points="same", n_heldout=key.n_test, max_length=key.max_length,
                   seed=key.seed, split_seed=key.seed)


def _setup(key: RunKey):
    """(model with frozen head + LoRA, train batch [N, L], test batch [M, L], C) of the run, on the device
    :func:`linft.device.pick_device` chose (GPU if any), from :func:`linft.runspec.prepare`."""
    from linft.runspec import prepare

    run = prepare(run_spec(key))
    return run.model, run.train, run.heldout, run.num_labels


def _kernel_columns(key: RunKey, model, train: dict, test: dict) -> tuple[dict, float]:
    """Spectrum and kernel-regression columns of the run's eNTK at initialization, and the GD step η.

    One kernel over the N training then the M test examples, [N + M, N + M, C, C], so each example's gradients are
    taken once; its blocks are the training kernel [:N, :N] and the test-train kernel [N:, :N] (both kernel
    variants are symmetric pairings of per-example gradients, so a block equals the kernel of its two batches).
    κ, κ_λ, λmin, λmax, trace, effective rank and kernel-regression accuracy are
    :func:`linft.kernel_summary.from_spectrum` of that spectrum.
    """
    from linft import LinftError, kernel_summary, ntk, predict, spectral
    from linft.batches import join_tokens

    kernel = "sgd" if key.setting == "mse_gd" else "signgd"
    n = train["labels"].shape[0]
    joint = ntk.empirical_ntk(model, join_tokens(train, test), params="lora", kernel=kernel)
    K = joint.first(n)
    K_test = joint.values[n:, :n]  # [M, N, C, C]
    spectrum = predict.KernelSpectrum.of(spectral.symmetric_part(K.matrix()), n_examples=n)
    f0, f0_test = K.outputs, joint.outputs[n:]  # f(θ0) from the kernel's own forward passes
    kr = predict.KernelRegression.fit(spectrum, train["labels"].cpu(), f0, key.lam)
    labels = test["labels"].cpu()
    lr = predict.descent_lr(spectrum, lam=key.lam) if key.setting == "mse_gd" else key.adamw_lr
    if not math.isfinite(lr):
        raise LinftError(f"the SGD kernel of run {key.label()} is zero, so no descent step exists: check the "
                         "LoRA targets (do they reach the classifier's input?)")
    at_steps = predicted = float("nan")
    if key.setting == "mse_gd":
        at_steps = kr.accuracy(K_test, f0_test, labels, step=key.steps, lr=lr)
        predicted = float(kr.curves(lr=lr, steps=key.steps).loss[-1])
    summary = kernel_summary.from_spectrum(spectrum, lam=key.lam, kr_acc=kr.accuracy(K_test, f0_test, labels))
    columns = {
        "n_params": K.n_params, "kernel": kernel, "_kernel": K,
        "kappa": summary.kappa, "kappa_lambda": summary.kappa_lambda, "lambda_min": summary.lambda_min,
        "lambda_max": summary.lambda_max, "trace": summary.trace, "effective_rank": summary.effective_rank,
        "kr_acc": summary.kr_acc, "kr_acc_at_steps": at_steps, "train_loss_predicted": predicted,
    }
    return columns, lr


def short_steps(steps: int) -> int:
    """Steps of the short run: the largest divisor of ``steps`` at most ``SHORT_FRACTION``·steps (≥ 1)."""
    if steps < 1:
        return 0
    cap = max(1, int(SHORT_FRACTION * steps))
    return max(d for d in range(1, cap + 1) if steps % d == 0)


def _logme_columns(model, train: dict, K) -> dict:
    """LogME on the run's Jacobian features (from its kernel) and on the frozen model's pooled features."""
    from linft.transferability import frozen_features, logme, logme_from_kernel

    labels = train["labels"].cpu()
    return {"logme_jacobian": logme_from_kernel(K, labels),
            "logme_frozen": logme(frozen_features(model, train), labels)}


def _train_columns(key: RunKey, model, train: dict, test: dict, lr: float) -> dict:
    from linft.device import seed_everything
    from linft.train import fine_tune

    seed_everything(key.seed)
    k = short_steps(key.steps)
    common = dict(lr=lr, steps=key.steps, lam=key.lam, seed=key.seed, log_every=max(k, 1),
                  track_gap=False, progress=False)
    if key.setting == "mse_gd":
        result = fine_tune(model, train, test, loss="mse", optimizer="gd", **common)
    else:
        result = fine_tune(model, train, test, loss="ce", optimizer="adamw", batch_size=key.batch_size, **common)
    final = result.final
    short = result.log.set_index("step").loc[k] if k else None
    return {"lr": lr, "steps_done": int(final["steps"]), "train_loss_init": float(final["R0"]),
            "short_steps": k, "short_train_loss": float(short["task_loss"]) if k else float("nan"),
            "short_eval_loss": float(short["eval_loss"]) if k else float("nan"),
            "short_eval_acc": float(short["eval_acc"]) if k else float("nan"),
            "train_loss": float(final["task_loss"]), "train_objective": float(final["loss"]),
            "train_acc": float(final["train_acc"]), "eval_loss": float(final["eval_loss"]),
            "eval_acc": float(final["eval_acc"])}


def run_one(key: RunKey, *, threads: int = 1) -> dict:
    """Run ``key`` (see the module docstring) with torch pinned to ``threads`` threads (restored afterwards).

    Returns {column: value} for every result column but ``status``/``error``: sizes (``n_classes``,
    ``n_train_used`` N, ``n_test_used`` M, ``n_params`` trained = LoRA parameters, ``kernel`` "sgd"|"signgd"); the
    kernel's ``kappa``, ``kappa_lambda`` (at ``key.lam``), ``lambda_min``, ``lambda_max``, ``trace``,
    ``effective_rank``; kernel-regression held-out accuracy ``kr_acc`` (t → ∞) and, for ``mse_gd``,
    ``kr_acc_at_steps`` and ``train_loss_predicted`` after ``key.steps`` steps (NaN for ``ce_adamw``); training:
    ``lr`` (the step used), ``steps_done``, ``train_loss_init``, ``train_loss`` (task loss; MSE or CE by setting),
    ``train_objective`` (+ the anchored penalty), ``train_acc``, ``eval_loss``, ``eval_acc`` on the M held-out
    examples; wall times ``kernel_seconds`` (both eNTKs, logits, spectrum, kernel regression), ``train_seconds``,
    ``run_seconds`` (everything, loading included); ``threads``, ``hostname`` and library versions.
    Raises whatever the run raises (:func:`attempt` records it instead).
    """
    import torch

    from linft import check_positive_int
    from linft.device import seed_everything

    threads = check_positive_int(threads, "threads")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        seed_everything(key.seed)
        model, train, test, num_labels = _setup(key)
        sizes = {"n_classes": num_labels, "n_train_used": int(train["labels"].shape[0]),
                 "n_test_used": int(test["labels"].shape[0])}
        t0 = time.perf_counter()
        kernel_columns, lr = _kernel_columns(key, model, train, test)
        t1 = time.perf_counter()
        logme_columns = _logme_columns(model, train, kernel_columns.pop("_kernel"))
        t2 = time.perf_counter()
        train_columns = _train_columns(key, model, train, test, lr)
        t3 = time.perf_counter()
        short = train_columns["short_steps"] / key.steps * (t3 - t2) if key.steps else 0.0
        return {**sizes, **kernel_columns, **logme_columns, **train_columns, "kernel_seconds": t1 - t0,
                "logme_seconds": t2 - t1, "train_seconds": t3 - t2, "short_seconds": short,
                "run_seconds": t3 - start, **host_columns(threads)}
    finally:
        torch.set_num_threads(previous)


def failed_row(key: RunKey, message: str, threads: int = 1) -> dict:
    """The CSV row of a failed run: its key, ``status="failed"``, ``error`` (one line) and where it ran."""
    return {**key.as_row(), "status": "failed", "error": message.replace("\n", " ")[:_MAX_ERROR],
            **host_columns(threads)}


def attempt(key: RunKey, threads: int = 1, run=None) -> dict:
    """The whole CSV row of ``key``: ``status="ok"`` with :func:`run_one`'s columns, or ``status="failed"`` with the
    error's first line when the run raises (any ``Exception``; ``KeyboardInterrupt`` still stops the sweep).
    ``run``: the function called as ``run(key, threads=threads)`` (default :func:`run_one`)."""
    run = run if run is not None else getattr(key, "runner", run_one)  # a protocol's key names its own run
    try:
        return {**key.as_row(), "status": "ok", "error": "", **run(key, threads=threads)}
    except Exception as err:  # a failed run is recorded and the sweep goes on
        return failed_row(key, one_line(err), threads)
