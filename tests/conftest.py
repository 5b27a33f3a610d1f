"""Test-wide settings: no hub access, pinned threads. Caches go to $LINFT_CACHE (default ~/.cache/linft)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from linft.device import pin_threads  # noqa: E402

pin_threads()
