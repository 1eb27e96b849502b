"""Validation: one sharded loop for every task (:func:`validation_loop`: loss and generated texts of every item
exactly once; the task supplies the batches, the model inputs, the decoding and the scores), the text task's
BLEU/chrF on top of it, the decision "is this the best model so far" taken on the main process and broadcast, and
the facts of the model card."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from .arguments import args_to_dict
from .checkpointing import plain_model
from .losses import token_loss_sum
from .recipe import recipe_as_run

logger = logging.getLogger("hf_seq2seq.training")

# Validation results the model card shows (hub.render_model_card); exact_match / cider / num_references: captioning
CARD_METRIC_KEYS = (
    "bleu",
    "chrf",
    "bleu_signature",
    "chrf_signature",
    "exact_match",
    "cider",
    "num_references",
)


class ValidationBatch(NamedTuple):
    """One validation batch as a task builds it (tensors on the accelerator's device): ``forward`` are the
    keyword arguments of the teacher-forced forward pass whose logits give the loss against ``labels``
    (B', T; -100 = padding; B' may exceed the batch when an image has several references), ``generate`` those
    of ``generate()`` (the search options are added by the loop)."""

    forward: dict
    labels: torch.Tensor
    generate: dict


@torch.no_grad()
def validation_loop(
    accelerator,
    raw,
    batches: list[list[int]],
    num_items: int,
    make_batch: Callable[[list[int]], ValidationBatch],
    decode: Callable[[torch.Tensor], list[str]],
    train_args,
    what: str = "sentences",
) -> tuple[float, list[str] | None]:
    """The sharded validation loop of every task: loss over every label token, one generated text per item,
    every item exactly once.

    ``raw`` is :func:`~hf_seq2seq.training.checkpointing.plain_model` of the trained model (under FSDP2 a full
    copy: ranks generate for different batches). ``batches`` cut the items ``0..num_items-1`` into batches (the task picks the order); batch ``i`` goes to rank
    ``i % world``. For each of its batches a rank builds the inputs (``make_batch``), adds the batch's summed
    label-token cross-entropy (the model's ``label_smoothing``), generates with ``--num_beams`` /
    ``--max_new_tokens`` and decodes (``decode``). The loss is summed over ranks; the ``(index, text)`` pairs
    are collected by ``accelerator.gather_for_metrics(..., use_gather_object=True)`` and the main process checks
    that the indices are exactly ``0..num_items-1``: no sampler padding, so no duplicate to drop and none can slip
    through. Returns ``(loss, texts in item order)`` on the main process and ``(loss, None)`` on the others.
    """
    was_training = raw.training
    raw.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    tokens = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    pairs: list[tuple[int, str]] = []
    ls = float(getattr(raw.config, "label_smoothing", 0.0) or 0.0)
    search = {"num_beams": train_args.num_beams, "max_new_tokens": train_args.max_new_tokens}
    for idx in batches[accelerator.process_index :: accelerator.num_processes]:
        batch = make_batch(idx)
        with accelerator.autocast():
            logits = raw(**batch.forward).logits
        loss_sum += token_loss_sum(logits, batch.labels, ls).double()
        tokens += (batch.labels != -100).sum()
        with accelerator.autocast():
            generated = raw.generate(**batch.generate, **search)
        pairs.extend(zip(idx, decode(generated)))
    loss_sum = accelerator.reduce(loss_sum, reduction="sum")
    tokens = accelerator.reduce(tokens, reduction="sum")
    gathered = accelerator.gather_for_metrics(pairs, use_gather_object=True)
    if was_training:
        raw.train()
    loss = float(loss_sum / tokens.clamp(min=1))
    if not accelerator.is_main_process:
        return loss, None
    indices = sorted(i for i, _ in gathered)
    if indices != list(range(num_items)):
        raise RuntimeError(
            f"validation gather lost or duplicated {what}: {len(indices)} results for {num_items} {what} "
            f"({len(set(indices))} distinct)"
        )
    texts = [""] * num_items
    for i, text in gathered:
        texts[i] = text
    return loss, texts


def evaluate_model(accelerator, model, tokenizer, val_tok, references: list[str], train_args, data_args):
    """Validation loss + beam-search BLEU/chrF (:func:`hf_seq2seq.metrics.corpus_scores`) over the whole text
    validation set, every sentence exactly once (:func:`validation_loop`; sentences sorted by source length,
    longest first, ``--validation_batch_size`` per batch). Returns ``(result, hypotheses)``; other ranks than the
    main one get ``({"loss": ...}, None)``."""
    from transformers import DataCollatorForSeq2Seq

    from ..metrics import corpus_scores

    raw = plain_model(accelerator, model)  # under FSDP2 a full copy: ranks generate for different batches
    collator = DataCollatorForSeq2Seq(tokenizer, model=raw, label_pad_token_id=-100)
    lengths = [len(x) for x in val_tok["input_ids"]]
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bs = data_args.validation_batch_size

    def make_batch(idx: list[int]) -> ValidationBatch:
        feats = [{"input_ids": val_tok[i]["input_ids"], "labels": val_tok[i]["labels"]} for i in idx]
        batch = {k: v.to(accelerator.device) for k, v in collator(feats).items()}
        labels = batch.pop("labels")
        prompt = {k: batch[k] for k in ("input_ids", "attention_mask")}
        return ValidationBatch(forward=batch, labels=labels, generate=prompt)

    def decode(generated: torch.Tensor) -> list[str]:
        return tokenizer.batch_decode(generated, skip_special_tokens=True)

    batches = [order[i : i + bs] for i in range(0, len(order), bs)]
    loss, hyps = validation_loop(accelerator, raw, batches, len(references), make_batch, decode, train_args)
    result = {"loss": loss}
    if hyps is None:
        return result, None
    result.update(corpus_scores(hyps, references, with_lengths=True), num_sentences=len(hyps))
    return result, hyps


def _is_better(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


# ----------------------------------------------------------------------------------------------------- one run
# The helpers below take the loop's ``Run`` (hf_seq2seq.training.setup) as an explicit argument.


def write_history(run) -> None:
    if run.is_main:
        (run.output_dir / "training_history.json").write_text(json.dumps(run.state.history, indent=2))


def model_card(run, metrics: dict, final: bool = False) -> dict:
    """What hub.render_model_card knows how to show: data, metrics + signatures, the training options, the recipe
    (set on ``train_args`` by ``recipe.parse_args``) and the hardware. Paths are shown relative to the working
    directory or by base name: the card is published as written."""
    from ..hub import hardware_description, public_path, public_training_args

    state, train_args = run.state, run.train_args
    options = args_to_dict(run.data_args, run.model_args, train_args)
    recipe_text = train_args.recipe_text
    if recipe_text is not None:  # the file merged with the command line: what ran
        recipe_text = recipe_as_run(recipe_text, options, json_format=train_args.recipe.endswith(".json"))
    facts = {
        **{k: v for k, v in run.task.card_facts().items() if k not in ("example", "examples")},
        "model_name": Path(train_args.output_dir).resolve().name,
        "eval_split": "validation",
        "num_eval_sentences": metrics.get("num_sentences"),
        "num_beams": train_args.num_beams,
        "training_args": public_training_args(options),
        "recipe": public_path(train_args.recipe) if train_args.recipe else None,
        "recipe_text": recipe_text,
        "steps": state.step,
        "epochs": state.epoch,
        "train_time": time.perf_counter() - run.run_start,
        "hardware": hardware_description(run.accelerator.device, run.world, _precision(train_args)),
        **{k: metrics[k] for k in CARD_METRIC_KEYS if k in metrics},
    }
    if final:
        keys = {"loss": "train_loss", "eval_loss": "valid_loss", "eval_bleu": "bleu"}
        facts["history"] = [
            {"step": h["step"], **{new: h[old] for old, new in keys.items() if h.get(old) is not None}}
            for h in state.history
        ]
        example_facts = run.task.card_facts()
        facts["example"] = example_facts.get("example")
        facts["examples"] = example_facts.get("examples")
    return facts


def _precision(train_args) -> str:
    if getattr(train_args, "bf16_weights", False):
        return "bf16 weights with fp32 master weights"
    return train_args.mixed_precision


def _improved(run, value) -> bool:
    """The metric is computed on the main process only: broadcast its decision so every rank agrees."""
    flag = torch.tensor(0.0, device=run.accelerator.device)
    if run.is_main:
        improved = _is_better(value, run.state.best_metric, run.train_args.metric_for_best_model)
        flag += 1.0 if improved else 0.0
    return run.accelerator.reduce(flag, reduction="sum").item() > 0


def validate(run) -> dict:
    """Validate, record the result in the history, save ``best_model`` when the metric improved, log it."""
    state, accelerator, metric = run.state, run.accelerator, run.train_args.metric_for_best_model
    result = run.task.evaluate(accelerator, run.model, run.tokenizer, run.train_args)
    entry = {"step": state.step, "epoch": state.epoch, **{f"eval_{k}": v for k, v in result.items()}}
    state.history.append(entry)
    value = result["loss"] if metric == "loss" else result.get(metric)
    if _improved(run, value):
        model = run.model_to_save()  # every rank: an all-gather under FSDP2
        if run.is_main:
            state.best_metric = value
            run.task.save(model, run.tokenizer, run.output_dir / "best_model", model_card(run, result))
        state.best_step = state.step
        state.bad_evals = 0
    else:
        state.bad_evals += 1
    if run.log_with is not None:
        accelerator.log(
            {f"eval/{k}": v for k, v in result.items() if isinstance(v, (int, float))}, step=state.step
        )
    if run.is_main:
        logger.info(
            "step %d: validation %s",
            state.step,
            ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()),
        )
    write_history(run)
    return result
