"""Everything the loop needs before its first step, built once by :func:`set_up` into a :class:`Run`: the
Accelerator, the task's data and tokenizer, the model, AdamW and its schedule, and (``--resume``) the state of the
newest complete checkpoint. The loop's helpers take the :class:`Run` as an explicit argument."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..families import family_of
from .arguments import DataArguments, ModelArguments, TrainArguments, args_to_dict
from .checkpointing import TrainState, plain_model, prepare_output_dir, resume_latest, shard_tied_embeddings
from .master_weights import MasterWeightAdamW
from .task import TrainingTask, build_training_task, set_generation_defaults

logger = logging.getLogger("hf_seq2seq.training")


@dataclass
class Run:
    """The objects of one training run, shared by the loop's helpers."""

    data_args: DataArguments
    model_args: ModelArguments
    train_args: TrainArguments
    task: TrainingTask
    accelerator: object
    output_dir: Path
    log_with: str | None
    run_start: float
    tokenizer: object = None
    model: object = None
    optimizer: object = None
    scheduler: object = None
    collator: object = None
    label_smoothing: float = 0.0
    state: TrainState | None = None

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def accum(self) -> int:
        return self.train_args.gradient_accumulation_steps

    @property
    def master(self) -> MasterWeightAdamW | None:
        """--bf16_weights: the optimizer holding the fp32 master weights (else ``None``)."""
        inner = getattr(self.optimizer, "optimizer", self.optimizer)  # under Accelerate's wrapper
        return inner if isinstance(inner, MasterWeightAdamW) else None

    def model_to_save(self):
        """The model a folder gets: without wrappers (every rank must call: an all-gather under FSDP2); with
        --bf16_weights an fp32 copy holding the master weights."""
        model = plain_model(self.accelerator, self.model)
        return self.master.fp32_model(model) if self.master is not None else model

    @property
    def check_grads(self) -> bool:
        # fp16 overflows are handled by the grad scaler (the step is skipped and the scale lowered): not an error
        return self.train_args.mixed_precision != "fp16"


def build_scheduler(optimizer, train_args: TrainArguments):
    from transformers import get_inverse_sqrt_schedule, get_scheduler

    if train_args.lr_scheduler == "inverse_sqrt":
        return get_inverse_sqrt_schedule(optimizer, num_warmup_steps=train_args.warmup_steps)
    name = "constant_with_warmup" if train_args.lr_scheduler == "constant" else train_args.lr_scheduler
    return get_scheduler(
        name, optimizer, num_warmup_steps=train_args.warmup_steps, num_training_steps=train_args.max_steps
    )


def _has_fused_adamw(model) -> bool:
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    device = next(model.parameters()).device.type
    return device in _get_fused_kernels_supported_devices()


def _dynamo_plugin(train_args: TrainArguments):
    """``--torch_compile``: Accelerate compiles the model in ``prepare``; ``None`` leaves Accelerate's default
    (``accelerate launch --dynamo_backend`` / its config)."""
    if not train_args.torch_compile:
        return None
    from accelerate.utils import TorchDynamoPlugin

    # dynamic=None: static shapes first (the collator pads lengths to --pad_to_multiple_of); a dimension that
    # keeps changing (the number of sentences in a token-budget batch) is made dynamic after one recompile
    return TorchDynamoPlugin(backend=train_args.torch_compile_backend, dynamic=None)


