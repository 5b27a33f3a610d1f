"""Test-wide settings: no hub access, pinned threads. Caches go to $LINFT_CACHE (default ~/.cache/linft)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from linft.device import pin_threads

pin_threads()


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """Pin torch to 1 thread for a module of tiny-batch tests (fastest, and robust on shared cores)."""
    threads = torch.get_num_threads()
    pin_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_lora():
    """Factory: ``tiny_lora(texts, labels, max_length=16) -> (MiniLM + LoRA(q, v) model, batch)``.

    The batch holds ``input_ids``/``attention_mask`` [N, max_length] and ``labels`` [N].
    """
    from linft.models import add_lora, load

    def make(texts, labels, max_length=16):
        model, tok = load("minilm", 2)
        enc = tok(list(texts), padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
        batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                 "labels": torch.tensor(labels)}
        return add_lora(model), batch

    return make
