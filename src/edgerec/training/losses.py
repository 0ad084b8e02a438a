"""The multi-task objective: next-item retrieval plus the auxiliary heads.

Retrieval is the task the model is judged on; the auxiliary tasks shape the two interest
vectors (behaviour of the next event, categories of the next item from the short-term
vector, the user's category taste from the long-term vector). Small catalogs use the
exact softmax; large ones a sampled softmax whose logits are corrected by log q, the
log-probability that sampling proposed each candidate, so the estimate stays unbiased
toward popular items (Yi et al., RecSys 2019).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TASKS = ("retrieval", "behaviour", "interest")


def catalog_log_probs(
    user: torch.Tensor,
    table: torch.Tensor,
    seen: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """(B, n_items) log-softmax over every real item; column j is item j+1.

    ``seen`` = (rows, items) pairs taken out of the competition, as the evaluation
    protocol does with a user's earlier items (the caller keeps the targets out of it).
    """
    logits = user @ table[1:].T
    if seen is not None and len(seen[0]):
        logits = logits.index_put((seen[0], seen[1] - 1), logits.new_tensor(float("-inf")))
    return F.log_softmax(logits, dim=-1)


def smoothed_nll(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy from log-probs; the smoothing mass goes to the competing items only."""
    nll = -log_probs.gather(1, (targets - 1).unsqueeze(1)).squeeze(1)
    if label_smoothing > 0:
        alive = torch.isfinite(log_probs)
        uniform = -log_probs.masked_fill(~alive, 0.0).sum(1) / alive.sum(1).clamp(min=1)
        nll = (1.0 - label_smoothing) * nll + label_smoothing * uniform
    return nll.mean() if reduction == "mean" else nll


def full_softmax_loss(
    user: torch.Tensor,
    table: torch.Tensor,
    targets: torch.Tensor,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    seen: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Cross-entropy over every real item (column 0, the padding row, never competes)."""
    return smoothed_nll(catalog_log_probs(user, table, seen), targets, label_smoothing, reduction)


def sampled_softmax_loss(
    user: torch.Tensor,
    item_vectors,
    targets: torch.Tensor,
    log_popularity: torch.Tensor,
    n_items: int,
    num_negatives: int,
    reduction: str = "mean",
) -> torch.Tensor:
    """Softmax over the batch's targets (in-batch negatives) plus uniform negatives.

    ``item_vectors(indices)`` gives item vectors (so the full table is never built);
    ``log_popularity`` is log p(item) under the training distribution (index 0 unused).
    The candidates are a mixture of B draws from p (the batch's targets) and N uniform
    draws, so item j is expected B*p_j + N/n_items times among them. Each negative's
    logit is reduced by the log of that count, which makes the negatives' sum an estimate
    of the full softmax's normaliser without the target; the row's own target keeps its
    exact logit, and its other copies among the candidates (accidental hits) are masked.
    """
    B = targets.shape[0]
    uniform = torch.randint(1, n_items + 1, (num_negatives,), device=targets.device)
    candidates = torch.cat([targets, uniform])
    logits = user @ item_vectors(candidates).T  # (B, B + N)
    expected = B * torch.exp(log_popularity[candidates]) + num_negatives / n_items
    own = torch.zeros(B, B + num_negatives, dtype=torch.bool, device=logits.device)
    own[:, :B] = torch.eye(B, dtype=torch.bool, device=logits.device)
    correction = torch.log(expected).to(logits.dtype).unsqueeze(0).masked_fill(own, 0.0)
    logits = logits - correction
    hit = candidates.unsqueeze(0) == targets.unsqueeze(1)
    logits = logits.masked_fill(hit & ~own, float("-inf"))
    labels = torch.arange(B, device=targets.device)
    return F.cross_entropy(logits, labels, reduction=reduction)


def behaviour_loss(logits: torch.Tensor, behaviours: torch.Tensor) -> torch.Tensor:
    """Next event's behaviour class; class 0 ('none') is unlabelled and ignored."""
    if not bool((behaviours > 0).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, behaviours, ignore_index=0)


def next_category_loss(logits: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
    """Multi-label: each category of the next item is its own binary decision."""
    return F.binary_cross_entropy_with_logits(logits, categories)


def user_category_loss(logits: torch.Tensor, distribution: torch.Tensor) -> torch.Tensor:
    """Cross-entropy to the user's category distribution (rows that sum to 0 are skipped)."""
    has = distribution.sum(-1) > 0
    if not bool(has.any()):
        return logits.sum() * 0.0
    ce = -(distribution * F.log_softmax(logits, dim=-1)).sum(-1)
    return ce[has].mean()


def combine(
    losses: dict[str, torch.Tensor],
    weights: dict[str, float],
    log_vars: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted sum, or Kendall et al.'s uncertainty weighting exp(-s)*L + s per task.

    With uncertainty weighting the configured weights still gate which tasks take part
    (weight 0 drops a task), and scale each task's term.
    """
    total = torch.zeros((), device=next(iter(losses.values())).device)
    for i, task in enumerate(TASKS):
        w = float(weights.get(task, 0.0))
        if task not in losses or w == 0.0:
            continue
        if log_vars is None:
            total = total + w * losses[task]
        else:
            s = log_vars[i]
            total = total + w * (torch.exp(-s) * losses[task] + s)
    return total
