"""Checkpoints: the resumable state, atomic save, resume and retention.

``accelerator.save_state`` (model, optimizer, scheduler, RNG of every process, and :class:`TrainState`: step, epoch,
groups consumed in the epoch, best metric, history) is written into ``checkpoints/.tmp-step-N``; after every process
has finished, the main process writes ``COMPLETE`` into it and renames it to ``checkpoints/step-N``. ``--resume``
loads the newest folder that has the marker (the loop then skips the consumed micro-batches of the epoch with
``accelerator.skip_first_batches``). A folder without the marker is a write that was cut short: never loaded.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from . import hooks
from .arguments import TrainArguments

logger = logging.getLogger("hf_seq2seq.training")

COMPLETE_MARKER = "COMPLETE"
CHECKPOINT_RE = re.compile(r"^step-(\d+)$")


class TrainState:
    """Everything besides model/optimizer/scheduler/RNG a resumed run needs (checkpointed via Accelerate)."""

    def __init__(self):
        self.step = 0
        self.epoch = 0
        self.groups_in_epoch = 0  # optimizer steps already taken in the current epoch
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0
        self.nan_skips = 0  # non-finite steps in a row (--nan_policy skip)
        self.skipped_steps: list[int] = []
        self.history: list[dict] = []

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (with the marker), oldest first. Folders without the marker are ignored."""
    root = output_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m and (p / COMPLETE_MARKER).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def _run_markers(output_dir: Path) -> list[str]:
    names = ("checkpoints", "training_history.json", "final_model", "best_model")
    return [n for n in names if (output_dir / n).exists()]


def prepare_output_dir(output_dir: Path, train_args: TrainArguments, is_main: bool) -> None:
    markers = _run_markers(output_dir)
    if markers and not train_args.resume and not train_args.overwrite_output_dir:
        raise ValueError(
            f"--output_dir {str(output_dir)!r} already holds a run ({', '.join(markers)}); pass --resume to "
            "continue it or --overwrite_output_dir to replace it"
        )
    if not is_main:
        return
    try:
        if train_args.overwrite_output_dir:
            for name in (*markers, "tokenizer", "runs", "run_config.json"):
                target = output_dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a read-only place, no permission: one line naming the option, not a traceback
        raise OSError(f"--output_dir {str(output_dir)!r}: cannot prepare it: {err}") from None


