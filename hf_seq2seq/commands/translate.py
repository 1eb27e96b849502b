"""``hf-seq2seq translate``: one sentence per line through a saved model, and the library function behind it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..export.engines import add_engine_args, translate_args
from .common import (
    _fail,
    _generate_kwargs,
    _generation_args,
    _load,
    _read_lines,
    _read_stdin,
    check_outputs,
    positive_int,
    write_atomic,
)


def _max_source_length(model, tokenizer) -> int:
    limits = [
        getattr(model.config, "max_position_embeddings", None),
        getattr(tokenizer, "model_max_length", None),
    ]
    limits = [int(x) for x in limits if isinstance(x, int) and 0 < x < 10**9]
    return min(limits) if limits else 512


def translate_lines(
    model,
    tokenizer,
    lines: Sequence[str],
    batch_size: int = 32,
    n_best: int = 1,
    progress: bool = False,
    **generate_kwargs,
) -> list[list[str]]:
    """Translate ``lines``; returns ``n_best`` hypotheses (best first) for every line, in input order.

    Lines are sorted by length and batched (less padding), then put back in input order. Empty (whitespace-only)
    lines are not sent to the model: they get ``n_best`` empty hypotheses. Over-long lines are truncated to the
    model's maximum source length (with a warning).
    """
    import torch
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n_best < 1:
        raise ValueError(f"n_best must be >= 1, got {n_best}")
    if n_best > 1:
        num_beams = generate_kwargs.get("num_beams") or model.generation_config.num_beams or 1
        if num_beams < n_best and not generate_kwargs.get("do_sample"):
            generate_kwargs["num_beams"] = n_best  # beam search returns at most num_beams hypotheses
        generate_kwargs["num_return_sequences"] = n_best
    limit = _max_source_length(model, tokenizer)
    device = next(model.parameters()).device
    results: list[list[str]] = [[""] * n_best for _ in lines]
    todo = [i for i, line in enumerate(lines) if line.strip()]
    # verbose=False: the warning below names the lines; transformers' "indexing errors" one would come first
    lengths = {
        i: len(tokenizer(lines[i].strip(), truncation=False, verbose=False)["input_ids"]) for i in todo
    }
    too_long = [i + 1 for i in todo if lengths[i] > limit]
    if too_long:
        print(
            f"warning: {len(too_long)} line(s) longer than {limit} tokens truncated (lines {too_long[:10]})",
            file=sys.stderr,
        )
    order = sorted(todo, key=lambda i: lengths[i], reverse=True)  # longest first: an OOM shows up at once
    with tqdm(total=len(order), unit="line", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            enc = tokenizer(
                [lines[i].strip() for i in batch],
                padding=True,
                truncation=True,
                max_length=limit,
                return_tensors="pt",
            ).to(device)
            with torch.no_grad():
                out = model.generate(
                    input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **generate_kwargs
                )
            texts = tokenizer.batch_decode(out, skip_special_tokens=True)
            for k, i in enumerate(batch):
                results[i] = [t.strip() for t in texts[k * n_best : (k + 1) * n_best]]
            bar.update(len(batch))
    return results


def translate_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-seq2seq translate",
        description="Translate one sentence per line with a saved model (stdin → stdout, or files). Output line N "
        "is the translation of input line N; empty lines stay empty. With --n_best K, K lines (best first) per "
        "input line.",
    )
    parser.add_argument("--model", required=True, help="saved model folder (or Hub repo id)")
    parser.add_argument("--input", default=None, help="source file (default: stdin)")
    parser.add_argument(
        "--output",
        default=None,
        help="output file, replaced only once every line is translated (default: stdout)",
    )
    parser.add_argument(
        "--n_best", type=positive_int, default=1, help="hypotheses per input line (default 1)"
    )
    _generation_args(parser)
    add_engine_args(parser)
    args = parser.parse_args(argv)
    try:
        check_outputs({"--output": args.output}, {"--input": args.input})
        lines = _read_lines(args.input) if args.input else _read_stdin()
        if args.engine != "torch":  # an exported folder (hf-seq2seq export): hf_seq2seq.export.engines
            results = translate_args(args, lines)
        else:
            model, tokenizer = _load(args.model, args.device, args.trust_remote_code)
            results = translate_lines(
                model,
                tokenizer,
                lines,
                batch_size=args.batch_size,
                n_best=args.n_best,
                progress=args.output is not None,
                **_generate_kwargs(args),
            )
    except (OSError, ValueError) as err:
        return _fail(parser.prog, err)
    text = "".join(hyp + "\n" for hyps in results for hyp in hyps)
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0
