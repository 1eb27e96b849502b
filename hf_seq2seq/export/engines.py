"""Translate with one of three engines behind one call: ``torch`` (our ``generate()`` on a saved model folder),
``ctranslate2`` (a ``--format ctranslate2`` export) or ``onnxruntime`` (a ``--format onnx`` export, searched by
transformers' ``generate()`` through :class:`~hf_seq2seq.export.onnx_model.ORTModelForSeq2SeqLM`).

Every engine receives the same source token ids and returns token ids, so outputs are comparable token for token;
:func:`translate` adds what the ``translate`` command promises: input order kept, empty lines answered with empty
hypotheses without reaching the engine, batches of similar length (longest first), over-long lines truncated with
a warning.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from .common import ExportError, read_export_info, require

ENGINES = ("torch", "ctranslate2", "onnxruntime")


class Engine:
    """Base: a tokenizer, generation defaults and :meth:`generate_ids`."""

    def __init__(self, path: Path, tokenizer, max_source_length: int, generation_config):
        self.path, self.tokenizer, self.max_source_length = path, tokenizer, max_source_length
        gen = generation_config
        self.default_beams = (gen.num_beams if gen is not None else None) or 1
        self.default_max_new_tokens = (gen.max_new_tokens if gen is not None else None) or 128

    def generate_ids(
        self, sources: list[list[int]], num_beams: int, n_best: int, max_new_tokens: int
    ) -> list[list[list[int]]]:
        """Source ids (each ending in ``</s>``) → ``n_best`` hypotheses per source, ids without special tokens."""
        raise NotImplementedError

    def _strip(self, ids: list[int]) -> list[int]:
        special = set(self.tokenizer.all_special_ids)
        return [i for i in ids if i not in special]


class GenerateEngine(Engine):
    """``torch`` and ``onnxruntime``: a model with ``generate()``; batches are right-padded with their mask."""

    def __init__(self, path, tokenizer, max_source_length, model, **generate_kwargs):
        super().__init__(path, tokenizer, max_source_length, model.generation_config)
        self.model = model
        self.generate_kwargs = generate_kwargs  # anything else generate() takes, e.g. early_stopping=True

    @torch.inference_mode()
    def generate_ids(self, sources, num_beams, n_best, max_new_tokens):
        pad = self.tokenizer.pad_token_id
        width = max(map(len, sources))
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in sources])
        attention_mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sources])
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            num_beams=num_beams,
            num_return_sequences=n_best,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            **self.generate_kwargs,
        )
        rows = [self._strip(r) for r in out.tolist()]
        return [rows[k * n_best : (k + 1) * n_best] for k in range(len(sources))]


class CTranslate2Engine(Engine):
    """``ctranslate2``: ``Translator.translate_batch`` on token strings (the export's vocabulary is the
    tokenizer's, so ids and strings map one to one)."""

    def __init__(self, path, tokenizer, max_source_length, generation_config, threads, compute_type):
        super().__init__(path, tokenizer, max_source_length, generation_config)
        ctranslate2 = require("ctranslate2", "the ctranslate2 engine")
        self.translator = ctranslate2.Translator(
            str(path),
            device="cpu",
            compute_type=compute_type or "default",
            intra_threads=threads or 0,
            inter_threads=1,
        )

    def generate_ids(self, sources, num_beams, n_best, max_new_tokens):
        tok = self.tokenizer
        results = self.translator.translate_batch(
            [tok.convert_ids_to_tokens(s) for s in sources],
            beam_size=num_beams,
            num_hypotheses=n_best,
            # generate()'s max_new_tokens counts </s>; CTranslate2's length does not
            max_decoding_length=max_new_tokens,
            min_decoding_length=0,  # as generate(): </s> may come first (CTranslate2's default is 1)
        )
        return [[self._strip(tok.convert_tokens_to_ids(h)) for h in r.hypotheses] for r in results]


def _generation_config(path: Path):
    from transformers import GenerationConfig

    return GenerationConfig.from_pretrained(path) if (path / "generation_config.json").is_file() else None


def load_engine(
    path: str | Path, engine: str = "torch", threads: int | None = None, compute_type: str | None = None
) -> Engine:
    """The engine for ``path``: a saved model folder for ``torch``, an export of the matching format otherwise.

    threads: intra-op threads (torch / onnxruntime / CTranslate2 ``intra_threads``); None keeps each default.
    compute_type: CTranslate2 only (``float32``, ``int8``, ...; default: the stored weight type).
    """
    from transformers import AutoTokenizer

    import hf_seq2seq  # noqa: F401  (registers our model types)

    if engine not in ENGINES:
        raise ExportError(f"--engine={engine!r} is invalid; valid choices: {', '.join(ENGINES)}")
    path = Path(path)
    if not path.is_dir():
        raise ExportError(f"model folder not found: {path}")
    if engine == "torch":
        from transformers import AutoModelForSeq2SeqLM

        from .common import EXPORT_INFO, read_model_config

        if (path / EXPORT_INFO).is_file():
            fmt = read_export_info(path).get("format")
            raise ExportError(
                f"{path} is an {fmt!r} export, not a model folder; use --engine "
                f"{'onnxruntime' if fmt == 'onnx' else 'ctranslate2'}"
            )
        read_model_config(path)
        if threads:
            torch.set_num_threads(threads)
        model = AutoModelForSeq2SeqLM.from_pretrained(path, use_safetensors=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        return GenerateEngine(path, tokenizer, _limit(model.config.max_position_embeddings, tokenizer), model)
    info = read_export_info(path)
    wanted = "onnx" if engine == "onnxruntime" else "ctranslate2"
    if info.get("format") != wanted:
        raise ExportError(
            f"{path} holds a {info.get('format')!r} export; --engine {engine} needs a --format {wanted} export"
        )
    tokenizer = AutoTokenizer.from_pretrained(path)
    limit = _limit(info.get("max_source_length"), tokenizer)
    if engine == "onnxruntime":
        from .onnx_model import ORTModelForSeq2SeqLM

        return GenerateEngine(path, tokenizer, limit, ORTModelForSeq2SeqLM.from_export(path, threads=threads))
    return CTranslate2Engine(path, tokenizer, limit, _generation_config(path), threads, compute_type)


def _limit(max_positions, tokenizer) -> int:
    limits = [max_positions, getattr(tokenizer, "model_max_length", None)]
    limits = [int(x) for x in limits if isinstance(x, int) and 0 < x < 10**9]
    return min(limits) if limits else 512


def translate(
    engine: Engine,
    lines: Sequence[str],
    num_beams: int | None = None,
    n_best: int = 1,
    batch_size: int = 32,
    max_new_tokens: int | None = None,
) -> list[list[str]]:
    """Translate ``lines`` on ``engine``; ``n_best`` hypotheses (best first) per line, in input order.

    Lines are tokenized, sorted by length (longest first) and batched; empty (whitespace-only) lines get
    ``n_best`` empty strings and never reach the engine; lines longer than the model's source limit are truncated
    (one warning on stderr). ``num_beams`` / ``max_new_tokens`` default to the folder's generation config."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n_best < 1:
        raise ValueError(f"n_best must be >= 1, got {n_best}")
    num_beams = max(num_beams or engine.default_beams, n_best)  # a beam returns at most num_beams hypotheses
    max_new_tokens = max_new_tokens or engine.default_max_new_tokens
    tok, limit = engine.tokenizer, engine.max_source_length
    results: list[list[str]] = [[""] * n_best for _ in lines]
    todo = [i for i, line in enumerate(lines) if line.strip()]
    ids = {i: tok(lines[i].strip())["input_ids"] for i in todo}
    too_long = [i + 1 for i in todo if len(ids[i]) > limit]
    if too_long:
        print(
            f"warning: {len(too_long)} line(s) longer than {limit} tokens truncated (lines {too_long[:10]})",
            file=sys.stderr,
        )
        for i in todo:  # keep the final </s>, as the tokenizer's truncation does
            if len(ids[i]) > limit:
                ids[i] = ids[i][: limit - 1] + ids[i][-1:]
    order = sorted(todo, key=lambda i: len(ids[i]), reverse=True)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        hyps = engine.generate_ids([ids[i] for i in batch], num_beams, n_best, max_new_tokens)
        for i, sentence in zip(batch, hyps):
            results[i] = [tok.decode(h, skip_special_tokens=True).strip() for h in sentence]
    return results


def translate_with_engine(
    path: str | Path,
    lines: Sequence[str],
    engine: str = "torch",
    threads: int | None = None,
    compute_type: str | None = None,
    **options,
) -> list[list[str]]:
    """One call: :func:`load_engine` then :func:`translate` (``num_beams``, ``n_best``, ``batch_size``,
    ``max_new_tokens``)."""
    return translate(load_engine(path, engine, threads, compute_type), lines, **options)


# ------------------------------------------------------------------------------------------ translate command
def add_engine_args(parser) -> None:
    """``hf-seq2seq translate``'s engine options (the command's other options keep their meaning)."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="torch",
        help="torch: --model is a saved model folder; ctranslate2 / onnxruntime: --model is a folder written by "
        "`hf-seq2seq export` (CPU; --device and --trust_remote_code apply to torch only)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="ctranslate2 / onnxruntime intra-op threads (default: theirs)",
    )
    parser.add_argument(
        "--compute_type",
        default=None,
        help="ctranslate2: float32, int8, int8_float32, ... (default: the type stored by the export)",
    )


def translate_args(args, lines: Sequence[str]) -> list[list[str]]:
    """The translate command on ``--engine ctranslate2 | onnxruntime``: parsed options → hypotheses per line."""
    engine = load_engine(args.model, args.engine, args.threads, args.compute_type)
    return translate(
        engine,
        lines,
        num_beams=args.num_beams,
        n_best=args.n_best,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
    )