def save_checkpoint(
    accelerator, state: TrainState, output_dir: Path, save_total_limit: int, model=None
) -> Path:
    """Write ``checkpoints/step-N`` atomically (temporary folder, marker, rename); keep the last
    ``save_total_limit`` checkpoints plus the best one. Every process must call it. Under FSDP2 ``model`` (the
    prepared model) also gets its full weights written as ``model.safetensors`` (see `_save_full_weights`)."""
    is_main = accelerator.is_main_process
    root = output_dir / "checkpoints"
    name = f"step-{state.step}"
    tmp, final = root / f".tmp-{name}", root / name
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if model is not None and getattr(accelerator, "is_fsdp2", False):
        _save_full_weights(accelerator, model, tmp)
    if is_main:
        hooks.maybe_cut_checkpoint_write(tmp, state.step, output_dir)
    accelerator.wait_for_everyone()
    if is_main:
        (tmp / COMPLETE_MARKER).write_text(json.dumps({"step": state.step, "time": time.time()}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        keep = {s for s, _ in list_checkpoints(output_dir)[-save_total_limit:]}
        if state.best_step is not None:
            keep.add(state.best_step)
        for s, p in list_checkpoints(output_dir):
            if s not in keep:
                shutil.rmtree(p, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def resume_latest(accelerator, state: TrainState, output_dir: Path) -> None:
    """``--resume``: drop interrupted writes, then load the newest complete checkpoint (if any)."""
    if accelerator.is_main_process:
        for stale in sorted((output_dir / "checkpoints").glob(".tmp-*")):
            logger.warning("removing %s: a checkpoint whose write was interrupted", stale)
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    ckpts = list_checkpoints(output_dir)
    if ckpts:
        step, path = ckpts[-1]
        try:
            accelerator.load_state(str(path))
        except ValueError as err:  # e.g. --bf16_weights given or not as when the checkpoint was written
            raise ValueError(f"--resume from {path}: {err}") from None
        logger.info("resumed from %s (step %d, epoch %d)", path, state.step, state.epoch)
    else:
        logger.warning("--resume: no complete checkpoint in %s; starting from scratch", output_dir)


# ------------------------------------------------------------------------------------------------------ FSDP2
# Under Accelerate's FSDP plugin (version 2) every parameter is a DTensor shard: forward/backward all-gather them in
# lockstep on every rank. ``save_state``/``load_state`` above handle that themselves (a sharded torch.distributed
# checkpoint folder, or one full file, per the config's ``fsdp_state_dict_type``); what needs the whole model on one
# rank — beam search over a rank's own validation batches, ``save_pretrained`` — gets a plain copy instead.


def _save_full_weights(accelerator, model, folder: Path) -> None:
    """``folder/model.safetensors`` with the full weights under the model's own names, as every non-FSDP checkpoint
    has it: FSDP's own files (shards, or a pickled full state dict) are for resuming, and `average-checkpoints` and
    users read ``model.safetensors``. One all-gather (every rank must call); rank 0 holds the copy, on the CPU."""
    from accelerate.utils import save
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    raw = accelerator.unwrap_model(model, keep_torch_compile=False)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full = get_model_state_dict(raw, options=options)
    if accelerator.is_main_process:
        # the gathered tied weights are separate copies: keep each shared parameter once, under the first name
        # named_parameters gives it, as save_state stores a plain model's
        params = dict(raw.named_parameters(remove_duplicate=False))
        kept = {name for name, _ in raw.named_parameters()}
        full = {k: v for k, v in full.items() if k not in params or k in kept}
        save(full, folder / "model.safetensors", safe_serialization=True)


def _unsharded_class(model) -> type:
    """``fully_shard`` swaps ``model.__class__`` for a subclass ``FSDP<Name>(FSDPModule, <Name>)``; the model's own class."""
    from torch.distributed.fsdp import FSDPModule

    return next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))


def plain_model(accelerator, model):
    """The trained model without any wrapper: ``unwrap_model`` (DDP, ``torch.compile``) or, under FSDP2, a fresh
    instance of the model's class holding the full weights on every rank (one all-gather; every rank must call).

    Its keys are the model's own (no ``_fsdp_wrapped_module.``/``_orig_mod.``), so folders saved from it load
    anywhere. It needs one full copy of the weights per rank: fine for models that fit one device.
    """
    # keep_torch_compile=False: the compiled wrapper's state dict would prefix every key with "_orig_mod."
    raw = accelerator.unwrap_model(model, keep_torch_compile=False)
    if not getattr(accelerator, "is_fsdp2", False):
        return raw
    import copy

    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(raw, options=StateDictOptions(full_state_dict=True))
    clone = _unsharded_class(raw)(raw.config)
    clone.load_state_dict(full)
    clone.generation_config = copy.deepcopy(raw.generation_config)
    return clone.to(accelerator.device).train(raw.training)


def shard_tied_embeddings(model, accelerator) -> None:
    """Before ``accelerator.prepare`` under FSDP2: put every module that holds the tied word-embedding weight into
    one FSDP unit (our encoder's and decoder's ``embed_tokens`` and ``lm_head``).

    Accelerate makes one unit of the input embedding and ``lm_head`` only, and torch >= 2.13 refuses a parameter
    that a third module still holds outside that unit: "Parameter 'model.encoder.embed_tokens.weight' is shared
    with a parameter already managed by another FSDP group". Accelerate leaves modules that are already sharded
    alone and maps the optimizer's parameters by name, so the unit is made here with its settings (no resharding
    after forward, like its own embedding unit). Making the three one module object instead also passes
    ``fully_shard``, but full-state-dict checkpoints then list keys that torch's loader does not expect.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    weight = model.get_input_embeddings().weight
    holders = [m for m in model.modules() if m._parameters.get("weight") is weight]
    if len(holders) <= 2:  # Accelerate's own unit covers it
        return
    plugin = accelerator.state.fsdp_plugin
    fully_shard(
        holders,
        reshard_after_forward=False,
        offload_policy=plugin.cpu_offload,
        mp_policy=plugin.mixed_precision_policy or MixedPrecisionPolicy(),
    )
