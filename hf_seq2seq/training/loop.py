"""The Accelerate training loop behind ``scripts/train.py`` and ``hf-seq2seq train``: :func:`run_training` reads top
to bottom (set-up → for each group of batches: step → maybe validate/save → stop check → final model).

How a *step* is made, and why 1 process with accumulation 2 equals 2 processes
--------------------------------------------------------------------------------
Every rank builds the same, unsharded list of length-bucketed token-budget batches for the epoch
(:class:`hf_seq2seq.data.TokenBatchSampler` with one replica, shuffled by ``seed + epoch``). One optimizer step
consumes a *group* of ``world_size * gradient_accumulation_steps`` consecutive batches; micro-batch ``m`` of rank
``r`` is batch ``m * world_size + r`` of the group. The group's label-token count ``G`` is known on every rank from
the example lengths alone (no communication), so each micro-batch's summed cross-entropy is divided by ``G``:

    loss_for_backward = sum_CE(micro) * world_size * accumulation / G

``accelerator.backward`` divides by ``accumulation`` and DDP averages over ``world_size``, so the gradient is
``sum_CE(group) / G`` — the token-weighted mean over the whole global batch, whatever the process layout. The last
``< world_size * accumulation`` batches of an epoch (an incomplete group) are dropped; the next epoch reshuffles.
Checkpoints: :mod:`hf_seq2seq.training.checkpointing`.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import hooks
from .arguments import MAX_CONSECUTIVE_SKIPS, DataArguments, ModelArguments, TrainArguments
from .checkpointing import save_checkpoint
from .evaluation import model_card, validate, write_history
from .losses import scheduled_sampling_inputs
from .setup import Run, set_up

logger = logging.getLogger("hf_seq2seq.training")


@dataclass
class LoopState:
    """The loop's own bookkeeping (not checkpointed: :class:`~.checkpointing.TrainState` is)."""

    bar: object
    nan_step: int = 0  # test hook: the step whose loss is made NaN (hooks.DEBUG_NAN_ENV)
    status: str = "completed"
    stop_reason: str | None = None
    last_eval: dict | None = None
    last_eval_step: int | None = None
    window_tokens: int = 0
    window_start: float = field(default_factory=time.perf_counter)


def run_training(data_args: DataArguments, model_args: ModelArguments, train_args: TrainArguments) -> dict:
    """Train; return ``{"model", "tokenizer", "raw_datasets", "history", "final_metrics", "status", ...}``."""
    from tqdm.auto import tqdm

    run = set_up(data_args, model_args, train_args)
    # --push_to_hub fails now, not after the run: no login, a repo the token may not write, no network
    if train_args.push_to_hub:
        _hub_call(run, "cannot create or reach it", lambda: _create_repo(train_args))
    state = run.state
    bar = tqdm(
        total=train_args.max_steps,
        initial=state.step,
        # None: off when stderr is not a terminal (a log file, a pipe); the loop then logs a line instead
        disable=True if not run.is_main or train_args.disable_progress_bar else None,
        desc="training",
        dynamic_ncols=True,
    )
    run.model.train()
    loop = LoopState(bar=bar, nan_step=hooks.nan_step())
    while state.step < train_args.max_steps and loop.stop_reason is None:
        if train_args.num_epochs is not None and state.epoch >= train_args.num_epochs:
            break
        groups, batch_iter = epoch_groups(run)
        for g, G in groups:
            loss_value, grad_norm = forward_backward(run, loop, batch_iter, G)
            bad = non_finite(run, loss_value, grad_norm)
            if bad is not None:
                skip_or_stop(run, loop, g, bad, loss_value if bad == "loss" else float(grad_norm))
                continue
            update(run, loop, g, G, loss_value, grad_norm)
            after_step(run, loop)
            if state.step >= train_args.max_steps or loop.stop_reason:
                break
        else:
            state.epoch += 1
            state.groups_in_epoch = 0
    bar.close()
    return finish(run, loop)


def _too_few_batches(run: Run, n: int) -> ValueError:
    data_args = run.data_args
    size = data_args.max_tokens if run.task.batch_option == "--max_tokens" else data_args.batch_size
    return ValueError(
        f"the training split gives {n} batches of {run.task.batch_option}={size}, fewer "
        f"than one optimizer step needs ({run.world} processes x {run.accum} accumulation steps)"
    )


