"""The engines and the one translate loop.

An :class:`Engine` holds a tokenizer, the generation defaults of its folder and a search over source token ids:
``torch`` and ``onnxruntime`` are a :class:`GenerateEngine` (transformers' ``generate()`` on our model, or on an ONNX
export through :class:`~hf_seq2seq.export.onnx_model.ORTModelForSeq2SeqLM`), ``ctranslate2`` is a
:class:`CTranslate2Engine`. Every engine receives the same source ids and returns token ids, so outputs compare
token for token.

:meth:`Engine.translate` is the only place where lines become translations, for every command and every later
consumer (a server holds one engine and calls it per request): input order kept, empty lines answered without
reaching the model, batches of similar length (longest first, so an out-of-memory shows at once), over-long lines
truncated with one warning, ``n_best`` hypotheses best first, and optionally their scores.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from .alignment import (
    check_alignment_choice,
    default_alignment_layer,
    hypothesis_offsets,
    soft_alignment,
    spelled_offsets,
)

DEFAULT_MAX_SOURCE_LENGTH = 512  # when neither the model nor the tokenizer states one
DEFAULT_MAX_NEW_TOKENS = 128  # CTranslate2 needs a number when the folder's generation config gives none


@dataclass(frozen=True)
class Translation:
    """The translation of one input line.

    hypotheses: ``n_best`` strings, best first (all ``""`` for an empty line).
    scores: with ``return_scores=True``, one float per hypothesis: its log-probability as the engine's search
        ranks it (``generate()``: the sum of the token log-probabilities divided by ``length ** length_penalty``,
        CTranslate2 likewise); ``0.0`` for an empty line. ``None`` otherwise.
    token_ids: the hypotheses as token ids without special tokens (``[]`` for an empty line); not compared, so two
        translations with the same strings and scores are equal.
    alignments: with ``return_alignment=True``, one word-level soft alignment per hypothesis: a float array
        (hypothesis words, source words) over the whitespace words of the hypothesis and of the stripped source
        line (:mod:`hf_seq2seq.inference.alignment`; ``hard_alignment`` / ``format_pharaoh`` make links of it).
        ``None`` otherwise; not compared.
    """

    hypotheses: list[str]
    scores: list[float] | None = None
    token_ids: list[list[int]] | None = field(default=None, compare=False, repr=False)
    alignments: list[np.ndarray] | None = field(default=None, compare=False, repr=False)

    @property
    def text(self) -> str:
        """The best hypothesis."""
        return self.hypotheses[0]


def max_source_length(max_positions, tokenizer) -> int:
    """The longest source the model reads: the smaller of its position limit and the tokenizer's
    ``model_max_length`` (transformers' "no limit" sentinel, 1e30, counts as none)."""
    limits = [max_positions, getattr(tokenizer, "model_max_length", None)]
    limits = [int(x) for x in limits if isinstance(x, int) and 0 < x < 10**9]
    return min(limits) if limits else DEFAULT_MAX_SOURCE_LENGTH


def max_target_length(model_type: str | None, max_positions) -> int | None:
    """The most tokens a model can generate: a Transformer decoder has ``max_position_embeddings`` positions (the
    start token and the first ``N - 1`` generated tokens fill them when the ``N``-th is predicted); an RNN decoder has
    no such limit (its ``max_position_embeddings`` only truncates sources): ``None``."""
    if model_type == "transformer_seq2seq" and isinstance(max_positions, int) and max_positions > 0:
        return max_positions
    return None


class Engine:
    """Base: a tokenizer, generation defaults, :meth:`generate_ids` and :meth:`translate`."""

    # the decoder's positions (see `max_target_length`): longer requests are capped to it, with one warning
    max_target_length: int | None = None

    def __init__(self, path: Path | None, tokenizer, max_source_length: int, generation_config):
        self.path, self.tokenizer, self.max_source_length = path, tokenizer, max_source_length
        gen = generation_config
        self.default_beams = (gen.num_beams if gen is not None else None) or 1
        # None: generate() takes the folder's own limit (max_new_tokens or max_length)
        self.default_max_new_tokens = gen.max_new_tokens if gen is not None else None
        self._warned_cap = False

    def _cap_new_tokens(self, max_new_tokens: int | None) -> int | None:
        """``max_new_tokens`` within the decoder's positions; the first time a request goes beyond them, one line
        on stderr says so (a run is never failed for asking too much)."""
        limit = self.max_target_length
        if limit is None or max_new_tokens is None or max_new_tokens <= limit:
            return max_new_tokens
        if not self._warned_cap:
            self._warned_cap = True
            print(
                f"warning: max_new_tokens={max_new_tokens} is more than the model's {limit} decoder positions "
                f"(max_position_embeddings); generating at most {limit} tokens",
                file=sys.stderr,
            )
        return limit

    # ------------------------------------------------------------------------------------------------ search
    def search(
        self,
        sources: list[list[int]],
        num_beams: int,
        n_best: int,
        max_new_tokens: int | None,
        return_scores: bool,
    ) -> tuple[list[list[list[int]]], list[list[float]] | None]:
        """Source ids (each ending in ``</s>``) → ``n_best`` hypotheses per source as ids without special tokens,
        and (``return_scores``) their scores."""
        raise NotImplementedError

    def generate_ids(
        self, sources: list[list[int]], num_beams: int, n_best: int, max_new_tokens: int | None
    ) -> list[list[list[int]]]:
        """:meth:`search` without scores (what the serving benchmark times)."""
        return self.search(sources, num_beams, n_best, max_new_tokens, False)[0]

    def _strip(self, ids: list[int]) -> list[int]:
        special = set(self.tokenizer.all_special_ids)
        return [i for i in ids if i not in special]

    # --------------------------------------------------------------------------------------------- translate
    def translate(
        self,
        lines: Sequence[str],
        *,
        num_beams: int | None = None,
        n_best: int = 1,
        max_new_tokens: int | None = None,
        batch_size: int = 32,
        return_scores: bool = False,
        progress: bool = False,
        return_alignment: bool = False,
        alignment_layer: int | None = None,
        alignment_heads: Sequence[int] | None = None,
    ) -> list[Translation]:
        """Translate ``lines``: one :class:`Translation` per line, in input order.

        Lines are stripped, tokenized, sorted by length (longest first) and batched ``batch_size`` at a time; empty
        (whitespace-only) lines get ``n_best`` empty strings and never reach the model; lines longer than
        :attr:`max_source_length` tokens are truncated (their final ``</s>`` kept), with one warning on stderr
        naming them. ``num_beams`` / ``max_new_tokens`` default to the folder's generation config; ``num_beams`` is
        raised to ``n_best`` (a beam search returns at most ``num_beams`` hypotheses). ``progress`` draws a bar on
        stderr. ``return_alignment`` fills :attr:`Translation.alignments` from the cross-attention of decoder layer
        ``alignment_layer``, averaged over ``alignment_heads`` (:func:`~.alignment.select_attention`'s defaults).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if n_best < 1:
            raise ValueError(f"n_best must be >= 1, got {n_best}")
        if return_alignment:  # refused before any work: a model without attention, a layer it does not have
            self.check_alignment(alignment_layer, alignment_heads)
        empty = Translation(
            [""] * n_best,
            [0.0] * n_best if return_scores else None,
            [[]] * n_best,
            [np.zeros((0, 0))] * n_best if return_alignment else None,
        )
        results: list[Translation] = [empty] * len(lines)
        ids = self._source_ids(lines)
        order = sorted(ids, key=lambda i: len(ids[i]), reverse=True)
        from tqdm.auto import tqdm

        with tqdm(total=len(order), unit="line", disable=None if progress else True, file=sys.stderr) as bar:
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                done = self.translate_ids(
                    [ids[i] for i in batch],
                    num_beams=num_beams,
                    n_best=n_best,
                    max_new_tokens=max_new_tokens,
                    return_scores=return_scores,
                    return_alignment=return_alignment,
                    alignment_layer=alignment_layer,
                    alignment_heads=alignment_heads,
                    texts=[lines[i].strip() for i in batch],
                )
                for k, i in enumerate(batch):
                    results[i] = done[k]
                bar.update(len(batch))
        return results

    def encode(self, lines: Sequence[str]) -> list[list[int] | None]:
        """The source ids :meth:`translate` gives the model for each line (stripped, ``</s>`` last, truncated to
        :attr:`max_source_length` with one warning); ``None`` for an empty line. For callers that group lines into
        batches themselves (the server) and then call :meth:`translate_ids`."""
        ids = self._source_ids(lines)
        return [ids.get(i) for i in range(len(lines))]

    def translate_ids(
        self,
        sources: Sequence[list[int]],
        *,
        num_beams: int | None = None,
        n_best: int = 1,
        max_new_tokens: int | None = None,
        return_scores: bool = False,
        return_alignment: bool = False,
        alignment_layer: int | None = None,
        alignment_heads: Sequence[int] | None = None,
        texts: Sequence[str] | None = None,
    ) -> list[Translation]:
        """One search over a batch the caller grouped: non-empty source ids (from :meth:`encode`) → one
        :class:`Translation` per source, in order. Defaults as :meth:`translate`; what :meth:`translate` does per
        batch, so a line translates to the same tokens through either. ``texts``: the stripped source lines (their
        whitespace words are what alignments index; default: the decoded source ids)."""
        if n_best < 1:
            raise ValueError(f"n_best must be >= 1, got {n_best}")
        if not sources:
            return []
        num_beams = max(num_beams or self.default_beams, n_best)
        max_new_tokens = self._cap_new_tokens(max_new_tokens or self.default_max_new_tokens)
        sources = [list(s) for s in sources]
        if return_alignment:
            self.check_alignment(alignment_layer, alignment_heads)
            hyps, scores, attention = self.search_attention(
                sources, num_beams, n_best, max_new_tokens, return_scores, alignment_layer, alignment_heads
            )
        else:
            hyps, scores = self.search(sources, num_beams, n_best, max_new_tokens, return_scores)
        strings = [
            [self.tokenizer.decode(h, skip_special_tokens=True).strip() for h in hyps[k]]
            for k in range(len(sources))
        ]
        alignments = None
        if return_alignment:
            if texts is None:
                texts = [self.tokenizer.decode(s, skip_special_tokens=True).strip() for s in sources]
            alignments = self.word_alignments(
                [s for s, h in zip(sources, hyps, strict=True) for _ in h],
                [t for t, h in zip(texts, hyps, strict=True) for _ in h],
                [h for k in range(len(sources)) for h in hyps[k]],
                [h for k in range(len(sources)) for h in strings[k]],
                attention=[a for k in range(len(sources)) for a in attention[k]],
            )
        return [
            Translation(
                strings[k],
                None if scores is None else [float(x) for x in scores[k]],
                hyps[k],
                None if alignments is None else alignments[k * n_best : (k + 1) * n_best],
            )
            for k in range(len(sources))
        ]

    # --------------------------------------------------------------------------------------------- alignment
    def check_alignment(self, layer: int | None, heads: Sequence[int] | None) -> None:
        """One ``ValueError`` line when this engine or model cannot give alignments, or has no such layer or heads."""
        raise ValueError(f"{type(self).__name__} gives no attention, so no alignments")

    def pair_attention(
        self,
        sources: Sequence[list[int]],
        targets: Sequence[list[int]],
        layer: int | None = None,
        heads: Sequence[int] | None = None,
    ) -> list[np.ndarray]:
        """Teacher-forced cross-attention of each (source ids, target ids without special tokens) pair, as one
        ``(len(target) + 1, len(source))`` array per pair (the last row: predicting ``</s>``), read from decoder
        layer ``layer`` and averaged over ``heads`` (defaults: :func:`~.alignment.select_attention`'s)."""
        raise NotImplementedError

    def search_attention(
        self,
        sources: list[list[int]],
        num_beams: int,
        n_best: int,
        max_new_tokens: int | None,
        return_scores: bool,
        layer: int | None = None,
        heads: Sequence[int] | None = None,
    ) -> tuple[list[list[list[int]]], list[list[float]] | None, list[list[np.ndarray]]]:
        """:meth:`search`, plus each hypothesis' cross-attention as :meth:`pair_attention` gives it (here: read by
        :meth:`pair_attention` after the search; an engine that can keep it from the search itself does)."""
        hyps, scores = self.search(sources, num_beams, n_best, max_new_tokens, return_scores)
        flat = self.pair_attention(
            [s for s, h in zip(sources, hyps, strict=True) for _ in h],
            [h for hs in hyps for h in hs],
            layer,
            heads,
        )
        return hyps, scores, [flat[k * n_best : (k + 1) * n_best] for k in range(len(sources))]

    def word_alignments(
        self,
        sources: Sequence[list[int]],
        source_texts: Sequence[str],
        targets: Sequence[list[int]],
        target_texts: Sequence[str],
        layer: int | None = None,
        heads: Sequence[int] | None = None,
        attention: Sequence[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """The word-level soft alignment ``(target words, source words)`` of each pair: :meth:`pair_attention`
        merged into the whitespace words of ``source_texts`` / ``target_texts`` (whose tokens are ``sources`` /
        ``targets``) by the tokenizer's offsets."""
        if attention is None:
            attention = self.pair_attention(sources, targets, layer, heads)
        tok = self.tokenizer
        # the offsets the ids spell (no second tokenization); the tokenizer re-encodes only the rest
        src_offsets = [
            spelled_offsets(self._pieces(s), t, allow_prefix=True)
            for s, t in zip(sources, source_texts, strict=True)
        ]
        tgt_offsets = [
            spelled_offsets(self._pieces(h), t) for h, t in zip(targets, target_texts, strict=True)
        ]
        redo = [k for k, o in enumerate(src_offsets) if o is None]
        if redo:
            enc = tok(
                [source_texts[k] for k in redo], truncation=False, verbose=False, return_offsets_mapping=True
            )
            for k, offsets in zip(redo, enc["offset_mapping"], strict=True):
                offsets = [tuple(o) for o in offsets]
                if len(offsets) > len(sources[k]):  # truncated as _source_ids does: the final </s> kept
                    offsets = offsets[: len(sources[k]) - 1] + offsets[-1:]
                src_offsets[k] = offsets
        redo = [k for k, o in enumerate(tgt_offsets) if o is None]
        if redo:
            hyp = tok(
                [target_texts[k] for k in redo],
                add_special_tokens=False,
                verbose=False,
                return_offsets_mapping=True,
            )
            for n, k in enumerate(redo):
                encoding = {"input_ids": hyp["input_ids"][n], "offset_mapping": hyp["offset_mapping"][n]}
                tgt_offsets[k] = hypothesis_offsets(tok, targets[k], target_texts[k], encoding)
        return [
            soft_alignment(att, src_offsets[k], tgt_offsets[k], source_texts[k], target_texts[k])
            for k, att in enumerate(attention)
        ]

    def _pieces(self, ids: Sequence[int]) -> list[str | None]:
        """Each id's token string, None for a special token (:func:`~.alignment.spelled_offsets`' input); the
        vocabulary's strings are looked up once per engine."""
        table = self.__dict__.get("_piece_table")
        if table is None or len(table) != len(self.tokenizer):
            special = set(self.tokenizer.all_special_ids)
            names = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
            table = self._piece_table = [None if i in special else n for i, n in enumerate(names)]
        return [table[i] if 0 <= i < len(table) else None for i in ids]

    def _source_ids(self, lines: Sequence[str]) -> dict[int, list[int]]:
        """``{line index: source ids}`` of the non-empty lines, truncated to :attr:`max_source_length` (warned)."""
        limit = self.max_source_length
        # verbose=False: the warning below names the lines; transformers' "indexing errors" one would come first
        ids = {
            i: self.tokenizer(line.strip(), truncation=False, verbose=False)["input_ids"]
            for i, line in enumerate(lines)
            if line.strip()
        }
        too_long = [i for i in ids if len(ids[i]) > limit]
        if too_long:
            print(
                f"warning: {len(too_long)} line(s) longer than {limit} tokens truncated "
                f"(lines {[i + 1 for i in too_long[:10]]})",
                file=sys.stderr,
            )
            for i in too_long:  # keep the final </s>, as the tokenizer's truncation does
                ids[i] = ids[i][: limit - 1] + ids[i][-1:]
        return ids


class GenerateEngine(Engine):
    """``torch`` and ``onnxruntime``: a model with ``generate()``; batches are right-padded with their mask."""

    def __init__(self, path, tokenizer, max_source_length, model, **generate_kwargs):
        super().__init__(path, tokenizer, max_source_length, model.generation_config)
        self.model = model
        self.device = getattr(model, "device", torch.device("cpu"))
        self.generate_kwargs = generate_kwargs  # anything else generate() takes, e.g. early_stopping=True

    @classmethod
    def from_model(cls, model, tokenizer, path: Path | None = None, **generate_kwargs) -> GenerateEngine:
        """An engine around a model already in memory (just trained, or loaded by :func:`load_model`)."""
        positions = getattr(model.config, "max_position_embeddings", None)
        engine = cls(
            path, tokenizer, max_source_length(positions, tokenizer), model.eval(), **generate_kwargs
        )
        engine.max_target_length = max_target_length(getattr(model.config, "model_type", None), positions)
        return engine

    @torch.inference_mode()
    def cross_attention(self, source_ids: list[int], target_ids: list[int]):
        """The cross-attention of one source and one of its hypotheses (ids as :meth:`encode` and
        :attr:`Translation.token_ids` give them): a float numpy array (layers, heads, T, S), T = the target tokens
        plus ``</s>``, row t the attention paid while predicting target token t, read from one teacher-forced
        forward pass (as ``plot-attention`` does; RNN models have one layer and one head). ``ValueError`` for an
        engine or a model without attention weights (onnxruntime, an RNN without attention)."""
        if hasattr(self.model, "decoder_session"):  # ORTModelForSeq2SeqLM: its graphs return no attention
            raise ValueError("cross-attention needs the torch engine (a saved model folder), not onnxruntime")
        start = self.model.config.decoder_start_token_id
        decoder_input_ids = torch.tensor([[start, *target_ids]], device=self.device)
        out = self.model(
            input_ids=torch.tensor([source_ids], device=self.device),
            attention_mask=torch.ones(1, len(source_ids), dtype=torch.long, device=self.device),
            decoder_input_ids=decoder_input_ids,
            output_attentions=True,
            return_dict=True,
        )
        if not getattr(out, "cross_attentions", None):
            raise ValueError(
                f"{type(self.model).__name__} returns no cross-attention (a model without attention)"
            )
        return torch.stack([layer[0] for layer in out.cross_attentions]).float().cpu().numpy()

    def alignment_choice(self, layer, heads):
        """``(layer, heads)`` with the model's own choice filling what the caller left out: a model trained with
        guided alignment names its supervised head in its config (``alignment_layer``, ``alignment_heads``)."""
        config = self.model.config
        layer = getattr(config, "alignment_layer", None) if layer is None else layer
        heads = getattr(config, "alignment_heads", None) if heads is None else heads
        return layer, heads

    def check_alignment(self, layer, heads):
        if hasattr(self.model, "decoder_session"):
            raise ValueError(
                "alignments need --engine torch or ctranslate2: the onnxruntime export's decoder graph returns no "
                "attention"
            )
        config = self.model.config
        if getattr(config, "attention", None) == "none":
            raise ValueError(
                f"the model {self.path or type(self.model).__name__} has attention='none' (an RNN without "
                "attention): it has no alignment to give; use a model with attention"
            )
        layer, heads = self.alignment_choice(layer, heads)
        if config.model_type == "transformer_seq2seq":
            check_alignment_choice(config.decoder_layers, config.num_attention_heads, layer, heads)
        else:  # the RNN's one attention
            check_alignment_choice(1, 1, layer, heads)

    @torch.inference_mode()
    def pair_attention(self, sources, targets, layer=None, heads=None):
        if not sources:
            return []
        layer, heads = self.alignment_choice(layer, heads)
        pad, start = self.tokenizer.pad_token_id, self.model.config.decoder_start_token_id
        ws, wt = max(map(len, sources)), 1 + max(map(len, targets))
        input_ids = torch.tensor([list(s) + [pad] * (ws - len(s)) for s in sources], device=self.device)
        mask = torch.tensor([[1] * len(s) + [0] * (ws - len(s)) for s in sources], device=self.device)
        # right-padded decoder inputs: causal attention, so a pair's rows never see the padding after them
        decoder_input_ids = torch.tensor(
            [[start, *t] + [pad] * (wt - 1 - len(t)) for t in targets], device=self.device
        )
        # the encoder without attention weights (its fast kernel): only the decoder's cross-attention is read
        encoder_outputs = self.model.get_encoder()(input_ids=input_ids, attention_mask=mask, return_dict=True)
        out = self.model(
            encoder_outputs=encoder_outputs,
            attention_mask=mask,
            decoder_input_ids=decoder_input_ids,
            output_attentions=True,
            return_dict=True,
        )
        if not getattr(out, "cross_attentions", None):
            raise ValueError(
                f"{type(self.model).__name__} returns no cross-attention (a model without attention)"
            )
        layers = out.cross_attentions  # per layer (B, heads, T, S)
        chosen = layers[default_alignment_layer(len(layers)) if layer is None else layer]
        chosen = chosen if heads is None else chosen[:, list(heads)]
        attention = chosen.float().mean(dim=1).cpu().numpy()  # (B, T, S): select_attention's choice
        return [attention[b, : len(targets[b]) + 1, : len(sources[b])] for b in range(len(sources))]

    @torch.inference_mode()
    def search(self, sources, num_beams, n_best, max_new_tokens, return_scores):
        out = self._generate(sources, num_beams, n_best, max_new_tokens, return_scores, False)
        sequences = out.sequences if return_scores else out
        rows = [self._strip(r) for r in sequences.tolist()]
        ids = [rows[k * n_best : (k + 1) * n_best] for k in range(len(sources))]
        if not return_scores:
            return ids, None
        flat = self._sequence_scores(out).tolist()
        return ids, [flat[k * n_best : (k + 1) * n_best] for k in range(len(sources))]

    @torch.inference_mode()
    def search_attention(
        self, sources, num_beams, n_best, max_new_tokens, return_scores, layer=None, heads=None
    ):
        """The search with the chosen cross-attention kept: each hypothesis' attention rows are those of the steps
        that produced its tokens (through ``beam_indices`` in a beam search), so no second pass is needed; the same
        matrix as :meth:`pair_attention` on the hypothesis (tested).

        A Transformer's weights are recorded from the chosen layer's cross-attention alone (:meth:`_recorded_search`):
        ``generate(output_attentions=True)`` would run every attention of the encoder and decoder with the eager
        kernel and keep all their weights. Other models (the RNN's one attention) use ``output_attentions``."""
        if hasattr(self.model, "decoder_session"):
            return super().search_attention(
                sources, num_beams, n_best, max_new_tokens, return_scores, layer, heads
            )
        layer, heads = self.alignment_choice(layer, heads)
        return_dict = return_scores or num_beams > 1
        recorded = self._recorded_search(
            sources, num_beams, n_best, max_new_tokens, return_dict, layer, heads
        )
        if recorded is not None:
            out, chosen = recorded
        else:
            out = self._generate(sources, num_beams, n_best, max_new_tokens, return_dict, True)
            steps = out.cross_attentions  # per generated token: per layer (B * beams, heads, 1, S)
            if not steps or not steps[0]:
                raise ValueError(
                    f"{type(self.model).__name__} returns no cross-attention (a model without attention)"
                )
            index = default_alignment_layer(len(steps[0])) if layer is None else layer
            chosen = torch.stack(
                [step[index][:, :, -1] for step in steps], dim=1
            )  # (B * beams, steps, heads, S)
            chosen = chosen if heads is None else chosen[:, :, list(heads)]
            chosen = chosen.float().mean(dim=2)
        chosen = chosen.cpu().numpy()  # (B * beams, steps, S)
        beams = getattr(out, "beam_indices", None)
        beams = beams.tolist() if beams is not None else None
        special, eos = set(self.tokenizer.all_special_ids), self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos])
        ids, attention = [], []
        for r, row in enumerate(out.sequences[:, 1:].tolist()):  # the start token produced nothing
            source = sources[r // n_best]
            kept = [t for t, token in enumerate(row) if token not in special]
            end = next((t for t, token in enumerate(row) if token in eos), None)
            rows = np.zeros((len(kept) + 1, len(source)))
            made = kept + ([end] if end is not None else [])  # the steps whose rows the hypothesis keeps
            if made:  # one gather: the row of each step, in the beam that step came from
                at = [r] * len(made) if beams is None else [beams[r][t] for t in made]
                rows[: len(made)] = chosen[at, made, : len(source)]
            ids.append([row[t] for t in kept])
            attention.append(rows)
        scores = None
        if return_scores:
            flat = self._sequence_scores(out).tolist()
            scores = [flat[k * n_best : (k + 1) * n_best] for k in range(len(sources))]
        group = range(len(sources))
        return (
            [ids[k * n_best : (k + 1) * n_best] for k in group],
            scores,
            [attention[k * n_best : (k + 1) * n_best] for k in group],
        )

    def _alignment_module(self, layer: int | None) -> torch.nn.Module | None:
        """The cross-attention module of decoder layer ``layer`` of a Transformer of ours (``transformer_seq2seq``:
        its ``forward`` takes ``output_attentions`` and returns ``(output, weights (B, heads, T, S))``); None for
        any other model."""
        if getattr(self.model.config, "model_type", None) != "transformer_seq2seq":
            return None
        layers = getattr(self.model.get_decoder(), "layers", None)
        if not layers:
            return None
        return getattr(
            layers[default_alignment_layer(len(layers)) if layer is None else layer], "cross_attn", None
        )

    def _recorded_search(self, sources, num_beams, n_best, max_new_tokens, return_dict, layer, heads):
        """``(generate output, attention (B * beams, steps, S))`` of a search that records only decoder layer
        ``layer``'s cross-attention, averaged over ``heads``, at each step; None where :meth:`_alignment_module`
        finds no module (the caller then uses ``output_attentions``).

        Two hooks on that one module, removed after the search: one asks it for its weights (its eager kernel),
        one keeps the last query's row of each call; every other attention keeps its fast kernel, and the model's
        code is unchanged (the same path for remote code). A search whose calls do not match its steps (a model
        wrapped differently) falls back to ``output_attentions``."""
        module = self._alignment_module(layer)
        if module is None:
            return None
        records: list[torch.Tensor] = []
        head_index = None if heads is None else list(heads)

        def ask_for_weights(mod, args, kwargs):
            return args, {**kwargs, "output_attentions": True}

        def keep_weights(mod, args, output):
            weights = output[1][:, :, -1]  # (rows, heads, S): the newest query's row
            weights = weights if head_index is None else weights[:, head_index]
            records.append(weights.float().mean(dim=1))

        hooks = [
            module.register_forward_pre_hook(ask_for_weights, with_kwargs=True),
            module.register_forward_hook(keep_weights),
        ]
        try:
            out = self._generate(sources, num_beams, n_best, max_new_tokens, return_dict, False)
        finally:
            for hook in hooks:
                hook.remove()
        if not return_dict:  # greedy without scores: generate returned the sequences alone
            out = SimpleNamespace(sequences=out)
        rows = {r.shape[0] for r in records}
        if len(records) < out.sequences.shape[1] - 1 or len(rows) != 1:
            return None
        return out, torch.stack(records, dim=1)

    def _generate(self, sources, num_beams, n_best, max_new_tokens, return_dict, output_attentions):
        """``generate()`` on a right-padded batch of source ids."""
        pad = self.tokenizer.pad_token_id
        width = max(map(len, sources))
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in sources], device=self.device)
        attention_mask = torch.tensor(
            [[1] * len(s) + [0] * (width - len(s)) for s in sources], device=self.device
        )
        kwargs = {"do_sample": False, **self.generate_kwargs}
        if max_new_tokens is not None:
            kwargs["max_new_tokens"] = max_new_tokens
        if output_attentions:
            kwargs["output_attentions"] = True
        return self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            num_beams=num_beams,
            num_return_sequences=n_best,
            output_scores=return_dict,
            return_dict_in_generate=return_dict or output_attentions,
            **kwargs,
        )

    def _sequence_scores(self, out) -> torch.Tensor:
        """One score per returned sequence: beam search's own ``sequences_scores``; for greedy search the same
        quantity, the summed token log-probabilities over ``length ** length_penalty`` (tokens up to ``</s>``)."""
        if getattr(out, "sequences_scores", None) is not None:
            return out.sequences_scores
        steps = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        generated = out.sequences[:, -steps.shape[1] :]
        eos = self.model.generation_config.eos_token_id
        eos = torch.tensor(eos if isinstance(eos, list) else [eos], device=generated.device)
        done_before = torch.isin(generated, eos).int().cumsum(dim=1) - torch.isin(generated, eos).int()
        keep = done_before == 0  # every token up to and including the first </s>
        length = keep.sum(dim=1).clamp(min=1).to(steps.dtype)
        penalty = self.generate_kwargs.get("length_penalty", self.model.generation_config.length_penalty)
        return (steps * keep).sum(dim=1) / length**penalty


