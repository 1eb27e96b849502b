"""``hf-seq2seq plot-attention``: the alignment heatmap of a sentence, or a caption's attention over the image."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..families import CAPTIONING_MODEL_TYPE, FAMILIES
from .common import (
    CommandError,
    add_trust_arg,
    check_outputs,
    check_writable,
    fail,
    generate_kwargs,
    open_image,
    positive_int,
)


def _head(value: str):
    if value == "mean":
        return "mean"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--head must be an integer or 'mean', got {value!r}") from None


def plot_attention_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-seq2seq plot-attention",
        description="Draw the alignment heatmap of a sentence and its translation (--text: the model's "
        "cross-attention weights, source tokens on x, generated tokens on y), or, for an image-captioning model "
        "(--image), the attention map over the image for each generated word (Xu et al. 2015, fig. 3). The weights "
        "are read from a teacher-forced forward pass over the generated output.",
    )
    parser.add_argument("--model", required=True, help="saved model folder (or Hub repo id)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the source sentence (translation models)")
    source.add_argument("--image", help="an image file (image-captioning models)")
    parser.add_argument(
        "--layer", type=int, default=-1, help="decoder layer (Transformer; default: the last)"
    )
    parser.add_argument("--head", type=_head, default="mean", help="attention head index or 'mean' (default)")
    parser.add_argument(
        "--output", default="attention.png", help="image file, .png or .svg (default attention.png)"
    )
    parser.add_argument(
        "--num_beams", type=positive_int, default=None, help="beam size (default: generation_config.json)"
    )
    parser.add_argument("--max_new_tokens", type=positive_int, default=None, help="longest output")
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto: cuda if available)"
    )
    add_trust_arg(parser)
    args = parser.parse_args(argv)
    try:
        check_writable({"--output": args.output})  # the default attention.png too: before loading the model
    except CommandError as err:
        return fail(parser.prog, err)
    if args.image is not None:
        return _plot_image_attention(parser.prog, args)
    from ..hub import atomic_path
    from ..inference import folder_model_type, load_model
    from ..plotting import attention_matrix, plot_attention

    try:
        if folder_model_type(args.model) == CAPTIONING_MODEL_TYPE:
            raise ValueError(f"{args.model} is an image-captioning model: give --image, not --text")
        # eager attention: sdpa kernels (Marian's default) return no attention weights to draw
        model, tokenizer = load_model(
            args.model, args.device, args.trust_remote_code, attn_implementation="eager", cpu_kernels=False
        )
        matrix, src, tgt = attention_matrix(
            model, tokenizer, args.text, layer=args.layer, head=args.head, **generate_kwargs(args)
        )
        heads = (
            ""
            if model.config.model_type == FAMILIES["rnn"].model_type
            else f", layer {args.layer}, head {args.head}"
        )
        title = f"{tokenizer.convert_tokens_to_string(tgt)}{heads}"
        with atomic_path(args.output) as tmp:
            plot_attention(matrix, src, tgt, tmp, title=title)
        path = args.output
    except (OSError, ValueError) as err:
        return fail(parser.prog, err)
    print(path)
    return 0


def _plot_image_attention(prog: str, args) -> int:
    from ..hub import atomic_path
    from ..inference import load_captioner
    from ..plotting import caption_attention, plot_attention_over_image

    try:
        check_outputs({"--output": args.output}, {"--image": args.image})
        image = open_image(args.image)
        model, processor, tokenizer = load_captioner(
            args.model, args.device, args.trust_remote_code, text_hint="give --text instead of --image"
        )
        maps, words, caption = caption_attention(model, processor, tokenizer, image, **generate_kwargs(args))
        if not words:
            raise ValueError(f"the model generated an empty caption for {args.image}: nothing to plot")
        with atomic_path(args.output) as tmp:
            plot_attention_over_image(image, maps, words, tmp)
        path = args.output
    except (OSError, ValueError) as err:
        return fail(prog, err)
    print(caption)
    print(path)
    return 0
