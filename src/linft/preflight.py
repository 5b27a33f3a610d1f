"""Preflight: what LoRA fine-tuning of a model on a task will do, predicted from the eNTK before any training.

:func:`preflight` (``linft predict``) loads the model and the task (a registry key or the user's file), attaches LoRA
at initialization (B = 0), computes the empirical NTK of the *trained* parameters on N training examples and between
M held-out examples of the task's **test** split (:data:`linft.runspec.HELDOUT_SPLIT`, the study's held-out split too)
and those N examples, and reads off, through :mod:`linft.predict` and the one kernel summary (``linft predict`` →
:func:`linft.preflight.preflight` → :func:`linft.kernel_summary.summarize`; here its
:func:`~linft.kernel_summary.from_spectrum`, on the spectrum the loss curves use):

- the spectrum: κ = λmax/λmin, κ_λ = (λmax + Nλ)/(λmin + Nλ), effective rank and trace of K ([N·C, N·C], or
  [N, N] for the logit difference of a binary task; see ``output`` below);
- the largest gradient-descent step without oscillation, η = 1/(λmax/N + λ) (:func:`linft.predict.descent_lr`),
  and the predicted training and held-out loss curves of GD with that step on the anchored squared loss
  (one-hot targets; :meth:`linft.predict.KernelRegression.curves` / ``eval_loss``);
- the held-out accuracy of kernel (ridge) regression, the t → ∞ limit of that run, with a bootstrap 95 % interval
  (:func:`linft.stats.accuracy_ci`), and the accuracy of the untrained model for comparison.

Outputs (``output``): ``"full"`` — the kernel of all C logits, [N·C, N·C], one-hot squared-loss targets;
``"logit_diff"`` — for a binary task, the kernel of z = f₁ − f₀, [N, N], targets ±1 (``mse_target="logit_diff"`` of
:func:`linft.train.task_loss`): z is the only function of the logits that binary cross-entropy depends on, and its
kernel needs one backward pass per example instead of two; ``"auto"`` (default) — ``logit_diff`` for binary tasks,
``full`` otherwise.

The head is ``"frozen"`` (default: the trained parameters, and so the kernel, are exactly the LoRA matrices,
``params="lora"``, as in chapter 3) or ``"trained"`` (LoRA + classifier head, ``params="trainable"``; the head
dominates that kernel). The work is split so the model load is timed apart from the prediction: :func:`prepare`
(load, LoRA, tokenize: :func:`linft.runspec.prepare` of :func:`run_spec`) then :func:`predict_prepared` (kernel,
eigen-decomposition, curves, accuracy); one kernel call
on the training and held-out examples together gives K and K(x, X) with one set of per-example gradients.

:func:`advise_layers` (``linft layers``) adapts every candidate layer once, computes the per-layer kernels
(:class:`linft.layers.LayerKernels`), recommends the ``budget`` layers that optimize κ_λ or λmin
(:func:`linft.layers.select_layers`) and reports, for that choice and for every baseline
(:func:`linft.layers.baselines`: first, last, random, largest trace, largest gradient, weight κ, all), the exact
values and the Weyl bound intervals computed from the per-layer spectra alone.

Reports are dataclasses with ``as_dict()``, ``rows()`` (tidy rows for CSV), ``save_plot(path)`` and a readable
``str()``. Bad input raises :class:`linft.LinftError` before any heavy work where it can be known then.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import nn

from linft import LinftError, check_choice, check_positive_int, data, kernel_summary, ntk, predict, runspec
from linft.batches import join_tokens
from linft.finding import finding_text, load_finding
from linft.regularize import check_lam
from linft.runspec import HEADS, LoraSpec, RunSpec
from linft.stats import accuracy_ci
from linft.userdata import looks_like_path, resolve_task

__all__ = ["PreparedRun", "PreflightReport", "LayerAdvice", "run_spec", "prepare", "predict_prepared", "preflight",
           "advise_layers", "HEADS", "OBJECTIVES", "OUTPUTS", "DEFAULT_STEPS", "DEFAULT_N_TEST"]

#: which outputs the predicted kernel is over: all logits, their difference (binary tasks), or that choice by task
OUTPUTS = ("auto", "full", "logit_diff")
#: what :func:`advise_layers` optimizes: the smallest κ_λ, or the largest λmin
OBJECTIVES = ("kappa_lambda", "lambda_min")
#: gradient-descent steps of the predicted loss curves when ``steps`` is None
DEFAULT_STEPS = 100
#: held-out examples for the kernel-regression accuracy by default (its 95 % interval is about ±8 points); each costs
#: a forward and a backward pass, as a training example does
DEFAULT_N_TEST = 256


# ---------------------------------------------------------------------------------------------- set-up


@dataclass
class PreparedRun:
    """A model with LoRA at θ0 and the tokenized examples a prediction starts from.

    ``model``: the peft model (LoRA B = 0; head trainable iff ``head == "trained"``); ``train``: ``{"input_ids",
    "attention_mask": [N, L], "labels": [N]}``; ``test``: the same for M held-out (validation) examples, or None;
    ``layers``: the adapted blocks; ``seconds``: wall time of :func:`prepare` (data, model, LoRA, tokenizing).
    """

    model: nn.Module
    tokenizer: object
    train: dict
    test: dict | None
    model_name: str
    task: str
    description: str
    num_labels: int
    layers: tuple[int, ...]
    targets: str
    rank: int
    head: str
    max_length: int
    seed: int
    seconds: float

    @property
    def params(self) -> str:
        """The ``empirical_ntk`` parameter set of the trained parameters."""
        return "lora" if self.head == "frozen" else "trainable"


def _targets_text(targets) -> str:
    return targets if isinstance(targets, str) else ",".join(map(str, targets))


def _check_common(head, rank, n, max_length, seed) -> None:
    check_choice("head", head, HEADS)
    check_positive_int(rank, "LoRA rank")
    check_positive_int(n, "n (training examples)")
    check_positive_int(max_length, "max_length")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise LinftError(f"seed must be a non-negative integer, got {seed!r}")


def run_spec(model: str = "minilm", task: str = "mr", *, layers=None, targets="qv", rank: int = 8, n: int = 256,
             n_test: int = 256, max_length: int = 64, seed: int = 0, head: str = "frozen", text_col: str = "text",
             label_col: str = "label") -> RunSpec:
    """The :class:`linft.runspec.RunSpec` of a prediction: the kernel points are the ``n`` training examples
    (``kernel_points="same"``), ``n_test`` held-out examples of the test split (:data:`linft.runspec.HELDOUT_SPLIT`),
    and ``seed`` draws everything, the task's split included (``split_seed = seed``)."""
    _check_common(head, rank, n, max_length, seed)
    if isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 0:
        raise LinftError(f"n_test must be an integer >= 0 (held-out examples), got {n_test!r}")
    if not isinstance(task, (str, Path)) or not str(task):
        raise LinftError(f"task must be a registry key or a path, got {task!r}")
    if str(task) not in data.TASKS and not looks_like_path(str(task)):
        resolve_task(task)  # raises the one-line "unknown task" error that lists the registry keys
    lora = LoraSpec(targets=targets, layers=layers, rank=rank)
    return RunSpec(model=model, task=str(task), lora=lora, head=head, n_train=n, n_kernel=n, kernel_points="same",
                   n_heldout=n_test, max_length=max_length, seed=seed, split_seed=seed, text_col=text_col,
                   label_col=label_col)