class CTranslate2Engine(Engine):
    """``ctranslate2``: ``Translator.translate_batch`` on token strings (the export's vocabulary is the
    tokenizer's, so ids and strings map one to one)."""

    def __init__(self, path, tokenizer, max_source_length, generation_config, threads, compute_type):
        from ..export.common import require

        super().__init__(path, tokenizer, max_source_length, generation_config)
        ctranslate2 = require("ctranslate2", "the ctranslate2 engine")
        self.translator = ctranslate2.Translator(
            str(path),
            device="cpu",
            compute_type=compute_type or "default",
            intra_threads=threads or 0,
            inter_threads=1,
        )

    def check_alignment(self, layer, heads):
        if layer is not None or heads is not None:
            raise ValueError(
                "--alignment_layer / --alignment_heads apply to --engine torch: a CTranslate2 export returns the "
                "attention of the layer and heads fixed at export (the model's alignment head after guided "
                "training, else all heads of the last layer)"
            )

    def search(self, sources, num_beams, n_best, max_new_tokens, return_scores, return_attention=False):
        tok = self.tokenizer
        results = self.translator.translate_batch(
            [tok.convert_ids_to_tokens(s) for s in sources],
            beam_size=num_beams,
            num_hypotheses=n_best,
            # generate()'s max_new_tokens counts </s>; CTranslate2's length does not
            max_decoding_length=max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
            min_decoding_length=0,  # as generate(): </s> may come first (CTranslate2's default is 1)
            return_scores=return_scores,
            return_attention=return_attention,
        )
        raw = [[tok.convert_tokens_to_ids(h) for h in r.hypotheses] for r in results]
        ids = [[self._strip(h) for h in hs] for hs in raw]
        scores = [list(r.scores) for r in results] if return_scores else None
        if not return_attention:
            return ids, scores
        special = set(tok.all_special_ids)
        attention = []
        for hs, r, s in zip(raw, results, sources, strict=True):
            rows = []
            for h, a in zip(hs, r.attention, strict=True):  # one row per hypothesis token (none for </s>)
                steps = np.asarray(a, dtype=float).reshape(-1, len(s))
                kept = [t for t, i in enumerate(h) if i not in special]  # the tokens of the hypothesis' ids
                matrix = np.zeros((len(kept) + 1, len(s)))  # the </s> row, which no word reads, stays zero
                seen = [t for t in kept if t < len(steps)]
                matrix[: len(seen)] = steps[seen]
                rows.append(matrix)
            attention.append(rows)
        return ids, scores, attention

    def search_attention(
        self, sources, num_beams, n_best, max_new_tokens, return_scores, layer=None, heads=None
    ):
        """A greedy search with ``return_attention``: each hypothesis' attention from its own decoding steps, no
        second pass (CTranslate2 returns no row for ``</s>``: that row, which no word reads, is zero). A beam search
        forces its hypotheses afterwards (:meth:`pair_attention`): CTranslate2 4.x's beam search returns another
        first row than the forced pass (measured; the later rows agree), so its own attention is not used."""
        self.check_alignment(layer, heads)
        if num_beams > 1:
            return super().search_attention(
                sources, num_beams, n_best, max_new_tokens, return_scores, layer, heads
            )
        return self.search(sources, num_beams, n_best, max_new_tokens, return_scores, return_attention=True)

    def cross_attention(self, source_ids: list[int], target_ids: list[int]) -> np.ndarray:
        """:meth:`GenerateEngine.cross_attention`'s array for CTranslate2: (1, 1, T, S), the one attention an
        export returns (the layer and heads fixed at export, averaged), from the target forced as prefix."""
        return self.pair_attention([source_ids], [target_ids])[0][None, None]

    def pair_attention(self, sources, targets, layer=None, heads=None):
        """The attention of each target forced as CTranslate2's ``target_prefix`` (``return_attention``)."""
        self.check_alignment(layer, heads)
        if not sources:
            return []
        tok = self.tokenizer
        results = self.translator.translate_batch(
            [tok.convert_ids_to_tokens(s) for s in sources],
            target_prefix=[tok.convert_ids_to_tokens(t) for t in targets],
            beam_size=1,
            max_decoding_length=1 + max(map(len, targets)),
            min_decoding_length=0,
            return_attention=True,
        )
        return [
            _attention_rows(r.attention[0], len(t), len(s))
            for r, s, t in zip(results, sources, targets, strict=True)
        ]


def _attention_rows(attention, target_length: int, source_length: int) -> np.ndarray:
    """CTranslate2's attention of one hypothesis (a list of steps over the source) as ``(target_length + 1,
    source_length)`` rows (:meth:`Engine.pair_attention`'s shape), zeros for steps it did not return."""
    rows = np.zeros((target_length + 1, source_length))
    attention = np.asarray(attention, dtype=float).reshape(-1, source_length)[: target_length + 1]
    rows[: len(attention)] = attention
    return rows
