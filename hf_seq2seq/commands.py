"""``hf-seq2seq translate | evaluate | plot-attention | caption | push``: what a user does with a saved model folder.

Each ``<name>_main(argv) -> int`` owns its argparse parser; ``hf_seq2seq/cli.py`` dispatches to them.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import sys
from collections.abc import Sequence
from pathlib import Path


# ---------------------------------------------------------------------------------------------------- shared
def _load(model_path: str, device: str = "auto", trust_remote_code: bool = False):
    """The model (eval mode, on ``device``) and tokenizer of a saved folder or Hub repo.

    Our model types load with the installed package's code (``import hf_seq2seq`` registers them), so the code
    files in a folder are never executed unless ``trust_remote_code=True`` (``--trust_remote_code``) is given for
    a model type we do not know. Weights are read from ``model.safetensors`` only (no pickle). Every failure is a
    ``ValueError`` / ``OSError`` naming the folder and the problem.
    """
    import json

    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    import hf_seq2seq  # noqa: F401  (registers our model types, so local folders load without remote code)

    from .tokenization import OUR_MODEL_TYPES, check_tokenizer_fits_model

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    local = Path(model_path)
    if local.exists():
        if not (local / "config.json").is_file():
            raise FileNotFoundError(f"{model_path} is not a saved model folder: it has no config.json")
        try:
            model_type = json.loads((local / "config.json").read_text(encoding="utf-8")).get("model_type")
        except (ValueError, AttributeError) as err:
            raise ValueError(f"{local / 'config.json'} is not a valid JSON object: {err}") from None
        from transformers import CONFIG_MAPPING

        if model_type not in CONFIG_MAPPING and not trust_remote_code:
            raise ValueError(
                f"{local / 'config.json'} has model_type {model_type!r}, which is neither one of ours "
                f"({', '.join(OUR_MODEL_TYPES)}) nor a type transformers knows; if the folder ships its own "
                "code and you trust it, pass --trust_remote_code"
            )
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        model = AutoModelForSeq2SeqLM.from_pretrained(
            model_path, trust_remote_code=trust_remote_code, use_safetensors=True
        )
    except OSError:
        raise
    except ValueError as err:
        raise ValueError(f"cannot load the model in {model_path}: {err}") from None
    except Exception as err:  # safetensors' SafetensorError (truncated/corrupt file) and friends
        raise ValueError(
            f"cannot load the weights in {model_path}: {type(err).__name__}: {err} "
            "(is model.safetensors truncated or corrupt? save or download it again)"
        ) from None
    check_tokenizer_fits_model(tokenizer, model.config, str(model_path))
    return model.to(device).eval(), tokenizer


def _folder_model_type(model_path: str) -> str | None:
    config = Path(model_path) / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError):
        return None  # _load / _load_captioner report the broken file


CAPTIONING_MODEL_TYPE = "rnn_captioning"


def _load_captioner(model_path: str, device: str = "auto", trust_remote_code: bool = False):
    """``(model, image_processor, tokenizer)`` of a saved captioning folder (``save_captioning_folder``), eval mode.

    Like :func:`_load`: our model type loads with the installed code (no remote code), weights from safetensors
    only, and every failure is an ``OSError`` / ``ValueError`` naming the folder.
    """
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    import hf_seq2seq  # noqa: F401  (registers the captioning model and image processor)

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    local = Path(model_path)
    if local.exists() and not (local / "config.json").is_file():
        raise FileNotFoundError(f"{model_path} is not a saved model folder: it has no config.json")
    model_type = _folder_model_type(model_path)
    if local.exists() and model_type != CAPTIONING_MODEL_TYPE and not trust_remote_code:
        raise ValueError(
            f"{model_path} holds a {model_type!r} model, not an image-captioning model ({CAPTIONING_MODEL_TYPE}); "
            "use --text for translation models"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        processor = AutoImageProcessor.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        model = AutoModelForImageTextToText.from_pretrained(
            model_path, trust_remote_code=trust_remote_code, use_safetensors=True
        )
    except OSError:
        raise
    except Exception as err:
        raise ValueError(
            f"cannot load the captioning model in {model_path}: {type(err).__name__}: {err}"
        ) from None
    return model.to(device).eval(), processor, tokenizer


def _open_image(path: str):
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image file not found: {p}")
    try:
        with Image.open(p) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{p} is not a readable image: {err}") from None


def caption_attention(model, image_processor, tokenizer, image, **generate_kwargs):
    """Caption ``image`` and return ``(maps (T, G, G) numpy, words (T), caption)``: the attention over the image
    grid while each word was predicted.

    As for text (:func:`hf_seq2seq.plotting.attention_matrix`), the caption is generated first (any decoding
    strategy) and the maps are read from one teacher-forced pass over it, so map ``t`` is the attention of the step
    that produced word ``t``. Steps that produce special tokens (``</s>``, padding) are left out.
    """
    import torch

    device = next(model.parameters()).device
    pixel_values = image_processor(images=[image], return_tensors="pt")["pixel_values"].to(device)
    with torch.no_grad():
        sequence = model.generate(pixel_values=pixel_values, num_return_sequences=1, **generate_kwargs)
        if hasattr(sequence, "sequences"):
            sequence = sequence.sequences
        sequence = sequence[:1]
        out = model(
            pixel_values=pixel_values,
            decoder_input_ids=sequence[:, :-1],
            output_attentions=True,
            return_dict=True,
        )
    maps = model.attention_maps(out.cross_attentions)[0]  # (T, G, G)
    special = set(tokenizer.all_special_ids)
    targets = sequence[0, 1:].tolist()
    keep = [t for t, tok in enumerate(targets) if tok not in special]
    words = [
        tokenizer.decode([targets[t]]).strip() or tokenizer.convert_ids_to_tokens(targets[t]) for t in keep
    ]
    caption = tokenizer.decode(sequence[0], skip_special_tokens=True).strip()
    return maps[keep].float().cpu().numpy(), words, caption


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
    lengths = {i: len(tokenizer(lines[i].strip(), truncation=False)["input_ids"]) for i in todo}
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


def _generation_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--num_beams", type=int, default=None, help="beam size (default: generation_config.json)"
    )
    parser.add_argument(
        "--max_new_tokens", type=int, default=None, help="longest output (default: generation_config.json)"
    )
    parser.add_argument(
        "--batch_size", type=int, default=32, help="sentences per generate() call (default 32)"
    )
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)"
    )
    _trust_arg(parser)


def _trust_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="run the code files of a model folder/repo whose model_type is not one of ours (off by default: "
        "only enable it for code you trust)",
    )


def _generate_kwargs(args) -> dict:
    return {k: v for k, v in (("num_beams", args.num_beams), ("max_new_tokens", args.max_new_tokens)) if v}


def _read_lines(path: str) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix == ".gz":  # corpora such as Multi30k ship gzip-compressed
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return f.read().splitlines()
    return path.read_text(encoding="utf-8").splitlines()


def _fail(prog: str, err: Exception) -> int:
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 1


# ---------------------------------------------------------------------------------------------------- translate
def translate_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-seq2seq translate",
        description="Translate one sentence per line with a saved model (stdin → stdout, or files). Output line N "
        "is the translation of input line N; empty lines stay empty. With --n_best K, K lines (best first) per "
        "input line.",
    )
    parser.add_argument("--model", required=True, help="saved model folder (or Hub repo id)")
    parser.add_argument("--input", default=None, help="source file (default: stdin)")
    parser.add_argument("--output", default=None, help="output file (default: stdout)")
    parser.add_argument("--n_best", type=int, default=1, help="hypotheses per input line (default 1)")
    _generation_args(parser)
    args = parser.parse_args(argv)
    try:
        lines = _read_lines(args.input) if args.input else sys.stdin.read().splitlines()
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
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


# ---------------------------------------------------------------------------------------------------- evaluate
def score(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """Corpus BLEU and chrF (sacreBLEU defaults) with their signatures, keyed as the model card expects."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    bleu, chrf = BLEU(), CHRF()
    bleu_score = bleu.corpus_score(list(hypotheses), [list(references)])
    chrf_score = chrf.corpus_score(list(hypotheses), [list(references)])
    return {
        "bleu": bleu_score.score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf": chrf_score.score,
        "chrf_signature": str(chrf.get_signature()),
        "num_eval_sentences": len(references),
    }


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-seq2seq evaluate",
        description="Translate a source file and score it against a reference file with sacreBLEU (BLEU, chrF).",
    )
    parser.add_argument("--model", required=True, help="saved model folder (or Hub repo id)")
    parser.add_argument("--source", required=True, help="source sentences, one per line")
    parser.add_argument(
        "--reference", required=True, help="reference translations, line-aligned with --source"
    )
    parser.add_argument("--output", default=None, help="write the scores and signatures to this JSON file")
    parser.add_argument("--hypotheses", default=None, help="also write the translations to this file")
    _generation_args(parser)
    args = parser.parse_args(argv)
    try:
        sources, references = _read_lines(args.source), _read_lines(args.reference)
        if len(sources) != len(references):
            raise ValueError(
                f"--source {args.source} has {len(sources)} lines but --reference {args.reference} has "
                f"{len(references)}: the files must be line-aligned"
            )
        model, tokenizer = _load(args.model, args.device, args.trust_remote_code)
        hyps = [
            h[0]
            for h in translate_lines(
                model, tokenizer, sources, batch_size=args.batch_size, progress=True, **_generate_kwargs(args)
            )
        ]
        result = score(hyps, references)
    except (OSError, ValueError) as err:
        return _fail(parser.prog, err)
    result["num_beams"] = args.num_beams or model.generation_config.num_beams
    print(f"BLEU = {result['bleu']:.2f}  ({result['bleu_signature']})")
    print(f"chrF = {result['chrf']:.2f}  ({result['chrf_signature']})")
    if args.hypotheses:
        Path(args.hypotheses).write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


