"""OpenNMT-py's / eole's beam search, as a decoding method for transformers' ``generate()``.

``model.generate(**inputs, num_beams=5, length_penalty=1.0, custom_generate=average_length_beam_search)`` runs the
search ``eole predict`` runs with ``length_penalty: avg`` and ``alpha: length_penalty`` (``length_penalty=0.0`` is
eole's ``none``), and ``custom_generate=wu_length_beam_search`` the one it runs with ``length_penalty: wu``, so a model
converted from eole translates as eole did. transformers' own beam search ranks differently in two ways, which is
why this exists:

- **Normalisation.** eole divides a hypothesis' summed log-probability by ``(n + 1) ** alpha`` (``avg``) or by
  ``((5 + n + 1) / 6) ** alpha`` (``wu``: Wu et al. 2016, eq. 14), ``n`` the generated tokens with eos (its length
  counts the decoder start token); transformers divides by ``n ** length_penalty``.
- **Stopping.** eole keeps ``num_beams`` candidates per step, finished ones included (a finished candidate takes a
  slot at its step and is then dropped), and stops a sentence as soon as its best candidate of a step ends in eos
  (and ``num_return_sequences`` hypotheses are finished); every hypothesis still open at ``max_length`` is finished
  there. transformers keeps ``num_beams`` open beams and stops by its ``early_stopping`` heuristic.

It uses the model through ``generate()``'s own parts (input preparation, beam expansion, the encoder pass, the cache
and its reordering), so it runs every model of ours (and any encoder-decoder whose cache reorders); it returns the
sequences, best first, ``num_return_sequences`` per input, and with ``return_dict_in_generate`` also the score it
ranked by (``sequences_scores``) and ``beam_indices``, not per-step scores nor attentions (refused in one line).

**Stored with a model folder.** This file is also transformers' ``custom_generate/generate.py`` (its ``generate``
below follows that contract: a folder holding it decodes every beam search with this search): ``hf-seq2seq convert
--from eole`` copies it there, its ``CUSTOM_GENERATE`` line naming the search (``wu_length_beam_search`` for eole's
``wu``, else ``average_length_beam_search``), with the generation config's ``length_penalty`` set to eole's ``alpha``
(0.0 for ``none``). Without this package,
``from_pretrained(folder, trust_remote_code=True)`` (and a pipeline given ``trust_remote_code=True``) runs the
folder's copy; with it, ``hf_seq2seq.inference.load_model`` (every command, the server) recognises the file by its
``CUSTOM_GENERATE`` line below and uses the installed search it names, so no code of the folder runs.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = [
    "average_length_beam_search",
    "generate",
    "stored_search",
    "wu_length_beam_search",
    "write_custom_generate",
]

# The search a folder's copy of this file runs, and what the copy is recognised by (write_custom_generate sets it).
CUSTOM_GENERATE = "average_length_beam_search"
CUSTOM_GENERATE_FILE = Path("custom_generate") / "generate.py"  # transformers' place for it in a model folder

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
    """eole's ``BeamSearch`` with ``length_penalty: avg`` (``alpha = generation_config.length_penalty``) over
    ``input_ids`` (B * K, P): the decoder prompt, repeated per beam by ``generate()``. Returns (B * N, P + n) ids,
    N = ``num_return_sequences``, each input's hypotheses best first, padded with the pad id."""
    return _beam_search(model, input_ids, logits_processor, generation_config, "avg", **model_kwargs)


def wu_length_beam_search(
    model,
    input_ids,
    logits_processor,
    stopping_criteria,
    generation_config,
    synced_gpus=False,
    **model_kwargs,
):
    """eole's ``BeamSearch`` with ``length_penalty: wu`` (Wu et al. 2016's ``((5 + length) / 6) ** alpha``, ``alpha =
    generation_config.length_penalty``); otherwise as :func:`average_length_beam_search`."""
    return _beam_search(model, input_ids, logits_processor, generation_config, "wu", **model_kwargs)


# eole's length penalties (eole/predict/penalties.py): the divisor of a hypothesis' log-probability at length n
PENALTIES = {"avg": lambda n, alpha: n**alpha, "wu": lambda n, alpha: ((5 + n) / 6.0) ** alpha}
SEARCHES = {
    "average_length_beam_search": average_length_beam_search,
    "wu_length_beam_search": wu_length_beam_search,
}