def prepare(model: str = "minilm", task: str = "mr", *, layers=None, targets="qv", rank: int = 8, n: int = 256,
            n_test: int = 256, max_length: int = 64, seed: int = 0, head: str = "frozen", text_col: str = "text",
            label_col: str = "label") -> PreparedRun:
    """Load ``task`` (registry key or path: :func:`linft.userdata.resolve_task`) and ``model`` (seeded head),
    attach LoRA (``targets``, ``rank``, α = 2·rank, on ``layers``: block indices, None = all), and tokenize a
    stratified sample of ``n`` training and ``min(n_test, test split size)`` held-out examples of the test split
    (:data:`linft.runspec.HELDOUT_SPLIT`, as the study; ``n_test`` 0: none) padded to ``max_length`` tokens, all
    through :func:`linft.runspec.prepare` of :func:`run_spec`. Seeded by ``seed`` throughout. Returns a
    :class:`PreparedRun`.
    """
    spec = run_spec(model, task, layers=layers, targets=targets, rank=rank, n=n, n_test=n_test,
                    max_length=max_length, seed=seed, head=head, text_col=text_col, label_col=label_col)
    run = runspec.prepare(spec, device="cpu")  # the prediction's arithmetic (numpy, bootstrap) is on the CPU
    return PreparedRun(model=run.model, tokenizer=run.tokenizer, train=run.train, test=run.heldout,
                       model_name=model, task=str(task), description=run.description, num_labels=run.num_labels,
                       layers=run.layers, targets=_targets_text(targets), rank=int(rank), head=head,
                       max_length=int(max_length), seed=seed, seconds=run.seconds)