# ---------------------------------------------------------------------------------------------------- plot-attention
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
        "--num_beams", type=int, default=None, help="beam size (default: generation_config.json)"
    )
    parser.add_argument("--max_new_tokens", type=int, default=None, help="longest output")
    parser.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda if available)")
    _trust_arg(parser)
    args = parser.parse_args(argv)
    if args.image is not None:
        return _plot_image_attention(parser.prog, args)
    from .plotting import attention_matrix, plot_attention

    try:
        if _folder_model_type(args.model) == CAPTIONING_MODEL_TYPE:
            raise ValueError(f"{args.model} is an image-captioning model: give --image, not --text")
        model, tokenizer = _load(args.model, args.device, args.trust_remote_code)
        matrix, src, tgt = attention_matrix(
            model, tokenizer, args.text, layer=args.layer, head=args.head, **_generate_kwargs(args)
        )
        heads = "" if model.config.model_type == "rnn_seq2seq" else f", layer {args.layer}, head {args.head}"
        title = f"{tokenizer.convert_tokens_to_string(tgt)}{heads}"
        path = plot_attention(matrix, src, tgt, args.output, title=title)
    except (OSError, ValueError) as err:
        return _fail(parser.prog, err)
    print(path)
    return 0


def _plot_image_attention(prog: str, args) -> int:
    from .captioning_data import plot_attention_over_image

    try:
        image = _open_image(args.image)
        model, processor, tokenizer = _load_captioner(args.model, args.device, args.trust_remote_code)
        maps, words, caption = caption_attention(model, processor, tokenizer, image, **_generate_kwargs(args))
        if not words:
            raise ValueError(f"the model generated an empty caption for {args.image}: nothing to plot")
        path = plot_attention_over_image(image, maps, words, args.output)
    except (OSError, ValueError) as err:
        return _fail(prog, err)
    print(caption)
    print(path)
    return 0