def _beam_search(model, input_ids, logits_processor, generation_config, penalty_name: str, **model_kwargs):
    """The search both entry points run, with eole's length penalty ``penalty_name``."""
    from transformers.generation.utils import ALL_CACHE_NAMES

    name = {"avg": "average_length_beam_search", "wu": "wu_length_beam_search"}[penalty_name]
    length_penalty = PENALTIES[penalty_name]
    for option in ("output_attentions", "output_hidden_states", "output_logits"):
        if getattr(generation_config, option, False):
            raise ValueError(
                f"{name} does not return attentions, hidden states or logits: {option}=True; "
                "valid choices: False"
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
    hypotheses: list[list[tuple[float, list[int], list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    sequences = input_ids
    rows = torch.zeros(
        input_ids.shape[0], 0, dtype=torch.long, device=input_ids.device
    )  # beam_indices so far
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
        penalty = length_penalty(sequences.shape[1] + 1, alpha)
        cumulative = log_probs + scores.view(-1, 1)
        current = cumulative / penalty if penalty != 1 else cumulative
        top_scores, top_ids = current.view(batch, beams * vocab).topk(beams, dim=-1)  # (B, K)
        scores = top_scores * penalty
        origin = (top_ids // vocab + offsets).view(-1)  # (B * K,) rows of the previous step
        sequences = torch.cat([sequences[origin], (top_ids % vocab).view(-1, 1)], dim=-1)
        rows = torch.cat([rows[origin], origin[:, None]], dim=-1)  # the row each new token was computed in
        finished = torch.isin(top_ids % vocab, eos)
        if sequences.shape[1] >= max_length:  # eole's max_length: every open hypothesis ends here
            finished[:] = True
        _collect(hypotheses, done, finished, top_scores, sequences, rows, prompt, beams, best)
        scores = scores.masked_fill(finished, DEAD)
        _reorder(model, model_kwargs, ALL_CACHE_NAMES, origin)
    sequences, sequence_scores, beam_indices = _assemble(hypotheses, input_ids[::beams], best, pad)
    if not generation_config.return_dict_in_generate:
        return sequences
    from transformers.generation.utils import GenerateBeamEncoderDecoderOutput

    return GenerateBeamEncoderDecoderOutput(
        sequences=sequences, sequences_scores=sequence_scores, beam_indices=beam_indices
    )


def _collect(hypotheses, done, finished, top_scores, sequences, rows, prompt, beams, best) -> None:
    """Store each input's candidates that ended at this step (score, tokens, beam indices); an input is done when
    its best candidate ended and it has ``best`` hypotheses (eole's ``update_finished``)."""
    ended, values = finished.tolist(), top_scores.tolist()
    for i, row in enumerate(ended):
        if done[i] or not any(row):
            continue
        for j in (j for j, end in enumerate(row) if end):
            k = i * beams + j
            hypotheses[i].append((values[i][j], sequences[k, prompt:].tolist(), rows[k].tolist()))
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


def _assemble(hypotheses, prompts: torch.Tensor, best: int, pad: int):
    """``(sequences (B * N, P + n), scores (B * N,), beam indices (B * N, n))``: each input's prompt and its ``best``
    hypotheses by score (stable: earlier ones win ties), padded with the pad id (beam indices with -1)."""
    rows, scores, indices = [], [], []
    for prompt, found in zip(prompts.tolist(), hypotheses):
        ranked = sorted(found, key=lambda hypothesis: hypothesis[0], reverse=True)[:best]
        rows += [prompt + tokens for _, tokens, _ in ranked]
        scores += [score for score, _, _ in ranked]
        indices += [beam_rows for _, _, beam_rows in ranked]
    width, steps = max(map(len, rows)), max(map(len, indices))
    device = prompts.device
    return (
        torch.tensor([row + [pad] * (width - len(row)) for row in rows], device=device),
        torch.tensor(scores, device=device),
        torch.tensor([row + [-1] * (steps - len(row)) for row in indices], device=device),
    )


# ------------------------------------------------------------------------------- stored with a model folder
def generate(*args, model, search: str = CUSTOM_GENERATE, **kwargs):
    """transformers' ``custom_generate`` entry point (``model.generate`` of a folder holding this file as
    ``custom_generate/generate.py``): a beam search (``num_beams`` > 1, no sampling, no assistant) runs the search
    ``CUSTOM_GENERATE`` names (``search``: another of :data:`SEARCHES`), anything else transformers' own
    ``generate()``; the same arguments."""
    config = kwargs.get("generation_config") or model.generation_config
    beams = kwargs.get("num_beams") or config.num_beams or 1
    sampling = kwargs.get("do_sample", config.do_sample)
    if beams > 1 and not sampling and kwargs.get("assistant_model") is None:
        kwargs.setdefault("custom_generate", SEARCHES[search])
    return type(model).generate(model, *args, **kwargs)


def write_custom_generate(folder, search: str = CUSTOM_GENERATE) -> Path:
    """Store the search ``search`` (one of :data:`SEARCHES`) with the model folder ``folder``: a copy of this file
    as transformers' ``custom_generate/generate.py``, its ``CUSTOM_GENERATE`` line naming ``search``."""
    if search not in SEARCHES:
        raise ValueError(f"search={search!r} is not one of {', '.join(SEARCHES)}")
    line = f'CUSTOM_GENERATE = "{CUSTOM_GENERATE}"'
    text = Path(__file__).read_text(encoding="utf-8")
    assert text.count(line) == 1
    target = Path(folder) / CUSTOM_GENERATE_FILE
    target.parent.mkdir(exist_ok=True)
    target.write_text(text.replace(line, f'CUSTOM_GENERATE = "{search}"'), encoding="utf-8")
    return target


def stored_search(folder) -> str | None:
    """The decoding method stored with ``folder``: ``None`` without a ``custom_generate/generate.py``, the name on
    its ``CUSTOM_GENERATE = "..."`` line (``average_length_beam_search`` for a copy of this file), else ``""``."""
    path = Path(folder) / CUSTOM_GENERATE_FILE
    if not path.is_file():
        return None
    prefix = "CUSTOM_GENERATE = "
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].split("#")[0].strip().strip('"')
    return ""