# ---------------------------------------------------------------------------------------------- predict


def _number(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.4g}"


def _text_plot(values: list[float], width: int = 56, height: int = 8) -> list[str]:
    """A small character plot of ``values`` against their index (linear axes), one string per line."""
    count = len(values)
    if count == 0:
        return []
    cols = min(width, count)
    picks = [round(i * (count - 1) / max(cols - 1, 1)) for i in range(cols)]
    ys = [values[i] for i in picks]
    finite = [y for y in ys if math.isfinite(y)]
    top, bottom = (max(finite), min(finite)) if finite else (1.0, 0.0)
    span = top - bottom or 1.0
    grid = [[" "] * cols for _ in range(height)]
    for x, y in enumerate(ys):
        if math.isfinite(y):
            grid[height - 1 - round((y - bottom) / span * (height - 1))][x] = "*"
    label = max(len(_number(top)), len(_number(bottom)))
    lines = []
    for r, row in enumerate(grid):
        tick = _number(top) if r == 0 else _number(bottom) if r == height - 1 else ""
        lines.append(f"{tick:>{label}} |{''.join(row)}".rstrip())
    lines.append(f"{'':>{label}} +{'-' * cols}")
    left, right = "step 0", f"step {count - 1}"
    lines.append(f"{'':>{label}}  {left}{right:>{max(cols - len(left), len(right))}}")
    return lines


