"""Scale profiles: one papermill parameter ``scale`` sizes every chapter.

- ``smoke``: seconds to a minute per chapter on 2 CPU cores; proves every code path (CI).
- ``default``: real numbers, honest but small; the whole book in well under an hour on 2 cores.
- ``paper``: the reference study's size (RoBERTa-base or any hub model, GLUE-size data, a GPU). Same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from linft import LinftError, check_choice


@dataclass(frozen=True)
class Scale:
    """Sizes shared by the chapters. Chapters read the fields they need.

    Attributes:
        name: profile name.
        model: model key or path (see :mod:`linft.models`).
        tasks: task keys used where a chapter sweeps tasks.
        max_length: tokens per example after truncation/padding.
        n_train: training examples per task (fine-tuning runs).
        n_eval: evaluation examples per task (logged during training).
        n_test: held-out examples for final accuracies and agreements (a forward pass each; at most the split).
        ntk_n: examples in an empirical-NTK batch.
        train_steps: optimizer steps of a fine-tuning run.
        batch_size: minibatch size for training with AdamW.
        lr: AdamW learning rate.
        lambdas: anchored-regularization strengths swept.
        seeds: random seeds repeated where a chapter reports spread.
        lora_rank: LoRA rank r.
        lora_targets: LoRA targets: architecture-aware aliases (``q``, ``k``, ``v``, ``o``, ``ffn_in``, ``ffn_out``),
            a named set (``qv``, ``qkv``, ``attn``, ``all``) or module names (see :func:`linft.models.add_lora`).
    """

    name: str
    model: str = "minilm"
    tasks: tuple[str, ...] = ("mr", "subj", "tweets", "bbc", "r8")
    max_length: int = 64
    n_train: int = 256
    n_eval: int = 256
    n_test: int = 1000
    ntk_n: int = 64
    train_steps: int = 60
    batch_size: int = 16
    lr: float = 1e-3
    lambdas: tuple[float, ...] = (0.0, 0.5, 5.0, 50.0)
    seeds: tuple[int, ...] = (0,)
    lora_rank: int = 8
    lora_targets: tuple[str, ...] = ("q", "v")
    extra: dict = field(default_factory=dict)


PROFILES: dict[str, Scale] = {
    "smoke": Scale(
        name="smoke",
        tasks=("mr", "subj"),
        max_length=32,
        n_train=32,
        n_eval=32,
        n_test=32,
        ntk_n=16,
        train_steps=4,
        batch_size=8,
        lambdas=(0.0, 50.0),
    ),
    "default": Scale(name="default"),
    "paper": Scale(
        name="paper",
        model="roberta-base",
        max_length=128,
        n_train=2048,
        n_eval=1024,
        ntk_n=32,
        train_steps=1000,
        batch_size=32,
        lr=5e-4,
        lambdas=(0.0, 0.5, 5.0, 50.0),
        seeds=(0, 1, 2),
        lora_targets=("q", "k", "v"),
    ),
}


#: Per-section sizes within a profile: {section: {profile: field overrides}}. ``training``: chapters 1 and 2
#: train every λ several times (real and linearized model, plain and selective anchor), so at the default scale
#: they use fewer, shorter examples than the profile (64 examples of 32 tokens) and a higher learning rate (3e-3,
#: with which 30 AdamW steps fit those 64 examples), to fit their share of the book's time budget on 2 CPU cores;
#: 3 seeds, each compared on its own 340 held-out examples (1,020 pooled): evaluating a linearized model is a
#: Jacobian-vector product per example, which on 1,000 examples costs more than its 30 training steps.
SECTIONS: dict[str, dict[str, dict]] = {
    "training": {"default": {"n_train": 64, "n_eval": 64, "max_length": 32, "train_steps": 30, "lr": 3e-3,
                             "seeds": (0, 1, 2), "n_test": 340}},
    # chapter 3's kernel-regression test: N = ntk_n training examples, up to n_eval held-out ones (a forward pass and
    # one kernel row each), train_steps of full-batch gradient descent and of AdamW per (task, λ); at default the
    # texts are cut to 32 tokens (as in chapters 1-2) so that 3 tasks × 2 λ × 2 optimizers fit in about 5 minutes
    "kernel_regression": {"smoke": {"n_eval": 32, "train_steps": 4},
                          "default": {"n_eval": 1000, "train_steps": 50, "max_length": 32},
                          "paper": {"n_eval": 1000}},
    # chapter 4 fine-tunes every choice of layers (advisor, baselines, each layer alone) on 3 tasks × 3 seeds: the
    # training sizes of chapters 1-2 (64 examples of 32 tokens, 30 AdamW steps at 3e-3) in minibatches of 8, and
    # 128 held-out examples per seed, to fit its share of the book's time budget; the kernel is taken on the same 64
    # training examples (ntk_n = n_train)
    "layers": {"smoke": {"n_train": 16, "ntk_n": 16, "max_length": 16, "train_steps": 4, "batch_size": 8,
                         "n_test": 32, "seeds": (0,)},
               "default": {"n_train": 64, "ntk_n": 64, "n_eval": 64, "max_length": 32, "train_steps": 30,
                           "batch_size": 8, "lr": 3e-3, "seeds": (0, 1, 2), "n_test": 128}},
}


def get_scale(name: str, section: str | None = None, **overrides) -> Scale:
    """The profile called ``name``, with the sizes of ``section`` (a key of :data:`SECTIONS`) when given, then
    optional field overrides (e.g. ``model="mpnet"``)."""
    check_choice("scale", name, sorted(PROFILES))
    scale = PROFILES[name]
    if section is not None:
        check_choice("section", section, sorted(SECTIONS))
        overrides = {**SECTIONS[section].get(name, {}), **overrides}
    unknown = set(overrides) - set(Scale.__dataclass_fields__)
    if unknown:
        raise LinftError(
            f"unknown scale field(s) {sorted(unknown)}: valid fields are {sorted(Scale.__dataclass_fields__)}"
        )
    return replace(scale, **overrides) if overrides else scale
