"""Device and thread choice: GPU when there is one, CPU otherwise, threads pinned explicitly."""

from __future__ import annotations

import os

import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """Return ``prefer`` if given, else ``cuda`` when available, else ``cpu``."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pin_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n`` (default: ``$LINFT_THREADS`` or the number of cores).

    On small shared machines oversubscription slows a forward pass several-fold, so every entry point
    (chapters, benchmarks, CLI) pins threads once. Returns the number set.
    """
    if n is None:
        n = int(os.environ.get("LINFT_THREADS") or os.cpu_count() or 1)
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch (CPU and CUDA) and return a generator seeded the same way for explicit use."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)
