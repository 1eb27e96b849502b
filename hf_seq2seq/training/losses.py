"""What one training step computes: the summed token loss (the loop divides by the group's label tokens) and the
scheduled-sampling decoder inputs of the RNN family."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Summed (not averaged) label-smoothed cross-entropy over the non-``-100`` labels, in float32."""
    return F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)),
        labels.reshape(-1),
        ignore_index=-100,
        label_smoothing=label_smoothing,
        reduction="sum",
    )


def scheduled_sampling_inputs(
    raw_model, batch: dict, labels: torch.Tensor, ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """Decoder inputs where each gold token y_{t-1} is replaced by the model's prediction with prob. ``ratio``.

    Bengio et al. (2015) sample token by token inside the decoder; the decoder step here is a pure function used
    by both training and generate(), so we use the two-pass approximation (Duckworth et al. 2019, "Parallel
    scheduled sampling"): pass 1 (no gradient) decodes the batch teacher-forced, its argmax predictions replace
    a random subset of the gold inputs, pass 2 trains on the mixture.
    """
    dec_in = batch["decoder_input_ids"]
    with torch.no_grad():
        logits = raw_model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=dec_in
        ).logits
    predicted = logits.argmax(-1)  # prediction of y_t at position t
    draw = torch.rand(dec_in[:, 1:].shape, generator=generator).to(dec_in.device)
    replace = (draw < ratio) & (labels[:, :-1] != -100)
    mixed = dec_in.clone()
    mixed[:, 1:] = torch.where(replace, predicted[:, :-1], dec_in[:, 1:])
    return mixed