@dataclass
class PreflightReport:
    """A fine-tuning run predicted before training (see the module docstring). Sizes: N = ``n`` training and
    M = ``n_test`` held-out examples, C = ``num_labels``; the kernel K is [N·C, N·C] (``output="full"``) or [N, N]
    (``"logit_diff"``), eigenvalues μ (λmin, λmax).

    ``steps``/``train_loss``/``eval_loss``: the predicted GD curves at steps 0..``steps[-1]`` with step ``lr`` (MSE,
    (1/(2N))‖f − Y‖², on one-hot targets for ``output="full"`` or on z = f₁ − f₀ with targets ±1 for
    ``"logit_diff"``, where K is [N, N]; anchored with λ = ``lam``). ``kr_accuracy`` (``_low``/``_high``: bootstrap 95 %
    interval): held-out accuracy of kernel (ridge) regression, the limit of that run; ``init_accuracy``: the model
    at θ0. ``seconds``: ``load``, ``kernel`` (eNTK and outputs at θ0), ``eigen`` (decomposition, curves, accuracy),
    ``predict`` (kernel + eigen) and ``total``.
    """

    model: str
    task: str
    description: str
    n: int
    n_test: int
    num_labels: int
    max_length: int
    layers: list[int]
    targets: str
    rank: int
    head: str
    lam: float
    seed: int
    params: str
    n_params: int
    kappa: float
    kappa_lambda: float
    lambda_min: float
    lambda_max: float
    effective_rank: float
    trace: float
    lr: float
    steps: list[int]
    train_loss: list[float]
    eval_loss: list[float]
    kr_accuracy: float
    kr_accuracy_low: float
    kr_accuracy_high: float
    init_accuracy: float
    seconds: dict[str, float] = field(default_factory=dict)
    output: str = "full"
    #: how well the book's study found κ to rank LoRA configurations, with its scope (:mod:`linft.finding`)
    study_finding: dict | None = field(default_factory=load_finding)

    _SCALARS = ("kappa", "kappa_lambda", "lambda_min", "lambda_max", "effective_rank", "trace", "lr", "n_params",
                "kr_accuracy", "kr_accuracy_low", "kr_accuracy_high", "init_accuracy")

    def as_dict(self) -> dict:
        """Every field as plain Python values (κ of a singular kernel stays ``inf``)."""
        return asdict(self)

    def rows(self) -> list[dict]:
        """Tidy rows for a CSV: the run's settings, then ``quantity``, ``step`` (curves only) and ``value``; one row
        per scalar (κ, accuracy, seconds_<stage>, ...) and one per step of ``train_loss`` and ``eval_loss``."""
        keys = {"model": self.model, "task": self.task, "n": self.n, "n_test": self.n_test,
                "layers": " ".join(map(str, self.layers)), "targets": self.targets, "rank": self.rank,
                "head": self.head, "lam": self.lam, "seed": self.seed, "output": self.output}
        rows = [{**keys, "quantity": name, "step": "", "value": getattr(self, name)} for name in self._SCALARS]
        rows += [{**keys, "quantity": f"seconds_{stage}", "step": "", "value": s} for stage, s in self.seconds.items()]
        for name in ("train_loss", "eval_loss"):
            rows += [{**keys, "quantity": name, "step": t, "value": v} for t, v in zip(self.steps, getattr(self, name))]
        return rows

    def __str__(self) -> str:
        layers = ",".join(map(str, self.layers))
        seconds = ", ".join(f"{stage} {s:.1f} s" for stage, s in self.seconds.items())
        lines = [
            f"linft predict: {self.model} + LoRA({self.targets}, r={self.rank}) on layers {layers}, head {self.head}",
            f"task {self.description}",
            f"N = {self.n} training, M = {self.n_test} held-out examples, C = {self.num_labels}, "
            f"{self.max_length} tokens, λ = {self.lam:g}, seed {self.seed}",
            "",
            f"  kernel parameters        {self.params}",
            f"  κ = λmax/λmin            {_number(self.kappa)}",
            f"  κ_λ                      {_number(self.kappa_lambda)}",
            f"  λmin, λmax               {_number(self.lambda_min)}, {_number(self.lambda_max)}",
            f"  effective rank           {_number(self.effective_rank)} of {self.n * self.num_labels}",
            f"  trace                    {_number(self.trace)}",
            f"  GD step 1/(λmax/N + λ)   {_number(self.lr)}",
            f"  KR held-out accuracy     {self.kr_accuracy:.3f}  95% [{self.kr_accuracy_low:.3f}, "
            f"{self.kr_accuracy_high:.3f}]  (untrained model: {self.init_accuracy:.3f})",
            f"  predicted loss at step {self.steps[-1]}: train {_number(self.train_loss[-1])}, held-out "
            f"{_number(self.eval_loss[-1])} (from {_number(self.train_loss[0])}, {_number(self.eval_loss[0])})",
            "",
            "  predicted training loss (GD, squared loss on one-hot targets):",
            *("    " + line for line in _text_plot(self.train_loss)),
            "",
            f"  time: {seconds}",
            "",
            "  what κ is worth: " + finding_text(self.study_finding),
        ]
        return "\n".join(lines)

    def save_plot(self, path) -> Path:
        """Write the predicted training and held-out loss curves to ``path`` (PNG); returns the path."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 4.0), dpi=120)
        ax = fig.add_subplot()
        ax.plot(self.steps, self.train_loss, label="training (predicted)")
        ax.plot(self.steps, self.eval_loss, label="held-out (predicted)", linestyle="--")
        ax.set_xlabel(f"gradient-descent step (η = {self.lr:.3g})")
        ax.set_ylabel("squared loss")
        ax.set_title(f"{self.model} + LoRA({self.targets}, r={self.rank}) on {self.task}: $\\kappa_\\lambda$ = "
                     f"{_number(self.kappa_lambda)}, KR acc {self.kr_accuracy:.3f}", fontsize=9)
        ax.legend()
        fig.tight_layout()
        return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    try:
        fig.savefig(path, format="png")
    except OSError as err:
        raise LinftError(f"could not write the plot to {path} ({type(err).__name__}): pass a writable .png path"
                         ) from None
    return path


def _resolve_output(output: str, num_labels: int) -> str:
    check_choice("output", output, OUTPUTS)
    if output == "auto":
        return "logit_diff" if num_labels == 2 else "full"
    if output == "logit_diff" and num_labels != 2:
        raise LinftError(f"output='logit_diff' needs a binary task, this one has {num_labels} classes: use 'full'")
    return output


def predict_prepared(run: PreparedRun, *, lam: float = 0.0, steps: int | None = None, progress: bool = True,
                     output: str = "auto") -> PreflightReport:
    """The prediction of :func:`preflight` on an already prepared (loaded) model; ``run.test`` must hold examples.

    ``lam``: λ ≥ 0 of the anchored penalty; ``steps``: length of the predicted curves (None: :data:`DEFAULT_STEPS`);
    ``progress``: tqdm bars on stderr; ``output``: one of :data:`OUTPUTS` (see the module docstring).
    """
    lam = check_lam(lam)
    output = _resolve_output(output, run.num_labels)
    steps = DEFAULT_STEPS if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise LinftError(f"steps must be a positive integer (GD steps of the predicted curves), got {steps!r}")
    if run.test is None:
        raise LinftError("the prepared run has no held-out examples: prepare it with n_test >= 1")
    start = time.perf_counter()
    n = run.train["input_ids"].shape[0]
    joint = ntk.empirical_ntk(run.model, join_tokens(run.train, run.test), params=run.params, per_layer=False,
                              progress=progress, output=output)
    K = joint.first(n)
    K_test = joint.values[n:, :n]
    logits, logits_test = K.outputs, joint.outputs[n:]  # f(θ0) from the kernel's own forward passes
    if output == "logit_diff":
        f0, f0_test = logits[:, 1:] - logits[:, :1], logits_test[:, 1:] - logits_test[:, :1]
    else:
        f0, f0_test = logits, logits_test
    kernel_s = time.perf_counter() - start

    start = time.perf_counter()
    y, y_test = run.train["labels"], run.test["labels"]
    kr = predict.KernelRegression.fit(K.values, y, f0, lam)
    summary = kernel_summary.from_spectrum(kr.spectrum, lam=lam)
    lr = predict.descent_lr(kr.spectrum, lam=lam)
    curves = kr.curves(lr=lr, steps=steps)
    eval_loss = kr.eval_loss(K_test, y_test, f0_test, lr=lr, steps=steps)
    acc = accuracy_ci(kr.classify(K_test, f0_test).numpy(), y_test.numpy(), seed=run.seed)
    init = float((logits_test.argmax(1) == y_test).double().mean())
    eigen_s = time.perf_counter() - start
    return PreflightReport(
        model=run.model_name, task=run.task, description=run.description, n=n, n_test=int(y_test.shape[0]),
        num_labels=run.num_labels, max_length=run.max_length, layers=list(run.layers), targets=run.targets,
        rank=run.rank, head=run.head, lam=lam, seed=run.seed, params=joint.params, n_params=int(joint.n_params),
        kappa=summary.kappa, kappa_lambda=summary.kappa_lambda, lambda_min=summary.lambda_min,
        lambda_max=summary.lambda_max, effective_rank=summary.effective_rank, trace=summary.trace, lr=lr,
        steps=list(range(steps + 1)), train_loss=curves.loss.tolist(),
        eval_loss=eval_loss.tolist(), kr_accuracy=acc["acc"], kr_accuracy_low=acc["low"],
        kr_accuracy_high=acc["high"], init_accuracy=init,
        seconds={"load": run.seconds, "kernel": kernel_s, "eigen": eigen_s, "predict": kernel_s + eigen_s,
                 "total": run.seconds + kernel_s + eigen_s},
        output=output,
    )


def preflight(model: str = "minilm", task: str = "mr", *, layers=None, targets="qv", rank: int = 8, n: int = 256,
              n_test: int = 256, lam: float = 0.0, max_length: int = 64, seed: int = 0, head: str = "frozen",
              text_col: str = "text", label_col: str = "label", steps: int | None = None, progress: bool = True,
              output: str = "auto") -> PreflightReport:
    """Predict LoRA fine-tuning of ``model`` on ``task`` before training: :func:`prepare` then
    :func:`predict_prepared` (see the module docstring and :class:`PreflightReport`).

    ``task``: a registry key or the path of the user's data (``text_col``/``label_col`` name its columns);
    ``layers``: block indices to adapt (None: all); ``n``/``n_test``: training/held-out examples (held-out ones from
    the test split, :data:`linft.runspec.HELDOUT_SPLIT`, at most all of it); ``head``: ``"frozen"`` (kernel of the
    LoRA matrices) or ``"trained"``;
    ``output``: ``"auto"`` (the logit difference for binary tasks), ``"full"`` or ``"logit_diff"``.
    """
    check_choice("output", output, OUTPUTS)
    lam = check_lam(lam)
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise LinftError(f"steps must be a positive integer (GD steps of the predicted curves), got {steps!r}")
    check_positive_int(n_test, "n_test (held-out examples)")
    run = prepare(model, task, layers=layers, targets=targets, rank=rank, n=n, n_test=n_test, max_length=max_length,
                  seed=seed, head=head, text_col=text_col, label_col=label_col)
    return predict_prepared(run, lam=lam, steps=steps, progress=progress, output=output)


# ---------------------------------------------------------------------------------------------- layers


def _choice_summary(lk, layers, lam: float) -> dict:
    """Exact κ_λ, κ, λmin, λmax of the union of ``layers`` and their Weyl bound intervals."""
    exact, bounds = lk.exact(layers, lam=lam), lk.bounds(layers, lam=lam)
    out = {"layers": [int(i) for i in exact.layers]}
    for key in ("kappa_lambda", "kappa", "lambda_min", "lambda_max"):
        low, high = getattr(bounds, key)
        out.update({key: float(getattr(exact, key)), f"{key}_low": float(low), f"{key}_high": float(high)})
    out.update(effective_rank=float(exact.effective_rank), trace=float(exact.trace),
               inside_bounds=bool(bounds.contains(exact)))
    return out


@dataclass
class LayerAdvice:
    """The ``budget`` layers recommended for LoRA, with every baseline's choice, from per-layer eNTKs.

    ``recommended`` and each entry of ``baselines`` (keyed by baseline name): ``layers`` and, for κ_λ, κ, λmin and
    λmax of the union kernel, the exact value and its Weyl bound interval (``<key>_low``, ``<key>_high``), the
    effective rank, trace and ``inside_bounds`` (exact values within the bounds). ``value``: the recommended
    choice's objective; ``method``: how it was found. ``seconds``: ``load``, ``kernels`` (one engine pass),
    ``select``, ``baselines`` and ``total``.
    """

    model: str
    task: str
    description: str
    n: int
    num_labels: int
    max_length: int
    candidates: list[int]
    budget: int
    objective: str
    lam: float
    targets: str
    rank: int
    head: str
    seed: int
    method: str
    value: float
    recommended: dict
    baselines: dict[str, dict]
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Every field as plain Python values."""
        return asdict(self)

    def choices(self) -> dict[str, dict]:
        """``{"recommended": ..., <baseline>: ...}`` in that order."""
        return {"recommended": self.recommended, **self.baselines}

    def rows(self) -> list[dict]:
        """Tidy rows for a CSV, one per choice (recommended first): settings, ``choice``, ``layers`` (space-separated),
        exact values and bounds."""
        keys = {"model": self.model, "task": self.task, "n": self.n, "budget": self.budget,
                "objective": self.objective, "lam": self.lam, "targets": self.targets, "rank": self.rank,
                "head": self.head, "seed": self.seed}
        return [{**keys, "choice": name, **summary, "layers": " ".join(map(str, summary["layers"]))}
                for name, summary in self.choices().items()]

    def __str__(self) -> str:
        best = self.recommended
        seconds = ", ".join(f"{stage} {s:.1f} s" for stage, s in self.seconds.items())
        goal = "smallest κ_λ" if self.objective == "kappa_lambda" else "largest λmin"
        lines = [
            f"linft layers: {self.model} + LoRA({self.targets}, r={self.rank}), head {self.head}; task "
            f"{self.description}",
            f"N = {self.n} examples, {self.max_length} tokens, λ = {self.lam:g}; {self.budget} of layers "
            f"{','.join(map(str, self.candidates))}, {goal} ({self.method})",
            "",
            f"  recommended layers {','.join(map(str, best['layers']))}: κ_λ = {_number(best['kappa_lambda'])} "
            f"(bounds [{_number(best['kappa_lambda_low'])}, {_number(best['kappa_lambda_high'])}]), λmin = "
            f"{_number(best['lambda_min'])} (bounds [{_number(best['lambda_min_low'])}, "
            f"{_number(best['lambda_min_high'])}])",
            "",
            f"  {'choice':<14}{'layers':<16}{'κ_λ':>11}  {'κ_λ bounds':<23}{'λmin':>11}  λmin bounds",
        ]
        for name, s in self.choices().items():
            layers = ",".join(map(str, s["layers"]))
            kb = f"[{_number(s['kappa_lambda_low'])}, {_number(s['kappa_lambda_high'])}]"
            lb = f"[{_number(s['lambda_min_low'])}, {_number(s['lambda_min_high'])}]"
            lines.append(f"  {name:<14}{layers:<16}{_number(s['kappa_lambda']):>11}  {kb:<23}"
                         f"{_number(s['lambda_min']):>11}  {lb}")
        lines += ["", f"  time: {seconds}"]
        return "\n".join(lines)

    def save_plot(self, path) -> Path:
        """Write κ_λ per choice (exact: dots; Weyl bounds: bars) on a log axis to ``path`` (PNG); returns the path."""
        from matplotlib.figure import Figure

        choices = self.choices()
        names = list(choices)
        fig = Figure(figsize=(max(6.4, 0.55 * len(names) + 2), 4.2), dpi=120)
        ax = fig.add_subplot()
        for x, name in enumerate(names):
            s = choices[name]
            low, high = s["kappa_lambda_low"], s["kappa_lambda_high"]
            color = "C1" if name == "recommended" else "C0"
            if math.isfinite(low) and math.isfinite(high):
                ax.plot([x, x], [low, high], color=color, linewidth=6, alpha=0.35, solid_capstyle="butt")
            if math.isfinite(s["kappa_lambda"]):
                ax.plot([x], [s["kappa_lambda"]], "o", color=color)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)),
                      [f"{name}\n{','.join(map(str, choices[name]['layers']))}" for name in names],
                      rotation=60, fontsize=7)
        ax.set_ylabel(r"$\kappa_\lambda$ (dot: exact, bar: Weyl bounds)")
        ax.set_title(f"{self.model} on {self.task}: {self.budget} layers, λ = {self.lam:g}", fontsize=9)
        fig.tight_layout()
        return _save(fig, path)