def epoch_groups(run: Run):
    """``(groups, batch_iter)``: the epoch's groups not consumed yet as ``(g, G)`` — ``G`` the label tokens of
    the whole group over all ranks (see the module doc) — and an iterator over this rank's micro-batches."""
    if getattr(run.data_args, "streaming", False):
        return stream_groups(run)
    world, accum, rank = run.world, run.accum, run.accelerator.process_index
    per_step = world * accum
    batches = run.task.epoch_batches(run.train_args.seed, run.state.epoch)  # int index arrays
    num_groups = len(batches) // per_step
    if num_groups == 0:
        raise _too_few_batches(run, len(batches))
    mine = [batches[g * per_step + m * world + rank] for g in range(num_groups) for m in range(accum)]
    lengths = np.asarray(run.task.label_lengths)
    batch_tokens = np.array([lengths[b].sum() for b in batches[: num_groups * per_step]], dtype=np.int64)
    group_tokens = batch_tokens.reshape(num_groups, per_step).sum(axis=1).tolist()
    loader = torch.utils.data.DataLoader(
        run.task.train_dataset,
        batch_sampler=IndexLists(mine),
        collate_fn=run.collator,
        num_workers=run.train_args.num_workers,
    )
    start = run.state.groups_in_epoch
    if start:
        loader = run.accelerator.skip_first_batches(loader, start * accum)
    return ((g, group_tokens[g]) for g in range(start, num_groups)), iter(loader)


class IndexLists:
    """The DataLoader's ``batch_sampler`` over compact index arrays: each batch becomes a list only when it is
    taken, so an epoch of millions of examples stays 4 bytes per example."""

    def __init__(self, arrays: list):
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays)

    def __iter__(self):
        return (a.tolist() for a in self.arrays)


def stream_groups(run: Run):
    """``--streaming``: the same contract as :func:`epoch_groups` over the task's stream of batches. Every rank
    reads the whole stream (identical on all ranks: same seed and epoch) and keeps micro-batch ``m * world +
    rank`` of each group, so ``G`` needs no communication; a resumed epoch skips the groups already consumed."""
    world, accum, rank = run.world, run.accum, run.accelerator.process_index
    per_step, skip, queue = world * accum, run.state.groups_in_epoch, deque()

    def groups():
        batches = run.task.epoch_stream(run.train_args.seed, run.state.epoch)
        for g in itertools.count():
            group = list(itertools.islice(batches, per_step))
            if len(group) < per_step:  # the last incomplete group is dropped, as in the map-style path
                if g == 0:
                    raise _too_few_batches(run, len(group))
                return
            if g < skip:
                continue
            for m in range(accum):
                features = [{k: v for k, v in ex.items() if k != "length"} for ex in group[m * world + rank]]
                queue.append(run.collator(features))
            yield g, sum(len(ex["labels"]) for batch in group for ex in batch)

    return groups(), iter(queue.popleft, None)


def forward_backward(run: Run, loop: LoopState, batch_iter, G: int):
    """Accumulate this rank's micro-batches of one group; return the step's mean token loss over all ranks and
    the global gradient norm after clipping (``None`` when neither clipping nor the finiteness check needs it)."""
    accelerator, state, args = run.accelerator, run.state, run.train_args
    world, accum = run.world, run.accum
    step_loss = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    for m in range(accum):
        batch = {k: v.to(accelerator.device) for k, v in next(batch_iter).items()}
        labels = batch.pop("labels")
        batch = run.task.model_inputs(batch)
        with accelerator.accumulate(run.model):
            if run.model_args.scheduled_sampling > 0:
                seed = args.seed * 1_000_003 + state.step * 1009 + m * world + accelerator.process_index
                batch["decoder_input_ids"] = scheduled_sampling_inputs(
                    accelerator.unwrap_model(run.model, keep_torch_compile=False),
                    batch,
                    labels,
                    run.model_args.scheduled_sampling,
                    torch.Generator().manual_seed(seed),
                )
            loss_sum = run.task.loss_sum(run.model, batch, labels, run.label_smoothing)
            if loop.nan_step == state.step + 1 and m == accum - 1:
                loss_sum = loss_sum * float("nan")
                loop.nan_step = 0  # once: the retried step is clean
            accelerator.backward(loss_sum * (world * accum / G))
        step_loss += loss_sum.detach().double()
    hooks.maybe_pause_mid_step(state.step + 1, run.output_dir)
    loss_value = float(accelerator.reduce(step_loss, reduction="sum") / G)
    grad_norm = None
    if math.isfinite(loss_value) and (args.max_grad_norm > 0 or run.check_grads):
        # the global norm (DDP has all-reduced the gradients): the same value on every rank
        max_norm = args.max_grad_norm if args.max_grad_norm > 0 else math.inf
        # --bf16_weights: clip the fp32 gradients of the master weights, which AdamW then steps
        params = run.master.grads_to_master() if run.master is not None else run.model.parameters()
        grad_norm = accelerator.clip_grad_norm_(params, max_norm)
    return loss_value, grad_norm


