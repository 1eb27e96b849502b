"""Attention scores for RNN decoders: additive (Bahdanau), dot / general / concat (Luong) — one interface.

Every score is a small ``nn.Module`` with the same two methods, chosen once from :data:`ATTENTION_SCORES`:

- ``precompute_keys(keys (B, S, Hk)) -> precomputed`` — the projection of the encoder states that every decoder
  step reuses (Bahdanau's ``U h_j``, Luong-general's ``W_a h̄_s``), computed **once per source**, never per step.
- ``forward(query, keys, precomputed) -> scores`` — ``query`` is ``(B, Hq)`` for one decoder step or
  ``(B, T, Hq)`` for all steps at once; scores are ``(B, S)`` or ``(B, T, S)`` respectively (unnormalised
  energies ``e``).

:func:`attend` turns scores into weights (masking padding, softmax) and the weighted sum of values (the context).

Dimension legend: B batch, T target steps, S source length, Hq query (decoder state) size, Hk key (encoder state)
size, A attention size. Masks: ``mask`` is ``(B, S)``, nonzero/True on real tokens; padding is filled with
``torch.finfo(dtype).min`` before the softmax, so its weight is exactly 0.

This file ships to the Hub as custom code (a flat sibling of the modeling files): it imports only torch.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "AdditiveScore",
    "DotScore",
    "GeneralScore",
    "ConcatScore",
    "ATTENTION_SCORES",
    "attend",
    "build_score",
]


def _as_steps(query: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(B, Hq) -> (B, 1, Hq) and a flag to squeeze the step dimension back out of the scores."""
    if query.dim() == 2:
        return query.unsqueeze(1), True
    if query.dim() == 3:
        return query, False
    raise ValueError(f"attention query must be (B, Hq) or (B, T, Hq), got shape {tuple(query.shape)}")


class AdditiveScore(nn.Module):
    """Bahdanau et al. (2015), "Neural Machine Translation by Jointly Learning to Align and Translate", eq. (6)
    and appendix A.1.2: ``e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j)``.

    ``U_a h_j`` does not depend on the decoder step, so :meth:`precompute_keys` computes it once per source
    (the paper's appendix makes the same remark). ``U_a`` carries the bias; ``W_a`` and ``v_a`` have none.
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int):
        super().__init__()
        self.query_proj = nn.Linear(query_size, attention_size, bias=False)  # W_a
        self.key_proj = nn.Linear(key_size, attention_size, bias=True)  # U_a
        self.energy = nn.Linear(attention_size, 1, bias=False)  # v_a

    def precompute_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """(B, S, Hk) -> U_a h_j (B, S, A)."""
        return self.key_proj(keys)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, precomputed: torch.Tensor) -> torch.Tensor:
        q, squeeze = _as_steps(query)
        # (B, T, 1, A) + (B, 1, S, A) -> tanh -> v_a -> (B, T, S). The sum is a fresh tensor, so tanh overwrites it
        # (the add's backward needs no output): one (B, T, S, A) tensor instead of two, the largest of a step.
        summed = self.query_proj(q).unsqueeze(2) + precomputed.unsqueeze(1)
        scores = self.energy(torch.tanh_(summed)).squeeze(-1)
        return scores.squeeze(1) if squeeze else scores


class ConcatScore(AdditiveScore):
    """Luong et al. (2015), "Effective Approaches to Attention-based Neural Machine Translation", eq. (8),
    *concat*: ``score(h_t, h̄_s) = v_a^T tanh(W_a [h_t; h̄_s])``.

    Splitting ``W_a = [W_1, W_2]`` gives ``v_a^T tanh(W_1 h_t + W_2 h̄_s)``: the additive form, with ``W_2 h̄_s``
    precomputed once per source. It differs from :class:`AdditiveScore` only in the query Luong feeds it (the
    current state ``h_t`` instead of the previous one).
    """


class _DotProductScore(nn.Module):
    """``score = query . precomputed_j``: the step of both Luong dot and general (after precomputing keys)."""

    def forward(self, query: torch.Tensor, keys: torch.Tensor, precomputed: torch.Tensor) -> torch.Tensor:
        q, squeeze = _as_steps(query)
        scores = torch.bmm(q, precomputed.transpose(1, 2))  # (B, T, Hq) x (B, Hq, S) -> (B, T, S)
        return scores.squeeze(1) if squeeze else scores


class DotScore(_DotProductScore):
    """Luong et al. (2015), eq. (8), *dot*: ``score(h_t, h̄_s) = h_t^T h̄_s``. Needs ``Hq == Hk``; no parameters."""

    def __init__(self, query_size: int, key_size: int, attention_size: int | None = None):
        super().__init__()
        if query_size != key_size:
            raise ValueError(f"dot attention needs query_size == key_size, got {query_size} and {key_size}")

    def precompute_keys(self, keys: torch.Tensor) -> torch.Tensor:
        return keys


class GeneralScore(_DotProductScore):
    """Luong et al. (2015), eq. (8), *general*: ``score(h_t, h̄_s) = h_t^T W_a h̄_s``.

    ``W_a h̄_s`` is computed once per source (:meth:`precompute_keys`); each step is then a dot product.
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int | None = None):
        super().__init__()
        self.key_proj = nn.Linear(key_size, query_size, bias=False)  # W_a

    def precompute_keys(self, keys: torch.Tensor) -> torch.Tensor:
        return self.key_proj(keys)


ATTENTION_SCORES: dict[str, type[nn.Module]] = {
    "bahdanau": AdditiveScore,
    "dot": DotScore,
    "general": GeneralScore,
    "concat": ConcatScore,
}


def build_score(name: str, query_size: int, key_size: int, attention_size: int) -> nn.Module:
    """Instantiate the score registered under ``name`` (ValueError naming the choices otherwise)."""
    if name not in ATTENTION_SCORES:
        raise ValueError(f"unknown attention score {name!r}; valid choices: {sorted(ATTENTION_SCORES)}")
    return ATTENTION_SCORES[name](query_size, key_size, attention_size)


def attend(
    scores: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise scores over the source and take the weighted sum of values.

    Bahdanau et al. (2015) eq. (6) (softmax ``α_ij``) and eq. (5) (context ``c_i = Σ_j α_ij h_j``); Luong et al.
    (2015) eq. (7) (``a_t``) and the context ``c_t`` of sec. 3.1.

    Args:
        scores: (B, S) or (B, T, S) energies from a score module.
        values: (B, S, Hv) encoder states.
        mask: (B, S), nonzero on real tokens. Padding gets ``finfo(dtype).min`` before the softmax: weight 0.

    Returns:
        context (B, Hv) or (B, T, Hv), weights with the shape of ``scores`` (sum to 1 over unmasked positions).
    """
    if mask is not None:
        padding = mask == 0  # one op per step (generate() passes the integer mask every step)
        if scores.dim() == 3:
            padding = padding.unsqueeze(1)
        scores = scores.masked_fill(padding, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if weights.dim() == 2:
        context = torch.bmm(weights.unsqueeze(1), values).squeeze(1)
    else:
        context = torch.bmm(weights, values)
    return context, weights
