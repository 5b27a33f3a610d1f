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


@pytest.fixture(scope="module")
def cfg():
    """A tiny smoke scale for the protocols of linft.experiments: 8 examples of 16 tokens, 2 steps, λ ∈ {0, 50}."""
    from linft.scales import get_scale

    return get_scale("smoke", n_train=8, n_eval=8, ntk_n=8, max_length=16, train_steps=2, batch_size=4,
                     lambdas=(0.0, 50.0))


@pytest.fixture(scope="module")
def setup(cfg, one_thread):
    """``linft.experiments.setup_task("mr", cfg)``: MiniLM + LoRA and train/eval batches at the tiny scale."""
    from linft.experiments import setup_task

    return setup_task("mr", cfg, seed=0)