def non_finite(run: Run, loss_value: float, grad_norm) -> str | None:
    """``"loss"`` or ``"gradient norm"`` when that value is NaN/inf, else ``None``."""
    if not math.isfinite(loss_value):
        return "loss"
    if run.check_grads and grad_norm is not None and not math.isfinite(float(grad_norm)):
        return "gradient norm"
    return None


def skip_or_stop(run: Run, loop: LoopState, g: int, bad: str, value: float) -> None:
    """Never apply an update with non-finite values: skip it (``--nan_policy skip``, up to
    ``MAX_CONSECUTIVE_SKIPS`` in a row) or save the last good state and raise ``FloatingPointError``."""
    state = run.state
    run.optimizer.zero_grad(set_to_none=True)
    state.nan_skips = getattr(state, "nan_skips", 0) + 1
    if run.train_args.nan_policy == "skip" and state.nan_skips < MAX_CONSECUTIVE_SKIPS:
        state.skipped_steps = [*getattr(state, "skipped_steps", []), state.step + 1]
        state.groups_in_epoch = g + 1
        state.history.append({"step": state.step + 1, "epoch": state.epoch, "skipped": f"{bad} is {value}"})
        if run.is_main:
            logger.warning(
                "step %d: training %s is %s; update skipped (--nan_policy skip, %d in a row)",
                state.step + 1,
                bad,
                value,
                state.nan_skips,
            )
        return
    path = _save(run) if state.step > 0 else None
    write_history(run)
    where = (
        f"; the last good state (step {state.step}) is saved in {path}"
        if path
        else "; no step had been taken, nothing was saved"
    )
    in_a_row = f" ({state.nan_skips} non-finite steps in a row)" if state.nan_skips > 1 else ""
    msg = f"training {bad} is {value} at step {state.step + 1}{in_a_row}{where}"
    loop.bar.close()
    run.accelerator.end_training()
    raise FloatingPointError(msg)


def update(run: Run, loop: LoopState, g: int, G: int, loss_value: float, grad_norm) -> None:
    """Apply the step, record it in the history and log loss / learning rate / target tokens per second."""
    state = run.state
    state.nan_skips = 0
    run.optimizer.step()
    if not run.accelerator.optimizer_step_was_skipped:
        run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.groups_in_epoch = g + 1
    lr = run.scheduler.get_last_lr()[0]
    loop.window_tokens += G
    entry = {"step": state.step, "epoch": state.epoch, "loss": loss_value, "lr": lr, "tokens": G}
    if grad_norm is not None:
        entry["grad_norm"] = float(grad_norm)
    state.history.append(entry)
    loop.bar.update(1)
    if state.step % run.train_args.logging_steps == 0 or state.step == 1:
        tps = loop.window_tokens / max(time.perf_counter() - loop.window_start, 1e-9)
        loop.bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}", tok_s=f"{tps:.0f}")
        if loop.bar.disable and run.is_main:  # no bar (--disable_progress_bar): one log line instead
            logger.info(
                "step %d/%d loss %.4f lr %.2e %.0f target tokens/s",
                state.step,
                run.train_args.max_steps,
                loss_value,
                lr,
                tps,
            )
        if run.log_with is not None:
            run.accelerator.log(
                {"train/loss": loss_value, "train/lr": lr, "train/target_tokens_per_s": tps}, step=state.step
            )
        loop.window_tokens, loop.window_start = 0, time.perf_counter()


def _save(run: Run):
    return save_checkpoint(
        run.accelerator, run.state, run.output_dir, run.train_args.save_total_limit, model=run.model
    )