# ---------------------------------------------------------------------------------------------------- caption
def caption_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-seq2seq caption",
        description="Caption image files with a saved image-captioning model: one line per image, "
        "'<path><TAB><caption>' (or only the caption with --no_path).",
    )
    parser.add_argument("--model", required=True, help="saved captioning model folder (or Hub repo id)")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--no_path", action="store_true", help="print only the captions")
    _generation_args(parser)
    args = parser.parse_args(argv)
    import torch

    try:
        if args.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
        images = [_open_image(p) for p in args.images]  # every file checked before the model is loaded
        model, processor, tokenizer = _load_captioner(args.model, args.device, args.trust_remote_code)
        device = next(model.parameters()).device
        captions = []
        for start in range(0, len(images), args.batch_size):
            chunk = images[start : start + args.batch_size]
            pixel_values = processor(images=chunk, return_tensors="pt")["pixel_values"].to(device)
            with torch.no_grad():
                out = model.generate(pixel_values=pixel_values, **_generate_kwargs(args))
            captions += [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
    except (OSError, ValueError) as err:
        return _fail(parser.prog, err)
    for path, caption in zip(args.images, captions):
        print(caption if args.no_path else f"{path}\t{caption}")
    return 0


# ---------------------------------------------------------------------------------------------------- push
def push_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-seq2seq push",
        description="Upload a saved model folder (weights, config, code, tokenizer, card, images) to the Hugging "
        "Face Hub in one commit. The endpoint is HF_ENDPOINT (default https://huggingface.co).",
    )
    parser.add_argument("--model", required=True, help="saved model folder (written by training or the demo)")
    parser.add_argument("--repo_id", required=True, help="USER/NAME or ORG/NAME")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument(
        "--revision", default=None, help="branch to push to (created if missing; default main)"
    )
    parser.add_argument("--commit_message", default=None, help="commit message")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the cached login)")
    args = parser.parse_args(argv)
    from .hub import push_model_folder

    try:
        info = push_model_folder(
            args.model,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
            token=args.token,
        )
    except (OSError, ValueError) as err:
        return _fail(parser.prog, err)
    with contextlib.suppress(AttributeError):
        print(info.commit_url)
    return 0
