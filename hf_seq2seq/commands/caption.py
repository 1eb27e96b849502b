"""``hf-seq2seq caption``: caption image files with a saved image-captioning model."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .common import add_generation_args, fail, generate_kwargs, open_image


def caption_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-seq2seq caption",
        description="Caption image files with a saved image-captioning model: one line per image, "
        "'<path><TAB><caption>' (or only the caption with --no_path).",
    )
    parser.add_argument("--model", required=True, help="saved captioning model folder (or Hub repo id)")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--no_path", action="store_true", help="print only the captions")
    add_generation_args(parser, unit="images")
    args = parser.parse_args(argv)
    import torch

    from ..inference import load_captioner

    try:
        images = [open_image(p) for p in args.images]  # every file checked before the model is loaded
        model, processor, tokenizer = load_captioner(args.model, args.device, args.trust_remote_code)
        device = next(model.parameters()).device
        captions = []
        for start in range(0, len(images), args.batch_size):
            chunk = images[start : start + args.batch_size]
            pixel_values = processor(images=chunk, return_tensors="pt")["pixel_values"].to(device)
            with torch.no_grad():
                out = model.generate(pixel_values=pixel_values, **generate_kwargs(args))
            captions += [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
    except (OSError, ValueError) as err:
        return fail(parser.prog, err)
    for path, caption in zip(args.images, captions):
        print(caption if args.no_path else f"{path}\t{caption}")
    return 0