def advise_layers(model: str = "minilm", task: str = "mr", *, budget: int = 2, targets="qv", rank: int = 8,
                  n: int = 256, lam: float = 0.0, objective: str = "kappa_lambda", seed: int = 0, n_random: int = 5,
                  head: str = "frozen", method: str = "auto", max_length: int = 64, text_col: str = "text",
                  label_col: str = "label", progress: bool = True) -> LayerAdvice:
    """Recommend ``budget`` layers for LoRA on ``targets`` from the per-layer eNTKs of ``n`` training examples
    (:func:`prepare` with no held-out examples: the same draw of the train split as :func:`preflight`, whose
    held-out examples come from the test split, :data:`linft.runspec.HELDOUT_SPLIT`).

    ``objective``: ``"kappa_lambda"`` (smallest κ_λ at ``lam``) or ``"lambda_min"`` (largest λmin); ``method``:
    ``"auto"``, ``"greedy"`` or ``"exhaustive"`` (:func:`linft.layers.select_layers`); ``n_random``: random-layer
    baselines drawn with ``seed``. Other arguments as :func:`preflight`. Returns a :class:`LayerAdvice`.
    """
    from linft.layers import LayerKernels, baselines, select_layers

    lam = check_lam(lam)
    check_choice("objective", objective, OBJECTIVES)
    check_positive_int(n_random, "n_random (random-layer baselines)")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise LinftError(f"budget must be a positive integer (how many layers to adapt), got {budget!r}")
    _check_common(head, rank, n, max_length, seed)
    run = prepare(model, task, layers=None, targets=targets, rank=rank, n=n, n_test=0, max_length=max_length,
                  seed=seed, head=head, text_col=text_col, label_col=label_col)
    if budget > len(run.layers):
        raise LinftError(f"budget {budget} is more than the {len(run.layers)} layers {model} has: use a budget from "
                         f"1 to {len(run.layers)}")
    start = time.perf_counter()
    lk = LayerKernels.compute(run.model, run.train, head=head, kernel="sgd", progress=progress)
    kernels_s = time.perf_counter() - start
    start = time.perf_counter()
    choice = select_layers(lk, budget, objective=objective, lam=lam, method=method)
    select_s = time.perf_counter() - start
    start = time.perf_counter()
    picks = baselines(run.model, run.train, lk, budget, seed=seed, n_random=n_random, targets=targets)
    summaries = {name: _choice_summary(lk, layers, lam) for name, layers in picks.items()}
    baselines_s = time.perf_counter() - start
    return LayerAdvice(
        model=model, task=run.task, description=run.description, n=int(run.train["input_ids"].shape[0]),
        num_labels=run.num_labels, max_length=run.max_length, candidates=[int(i) for i in lk.layers],
        budget=budget, objective=objective, lam=lam, targets=run.targets, rank=run.rank, head=head, seed=seed,
        method=str(choice.method), value=float(choice.value), recommended=_choice_summary(lk, choice.layers, lam),
        baselines=summaries,
        seconds={"load": run.seconds, "kernels": kernels_s, "select": select_s, "baselines": baselines_s,
                 "total": run.seconds + kernels_s + select_s + baselines_s},
    )
