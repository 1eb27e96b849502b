"""OpenNMT-py's / eole's beam search, as a decoding method for transformers' ``generate()``.

``model.generate(**inputs, num_beams=5, length_penalty=1.0, custom_generate=average_length_beam_search)`` runs the
search ``eole predict`` runs with ``length_penalty: avg`` and ``alpha: length_penalty`` (``wu`` is not offered;
``length_penalty=0.0`` is eole's ``none``), so a model converted from eole translates as eole did. transformers' own
beam search ranks differently in two ways, which is why this exists:

- **Normalisation.** eole divides a hypothesis' summed log-probability by ``(n + 1) ** alpha``, ``n`` the generated
  tokens with eos (its length counts the decoder start token); transformers divides by ``n ** length_penalty``.
- **Stopping.** eole keeps ``num_beams`` candidates per step, finished ones included (a finished candidate takes a
  slot at its step and is then dropped), and stops a sentence as soon as its best candidate of a step ends in eos
  (and ``num_return_sequences`` hypotheses are finished); every hypothesis still open at ``max_length`` is finished
  there. transformers keeps ``num_beams`` open beams and stops by its ``early_stopping`` heuristic.

It uses the model through ``generate()``'s own parts (input preparation, beam expansion, the encoder pass, the cache
and its reordering), so it runs every model of ours (and any encoder-decoder whose cache reorders); it returns the
sequences only (``return_dict_in_generate`` is refused in one line), best first, ``num_return_sequences`` per input.
"""

from __future__ import annotations

import torch

__all__ = ["average_length_beam_search"]

DEAD = -65504.0  # eole's score of a finished beam (the float16 minimum), so it is never extended


def average_length_beam_search(
    model,
    input_ids,
    logits_processor,
    stopping_criteria,
    generation_config,
    synced_gpus=False,
    **model_kwargs,
):
    """eole's ``BeamSearch`` (``length_penalty: avg``, ``alpha = generation_config.length_penalty``) over
    ``input_ids`` (B * K, P): the decoder prompt, repeated per beam by ``generate()``. Returns (B * N, P + n) ids,
    N = ``num_return_sequences``, each input's hypotheses best first, padded with the pad id."""
    from transformers.generation.utils import ALL_CACHE_NAMES

    if generation_config.return_dict_in_generate:
        raise ValueError(
            "average_length_beam_search returns sequences only; valid choices: return_dict_in_generate=False"
        )
    beams, best = generation_config.num_beams, generation_config.num_return_sequences or 1
    if best > beams:
        raise ValueError(f"num_return_sequences={best} is larger than num_beams={beams}")
    alpha, max_length = float(generation_config.length_penalty), generation_config.max_length
    eos = generation_config._eos_token_tensor.to(input_ids.device).view(-1)
    pad = int(
        generation_config._pad_token_tensor if generation_config._pad_token_tensor is not None else eos[0]
    )
    batch, prompt = input_ids.shape[0] // beams, input_ids.shape[1]
    scores = torch.full((batch, beams), float("-inf"), device=input_ids.device)
    scores[:, 0] = 0.0  # one live beam per input at the start
    offsets = torch.arange(batch, device=input_ids.device)[:, None] * beams
    hypotheses: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    sequences = input_ids
    while not all(done):
        step_inputs = model.prepare_inputs_for_generation(
            sequences,
            next_sequence_length=1 if sequences.shape[1] > prompt and model_kwargs.get("use_cache") else None,
            **model_kwargs,
        )
        outputs = model(**step_inputs, return_dict=True)
        model_kwargs = model._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=model.config.is_encoder_decoder
        )
        log_probs = torch.log_softmax(outputs.logits[:, -1, :].float(), dim=-1)  # (B * K, V)
        log_probs = logits_processor(sequences, log_probs)
        vocab = log_probs.shape[-1]
        # a hypothesis ending now has sequences.shape[1] + 1 tokens, the start token included (eole's length)
        penalty = (sequences.shape[1] + 1) ** alpha
        cumulative = log_probs + scores.view(-1, 1)
        current = cumulative / penalty if penalty != 1 else cumulative
        top_scores, top_ids = current.view(batch, beams * vocab).topk(beams, dim=-1)  # (B, K)
        scores = top_scores * penalty
        origin = (top_ids // vocab + offsets).view(-1)  # (B * K,) rows of the previous step
        sequences = torch.cat([sequences[origin], (top_ids % vocab).view(-1, 1)], dim=-1)
        finished = torch.isin(top_ids % vocab, eos)
        if sequences.shape[1] >= max_length:  # eole's max_length: every open hypothesis ends here
            finished[:] = True
        _collect(hypotheses, done, finished, top_scores, sequences, prompt, beams, best)
        scores = scores.masked_fill(finished, DEAD)
        _reorder(model, model_kwargs, ALL_CACHE_NAMES, origin)
    return _assemble(hypotheses, input_ids[::beams], best, pad)


def _collect(hypotheses, done, finished, top_scores, sequences, prompt, beams, best) -> None:
    """Store each input's candidates that ended at this step; an input is done when its best candidate ended and
    it has ``best`` hypotheses (eole's ``update_finished``)."""
    ended, values = finished.tolist(), top_scores.tolist()
    for i, row in enumerate(ended):
        if done[i] or not any(row):
            continue
        for j in (j for j, end in enumerate(row) if end):
            hypotheses[i].append((values[i][j], sequences[i * beams + j, prompt:].tolist()))
        if row[0] and len(hypotheses[i]) >= best:
            done[i] = True


def _reorder(model, model_kwargs: dict, cache_names, origin: torch.Tensor) -> None:
    """Reorder the cache to the beams kept (as transformers' beam search does)."""
    for key in cache_names:
        if model_kwargs.get(key) is not None:
            if hasattr(model, "_reorder_cache"):
                model_kwargs[key] = model._reorder_cache(model_kwargs[key], origin)
            else:
                model_kwargs[key].reorder_cache(origin)
            return


def _assemble(hypotheses, prompts: torch.Tensor, best: int, pad: int) -> torch.Tensor:
    """(B * N, P + n): each input's prompt and its ``best`` hypotheses by score (stable: earlier ones win ties)."""
    rows = []
    for prompt, found in zip(prompts.tolist(), hypotheses):
        ranked = sorted(found, key=lambda hypothesis: hypothesis[0], reverse=True)[:best]
        rows += [prompt + tokens for _, tokens in ranked]
    width = max(map(len, rows))
    return torch.tensor([row + [pad] * (width - len(row)) for row in rows], device=prompts.device)