def build_optimizer(model, train_args: TrainArguments):
    """AdamW; no weight decay on biases and norm weights (1-D parameters or names containing "norm"). With
    --bf16_weights, :class:`~.master_weights.MasterWeightAdamW` (the same AdamW over fp32 master copies)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": train_args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizer_class = MasterWeightAdamW if train_args.bf16_weights else torch.optim.AdamW
    return optimizer_class(
        groups,
        lr=train_args.learning_rate,
        betas=(train_args.adam_beta1, train_args.adam_beta2),
        eps=train_args.adam_epsilon,
        # one fused kernel for all parameters (CUDA, and CPU since torch 2.4) with --torch_compile
        fused=True if train_args.torch_compile and _has_fused_adamw(model) else None,
    )


def _accelerator(train_args: TrainArguments, output_dir: Path, log_with: str | None):
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    source = _check_precision(train_args)
    accelerator = Accelerator(
        mixed_precision=train_args.mixed_precision,
        gradient_accumulation_steps=train_args.gradient_accumulation_steps,
        step_scheduler_with_optimizer=False,  # one scheduler step per optimizer step, whatever the world size
        log_with=log_with,
        dynamo_plugin=_dynamo_plugin(train_args),
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / "runs")
        ),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    quiet_libraries(train_args.disable_progress_bar)
    if not accelerator.is_main_process:
        logger.setLevel(logging.WARNING)
    ran = str(accelerator.mixed_precision)
    train_args.mixed_precision = ran  # run_config.json and the model card record what ran
    logger.info("mixed precision: %s (from %s)", ran, source)
    return accelerator


def _check_precision(train_args: TrainArguments) -> str:
    """Where the precision comes from, for the log; fp16 on the CPU is refused before the Accelerator exists.

    --mixed_precision None lets Accelerate decide: `accelerate launch --config_file` passes the config's value as
    ACCELERATE_MIXED_PRECISION; an explicit --mixed_precision (command line or recipe) wins over both. Accelerate
    accepts fp16 on the CPU, but there is no fp16 autocast or grad scaler there: the run would silently be fp32.
    """
    from accelerate import PartialState

    if train_args.mixed_precision is not None:
        source, requested = "--mixed_precision", train_args.mixed_precision
    elif os.environ.get("ACCELERATE_MIXED_PRECISION"):
        source = "the Accelerate launch config / ACCELERATE_MIXED_PRECISION"
        requested = os.environ["ACCELERATE_MIXED_PRECISION"]
    else:
        source, requested = "the default", "no"
    if train_args.bf16_weights:
        return _bf16_weights_precision(train_args, source, requested)
    if requested == "fp16" and PartialState().device.type == "cpu":
        raise ValueError(
            f"mixed precision fp16 (from {source}) needs a GPU; this run is on the CPU, where it would silently "
            "train in fp32: use --mixed_precision bf16 (CPU autocast) or no"
        )
    return source


def _bf16_weights_precision(train_args: TrainArguments, source: str, requested: str) -> str:
    """--bf16_weights is the precision: Accelerate runs without autocast. A launch config's bf16 is what the user
    wants anyway (it is dropped, with a log line); its fp16 is a contradiction."""
    if requested == "fp16":
        raise ValueError(
            f"--bf16_weights with mixed precision fp16 (from {source}): the weights are bf16; give "
            "--mixed_precision no or a launch config without fp16"
        )
    train_args.mixed_precision = "no"
    if requested == "bf16":
        return f"--bf16_weights (bf16 weights, fp32 masters; {source}'s bf16 autocast is not used)"
    return "--bf16_weights (bf16 weights, fp32 masters, no autocast)"


class _SharedTensorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()


def quiet_libraries(disable_progress_bar: bool) -> None:
    """Keep the libraries' per-checkpoint chatter out of the run log, through their own switches: Accelerate's
    INFO lines of every save (paths of optimizer/scheduler/RNG files) and its "Removed shared tensor" warning (the
    tied embedding is saved once, by design, and restored on load); with --disable_progress_bar also the bars of
    datasets' map and of transformers' weight saving/loading. Warnings and errors of every library still show."""
    import datasets
    import transformers

    for name in ("accelerate.accelerator", "accelerate.checkpointing"):
        logging.getLogger(name).setLevel(logging.WARNING)
    other = logging.getLogger("accelerate.utils.other")
    if not any(isinstance(f, _SharedTensorFilter) for f in other.filters):
        other.addFilter(_SharedTensorFilter())
    if disable_progress_bar:
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def check_launch(accelerator) -> None:
    """Stop where Accelerate would quietly train something other than what the launch asked for."""
    import os

    from accelerate.utils import DistributedType

    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes == 1:
        # torchrun started the processes, but without a GPU (and without ACCELERATE_USE_CPU) each one trains alone
        raise ValueError(
            f"{launched} processes were launched (WORLD_SIZE={launched}) but Accelerate runs each one alone: it found "
            "no GPU; to train on CPU with gloo set ACCELERATE_USE_CPU=1 (configs/accelerate/cpu_two_processes.yaml)"
        )
    fsdp_asked = os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
    if fsdp_asked and accelerator.distributed_type != DistributedType.FSDP:
        # Accelerate turns ACCELERATE_USE_FSDP into FSDP only for GPU-like back-ends; on CPU it falls back to DDP
        raise ValueError(
            f"the launch config asks for FSDP but Accelerate set up {accelerator.distributed_type.value}: Accelerate "
            "enables FSDP only on GPUs/accelerators, not with use_cpu: true or ACCELERATE_USE_CPU=1"
        )


def _tokenizer(run: Run):
    """Rank 0 trains (or loads) the tokenizer and saves it; the others (and a resumed run) read the saved one."""
    tok_dir = run.output_dir / "tokenizer"
    with run.accelerator.main_process_first():
        if (run.train_args.resume and tok_dir.is_dir()) or not run.is_main:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(tok_dir)
        tokenizer = run.task.build_tokenizer()
        tokenizer.save_pretrained(tok_dir)
        return tokenizer


def _model_and_optimizer(run: Run) -> None:
    from accelerate.utils import set_seed

    set_seed(run.train_args.seed)
    model = run.task.build_model(run.tokenizer)
    set_generation_defaults(model, run.train_args)
    if run.train_args.bf16_weights:
        _check_bf16_weights_launch(run.accelerator)
        model = model.to(torch.bfloat16)  # the fp32 masters start from these values (build_optimizer)
    if getattr(run.accelerator, "is_fsdp2", False):
        shard_tied_embeddings(model, run.accelerator)
    family = family_of(model)
    if run.model_args.scheduled_sampling > 0 and not (family is not None and family.scheduled_sampling):
        raise ValueError("--scheduled_sampling is only supported for the RNN family")
    run.label_smoothing = float(getattr(model.config, "label_smoothing", 0.0) or 0.0)
    run.collator = run.task.collator(run.tokenizer, model)
    optimizer = build_optimizer(model, run.train_args)
    scheduler = build_scheduler(optimizer, run.train_args)
    run.model, run.optimizer, run.scheduler = run.accelerator.prepare(model, optimizer, scheduler)
    if (
        run.master is not None
    ):  # checkpoints' model.safetensors hold the masters (checkpoint averaging reads it)
        run.accelerator.register_save_state_pre_hook(run.master.save_state_pre_hook)


def _check_bf16_weights_launch(accelerator) -> None:
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        raise ValueError(
            "--bf16_weights is not for FSDP: Accelerate's FSDP2 already keeps fp32 sharded weights and computes in "
            "bf16 with --mixed_precision bf16 (its MixedPrecisionPolicy); use that instead"
        )


def _record_options(run: Run) -> None:
    options = args_to_dict(run.data_args, run.model_args, run.train_args)
    if run.train_args.recipe is not None:  # set by recipe.parse_args: --config, as given
        options = {"config": run.train_args.recipe, **options}
    if run.is_main:
        (run.output_dir / "run_config.json").write_text(json.dumps(options, indent=2, default=str))
    if run.log_with is not None:
        hparams = {k: v for k, v in options.items() if isinstance(v, (int, float, str, bool))}
        run.accelerator.init_trackers("hf_seq2seq", config=hparams)


def set_up(data_args: DataArguments, model_args: ModelArguments, train_args: TrainArguments) -> Run:
    from accelerate.utils import set_seed

    task = build_training_task(data_args, model_args, train_args)
    output_dir = Path(train_args.output_dir)
    log_with = None if train_args.log_with in ("none", "") else train_args.log_with
    accelerator = _accelerator(train_args, output_dir, log_with)
    check_launch(accelerator)
    run = Run(data_args, model_args, train_args, task, accelerator, output_dir, log_with, time.perf_counter())
    prepare_output_dir(output_dir, train_args, run.is_main)  # every rank raises the same error; main deletes
    accelerator.wait_for_everyone()
    set_seed(train_args.seed)
    # Rank 0 reads and tokenizes first; the others then find its Arrow cache (no duplicated work, no race)
    with accelerator.main_process_first():
        task.load(train_args.seed)
    run.tokenizer = _tokenizer(run)
    with accelerator.main_process_first():
        task.prepare(run.tokenizer)
    _model_and_optimizer(run)
    run.state = TrainState()
    accelerator.register_for_checkpointing(run.state)
    if train_args.resume:
        resume_latest(accelerator, run.state, output_dir)
    _record_options(run)
    return run
