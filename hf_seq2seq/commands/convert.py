"""``hf-seq2seq convert``: bring a model in from another toolkit, or take ours out as a stock transformers class
(:mod:`hf_seq2seq.convert`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .common import fail

FORMATS = (
    "hf-seq2seq",
    "marian",
    "joeynmt",
    "eole",
)  # hf_seq2seq.convert.FORMATS, without importing torch for --help


def convert_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-seq2seq convert",
        description="Convert a model between toolkits, exactly (the same logits and translations): a transformers "
        "MarianMTModel, a JoeyNMT 2.x or an eole model directory into our classes, or our post-norm Transformer into a stock "
        "MarianMTModel that loads without remote code. The output folder must be new or empty; it is written "
        "completely or not at all.",
    )
    parser.add_argument(
        "--from", dest="from_format", required=True, choices=FORMATS, help="the toolkit of --model"
    )
    parser.add_argument("--to", dest="to_format", required=True, choices=FORMATS, help="the toolkit to write")
    parser.add_argument(
        "--model",
        required=True,
        help="the model to convert: a model folder (hf-seq2seq, marian: also a Hub id), or a JoeyNMT model "
        "directory (config.yaml, a checkpoint, the vocabulary files), or an eole model directory (config.json, "
        "model.00.safetensors, vocab.json)",
    )
    parser.add_argument("--output", required=True, help="the folder to write (new or empty)")
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    from ..convert import ConversionError, convert

    hf_logging.disable_progress_bar()  # the loading / writing bars of a sub-second conversion

    try:
        output = convert(args.model, args.output, from_format=args.from_format, to_format=args.to_format)
    except (ConversionError, OSError) as err:
        return fail(parser.prog, err)
    print(output)
    return 0
