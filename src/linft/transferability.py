"""Rival predictors of fine-tuning outcome that κ must beat: LogME on Jacobian features and on frozen features.

LogME (You et al. 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning") is the log
marginal evidence of a Bayesian linear model of the labels on some features; higher means the labels are easier to
fit linearly. The estimator is the ``transformer-ranker`` package's (``transformer_ranker.estimators.LogME``).

- :func:`logme_from_kernel`: LogME on the *Jacobian* features of the trained parameters, without forming them. LogME
  needs the features' left singular vectors and singular values, and for J with J Jᵀ = K (the scalar kernel
  Σ_c K[:, :, c, c], one row per example) these are K's eigenvectors and √eigenvalues. It also needs the features'
  **dimension** D: LogME's evidence carries a D/2·log α term (as published and as ``transformer-ranker`` computes
  it), so ``n_features`` = D gives exactly LogME(J) (tested against the estimator on explicit Jacobians), while the
  default, D = N, is LogME of the kernel's own N eigen-features — a different number whenever D ≠ N. Both vary with
  the LoRA configuration, so they can rank configurations within a task; the study's ``logme_jacobian`` columns are
  the D = N form.
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


def logme_from_kernel(K, labels, n_features: int | None = None) -> float:
    """LogME of the features whose Gram matrix is ``K``: a :class:`linft.ntk.Kernel` (or its values)
    ``[N, N, C, C]`` (traced over outputs) or a scalar kernel ``[N, N]``; symmetric PSD (eigenvalues below 0 from
    round-off are clipped). ``n_features``: the features' dimension D (the Jacobian's C·P for an eNTK; see the module
    docstring); None uses D = N, LogME of the kernel's eigen-features."""
    values = K if isinstance(K, torch.Tensor) else getattr(K, "values", K)
    values = torch.as_tensor(values, dtype=torch.float64)
    if values.ndim == 4:
        values = torch.diagonal(values, dim1=2, dim2=3).sum(-1)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise LinftError(f"K must be a square [N, N] or [N, N, C, C] training kernel, got shape {tuple(values.shape)}")
    eigenvalues, eigenvectors = torch.linalg.eigh((values + values.T) / 2)
    if n_features is None:
        return logme(eigenvectors * eigenvalues.clamp_min(0).sqrt(), labels)
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise LinftError(f"n_features must be a positive integer (the features' dimension), got {n_features!r}")
    order = torch.argsort(eigenvalues, descending=True)[: min(n_features, values.shape[0])]
    return _logme_svd(eigenvectors[:, order], eigenvalues[order].clamp_min(0), labels, n_features)


def _logme_svd(u: torch.Tensor, sigma: torch.Tensor, labels, dim: int, max_iter: int = 11,
               tol: float = 1e-3) -> float:
    """LogME from the features' left singular vectors ``u`` [N, r], squared singular values ``sigma`` [r] and
    dimension ``dim``: the fixed-point iteration and evidence of ``transformer_ranker.estimators.LogME``
    (classification: one-hot targets, evidence averaged over classes, divided by N)."""
    n = u.shape[0]
    labels = _labels(labels, n).to(torch.float64)
    sigma = sigma.reshape(-1, 1).to(torch.float64)
    total = 0.0
    classes = torch.unique(labels)
    alpha, beta = torch.tensor(1.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    for c in classes:  # as the estimator does, each class starts from the previous class's α, β
        y = (labels == c).to(torch.float64).unsqueeze(-1)
        projected = (u.T @ y) ** 2
        rss = (y ** 2).sum() - projected.sum()
        weighted = error = torch.tensor(0.0, dtype=torch.float64)
        for _ in range(max_iter):
            tau = alpha / beta
            gamma = (sigma / (sigma + tau)).sum()
            weighted = (sigma * projected / ((tau + sigma) ** 2)).sum()
            error = (projected / ((1 + sigma / tau) ** 2)).sum() + rss
            alpha = gamma / (weighted + 1e-5)
            beta = (n - gamma) / (error + 1e-5)
            if abs(alpha / beta - tau) / tau <= tol:
                break
        evidence = (dim / 2.0 * torch.log(alpha) + n / 2.0 * torch.log(beta)
                    - 0.5 * torch.sum(torch.log(alpha + beta * sigma)) - beta / 2.0 * error
                    - alpha / 2.0 * weighted - n / 2.0 * torch.log(torch.tensor(2 * torch.pi, dtype=torch.float64)))
        total += float(evidence) / n
    return total / len(classes)


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
