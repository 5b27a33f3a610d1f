"""Rival predictors of fine-tuning outcome that κ must beat: LogME on Jacobian features and on frozen features.

LogME (You et al. 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning") is the log
marginal evidence of a Bayesian linear model of the labels on some features; higher means the labels are easier to
fit linearly. The estimator is the ``transformer-ranker`` package's (``transformer_ranker.estimators.LogME``).

- :func:`logme_from_kernel`: LogME on the *Jacobian* features of the trained parameters, without forming them. LogME
  only needs the features' left singular vectors and singular values, and for J with J Jᵀ = K (the scalar kernel
  Σ_c K[:, :, c, c], one row per example) these are K's eigenvectors and √eigenvalues, so the features V·√Λ ``[N, N]``
  give exactly LogME(J). Varies with the LoRA configuration, so it can rank configurations within a task.
- :func:`frozen_features` + :func:`logme`: LogME on the frozen model's mean-pooled last hidden states. At LoRA's
  initialization (B = 0) every configuration computes the same function, so this is one number per task and seed: a
  predictor *across* tasks, not within one.
"""

from __future__ import annotations

import torch
from torch import nn

from linft import LinftError

__all__ = ["frozen_features", "logme", "logme_from_kernel"]


def _labels(labels, n: int) -> torch.Tensor:
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.numel() != n:
        raise LinftError(f"{labels.numel()} labels for {n} examples: pass one label per example")
    if torch.unique(labels).numel() < 2:
        raise LinftError("LogME needs at least two classes among the labels: sample more examples")
    return labels


def logme(features, labels) -> float:
    """LogME of ``features`` ``[N, D]`` for integer class ``labels`` ``[N]`` (higher: labels easier to fit)."""
    from transformer_ranker.estimators import LogME

    features = torch.as_tensor(features, dtype=torch.float64)
    if features.ndim != 2 or not torch.isfinite(features).all():
        raise LinftError(f"features must be a finite [N, D] matrix, got shape {tuple(features.shape)}")
    labels = _labels(labels, features.shape[0])
    return float(LogME().fit(features, labels.to(torch.float64)))


def logme_from_kernel(K, labels) -> float:
    """LogME of the Jacobian features whose Gram matrix is ``K``: a :class:`linft.ntk.Kernel` (or its values)
    ``[N, N, C, C]`` (traced over outputs) or a scalar kernel ``[N, N]``; symmetric PSD (eigenvalues below 0 from
    round-off are clipped)."""
    values = K if isinstance(K, torch.Tensor) else getattr(K, "values", K)
    values = torch.as_tensor(values, dtype=torch.float64)
    if values.ndim == 4:
        values = torch.diagonal(values, dim1=2, dim2=3).sum(-1)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise LinftError(f"K must be a square [N, N] or [N, N, C, C] training kernel, got shape {tuple(values.shape)}")
    eigenvalues, eigenvectors = torch.linalg.eigh((values + values.T) / 2)
    return logme(eigenvectors * eigenvalues.clamp_min(0).sqrt(), labels)


def frozen_features(model: nn.Module, batch: dict, chunk: int = 64) -> torch.Tensor:
    """Mean-pooled last hidden states ``[N, H]`` (float64) of ``model`` on ``batch`` (attention mask respected)."""
    from linft.functional import eval_mode

    parts = []
    with torch.no_grad(), eval_mode(model):
        for i in range(0, batch["input_ids"].shape[0], chunk):
            ids, mask = batch["input_ids"][i:i + chunk], batch["attention_mask"][i:i + chunk]
            hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            parts.append(((hidden * weights).sum(1) / weights.sum(1).clamp_min(1)).double().cpu())
    return torch.cat(parts)