def after_step(run: Run, loop: LoopState) -> None:
    """Validate and save on schedule, and decide whether to stop (early stopping, ``--stop_after_step``,
    ``--max_train_minutes``)."""
    state, args = run.state, run.train_args
    if state.step % args.eval_steps == 0 or state.step == args.max_steps:
        loop.last_eval, loop.last_eval_step = validate(run), state.step
        if args.early_stopping_patience and state.bad_evals >= args.early_stopping_patience:
            loop.stop_reason = f"early stopping: no {args.metric_for_best_model} improvement in {state.bad_evals} validations"
    if state.step % args.save_steps == 0 or state.step == args.max_steps or loop.stop_reason:
        _save(run)
    if args.stop_after_step is not None and state.step >= args.stop_after_step:
        if state.step % args.save_steps != 0 and state.step != args.max_steps:
            _save(run)
        loop.stop_reason, loop.status = f"--stop_after_step={args.stop_after_step}", "interrupted"
    if args.max_train_minutes is not None and loop.stop_reason is None:
        # Every rank must agree, or DDP hangs: stop when any rank is over the limit.
        over = torch.tensor(
            float(time.perf_counter() - run.run_start > 60 * args.max_train_minutes),
            device=run.accelerator.device,
        )
        if run.accelerator.reduce(over, reduction="sum").item() > 0:
            loop.stop_reason = f"--max_train_minutes={args.max_train_minutes} reached"
            if state.step % args.save_steps != 0:
                _save(run)


def finish(run: Run, loop: LoopState) -> dict:
    """Validate the last step if not done yet, save ``final_model`` and return the run's result."""
    state, accelerator = run.state, run.accelerator
    if loop.stop_reason:
        logger.info("stopped: %s", loop.stop_reason)
    write_history(run)
    result = {
        "model": accelerator.unwrap_model(run.model, keep_torch_compile=False),
        "tokenizer": run.tokenizer,
        **run.task.result_extras(),
        "history": state.history,
        "status": loop.status,
        "step": state.step,
        "output_dir": run.output_dir,
        "final_metrics": loop.last_eval,
        "accelerator": accelerator,
    }
    if loop.status == "interrupted":
        accelerator.end_training()
        if run.train_args.push_to_hub:
            logger.info(
                "interrupted: nothing uploaded to %s (--resume finishes the run)", run.train_args.hub_model_id
            )
        return result
    last_eval = loop.last_eval
    if last_eval is None or loop.last_eval_step != state.step:
        last_eval = validate(run)
        if not (state.step % run.train_args.save_steps == 0):
            _save(run)
    final = dict(last_eval)
    result["final_metrics"] = final
    result["model"] = model = run.model_to_save()  # every rank: an all-gather under FSDP2
    if run.is_main:
        card = model_card(run, final, final=True)
        run.task.save(model, run.tokenizer, run.output_dir / "final_model", card)
        logger.info("the final model is saved in %s", run.output_dir / "final_model")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if run.train_args.push_to_hub and run.is_main:
        result["hub_commit"] = push_to_hub(run)
    return result


def _create_repo(train_args: TrainArguments) -> None:
    from ..hub import create_hub_repo

    create_hub_repo(train_args.hub_model_id, private=train_args.hub_private_repo)


def _hub_call(run: Run, what: str, call):
    """``call()``, its Hub errors as one ValueError naming --hub_model_id (the train command prints it)."""
    from ..hub import hub_error_message, hub_errors

    try:
        return call()
    except hub_errors() as err:
        message = hub_error_message(err) or str(err)
        raise ValueError(f"--push_to_hub: {run.train_args.hub_model_id}: {what}: {message}") from None


def push_to_hub(run: Run):
    """Upload the run's chosen model folder (best_model, else final_model) to --hub_model_id in one commit; a
    failure says where the model is and the command that uploads it later."""
    from ..hub import push_model_folder

    folder = run.output_dir / "best_model"
    if not (folder / "config.json").is_file():
        folder = run.output_dir / "final_model"
    train_args = run.train_args
    later = (
        f"it is saved in {folder}; upload it with hf-seq2seq push --model {folder} --repo_id "
        f"{train_args.hub_model_id}"
    )
    info = _hub_call(
        run,
        f"the upload failed ({later})",
        lambda: push_model_folder(
            folder,
            train_args.hub_model_id,
            private=train_args.hub_private_repo,
            commit_message=f"Upload {folder.name} of {Path(train_args.output_dir).name} with hf_seq2seq",
        ),
    )
    logger.info("uploaded %s to %s", folder, getattr(info, "commit_url", train_args.hub_model_id))
    return info
