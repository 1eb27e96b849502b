"""``hf-seq2seq average-checkpoints``: the mean of a run's last N checkpoints as a model folder
(:mod:`hf_seq2seq.training.averaging`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .common import fail


def average_checkpoints_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-seq2seq average-checkpoints",
        description="Average the weights of the last N checkpoints of a run (or of the given checkpoint / model "
        "folders) and write a loadable model folder: the template's config, tokenizer, code and card with the "
        "averaged model.safetensors. Inputs are never modified.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run_dir", help="a training --output_dir: average its last --last checkpoints")
    source.add_argument(
        "--checkpoints",
        nargs="+",
        metavar="DIR",
        help="checkpoint folders (RUN/checkpoints/step-N) and/or saved model folders to average",
    )
    parser.add_argument("--last", type=int, default=None, help="with --run_dir: how many checkpoints (>= 2)")
    parser.add_argument("--output", required=True, help="folder to write the averaged model to")
    parser.add_argument(
        "--template",
        default=None,
        help="model folder giving config, tokenizer, code and card (default: the run's final_model, else "
        "best_model)",
    )
    parser.add_argument(
        "--overwrite_output_dir", action="store_true", help="replace --output if it exists and is not empty"
    )
    args = parser.parse_args(argv)
    if args.run_dir is not None and args.last is None:
        parser.error("--run_dir needs --last N (the number of checkpoints to average)")
    if args.checkpoints is not None and args.last is not None:
        parser.error("--last only applies to --run_dir")
    from ..training.averaging import (
        CheckpointAveragingError,
        default_template,
        last_checkpoints,
        write_averaged_model,
    )

    try:
        if args.run_dir is not None:
            if args.last < 2:
                raise CheckpointAveragingError(f"--last must be >= 2 to average anything, got {args.last}")
            paths = last_checkpoints(args.run_dir, args.last)
            run_dirs = [Path(args.run_dir)]
        else:
            paths = [Path(p) for p in args.checkpoints]
            run_dirs = list(dict.fromkeys(p.parent.parent for p in paths if p.parent.name == "checkpoints"))
        template = Path(args.template) if args.template else default_template(run_dirs, paths)
        output = write_averaged_model(paths, args.output, template, overwrite=args.overwrite_output_dir)
    except (OSError, ValueError) as err:
        return fail(parser.prog, err)
    print(f"averaged {len(paths)} checkpoints: {', '.join(str(p) for p in paths)}")
    print(f"template: {template}")
    print(output)
    return 0
