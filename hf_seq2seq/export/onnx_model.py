"""Run an ONNX export through transformers' ``generate()``: a thin ``PreTrainedModel`` whose forward runs the
onnxruntime sessions (as optimum's ORT models do), so greedy, beam, n-best and every logits processor are the
library's own search, not a copy.

``generate()`` sees an encoder-decoder model: ``get_encoder()`` runs ``encoder.onnx`` and returns its outputs as
one ``ModelOutput`` (batch-first tensors, so ``generate()`` repeats them per beam itself); ``forward`` runs one
``decoder.onnx`` step and returns the next state in an :class:`ORTDecoderCache`, which beam search reorders in place.
The names come from the export's ``export.json`` (see :mod:`hf_seq2seq.export.onnx_export`), so one class serves
both families.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, GenerationConfig, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput

from .common import ExportError, read_export_info, require


class ORTDecoderCache:
    """The decoder state between ``generate()`` steps: ``{state name: batch-first tensor}``."""

    is_compileable = False

    def __init__(self, tensors: dict[str, torch.Tensor], seen_tokens: int):
        self.tensors = tensors
        self.seen_tokens = seen_tokens

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: row ``i`` of every state tensor becomes row ``beam_idx[i]``."""
        self.tensors = {k: v.index_select(0, beam_idx) for k, v in self.tensors.items()}

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens


class _ORTEncoder(torch.nn.Module):
    """``get_encoder()``: runs ``encoder.onnx``; returns a ``BaseModelOutput`` carrying every encoder output."""

    main_input_name = "input_ids"

    def __init__(self, session, info: dict):
        super().__init__()
        self.session, self.info = session, info
        self.used = {i.name for i in session.get_inputs()}

    def forward(self, input_ids=None, attention_mask=None, **kwargs) -> BaseModelOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        feeds = {k: v.cpu().numpy() for k, v in feeds.items() if k in self.used}
        outputs = self.session.run(self.info["encoder_outputs"], feeds)
        result = BaseModelOutput(last_hidden_state=torch.from_numpy(outputs[0]))
        for name, value in zip(self.info["encoder_outputs"], outputs):
            result[name] = torch.from_numpy(value)
        return result


class ORTModelForSeq2SeqLM(PreTrainedModel, GenerationMixin):
    """An exported folder (``hf-seq2seq export --format onnx``) as a generating model on onnxruntime (CPU).

    >>> model = ORTModelForSeq2SeqLM.from_export("out/onnx")
    >>> model.generate(input_ids=..., attention_mask=..., num_beams=5)
    """

    main_input_name = "input_ids"
    _is_stateful = True  # the state lives in the cache object; no assisted/contrastive decoding
    _supports_sdpa = True  # the config's attention setting is the exported graph's business, not ours

    def __init__(self, config, export_dir: str | Path, threads: int | None = None):
        super().__init__(config)
        ort = require("onnxruntime", "the onnxruntime engine")
        self.info = read_export_info(export_dir)
        if self.info.get("format") != "onnx":
            raise ExportError(f"{export_dir} holds a {self.info.get('format')!r} export, not an ONNX one")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        export_dir = Path(export_dir)
        self.encoder_session = ort.InferenceSession(
            str(export_dir / "encoder.onnx"), options, providers=providers
        )
        self.decoder_session = ort.InferenceSession(
            str(export_dir / "decoder.onnx"), options, providers=providers
        )
        self.encoder = _ORTEncoder(self.encoder_session, self.info)
        self.decoder_used = {i.name for i in self.decoder_session.get_inputs()}
        self.post_init()

    @classmethod
    def from_export(cls, export_dir: str | Path, threads: int | None = None) -> ORTModelForSeq2SeqLM:
        import hf_seq2seq  # noqa: F401  (registers our config classes with AutoConfig)

        read_export_info(export_dir)  # a clear error for a folder that is not an export
        config = AutoConfig.from_pretrained(export_dir)
        model = cls(config, export_dir, threads=threads)
        if (Path(export_dir) / "generation_config.json").is_file():
            model.generation_config = GenerationConfig.from_pretrained(export_dir)
        return model.eval()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the forward creates its own ORTDecoderCache

    def get_encoder(self, modality: str | None = None) -> torch.nn.Module:
        return self.encoder

    def _initial_state(self, encoder_outputs, batch: int) -> dict[str, torch.Tensor]:
        state = {}
        for name, source in self.info["state"].items():
            if source == "empty":  # the Transformer's self-attention cache before the first step
                state[name] = torch.zeros(batch, *self.info["empty_shape"])
            else:
                state[name] = encoder_outputs[source]
        return state

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        encoder_outputs=None,
        cache: ORTDecoderCache | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        """One decoder step per new token of ``decoder_input_ids`` (B, T); logits (B, T, V)."""
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids, attention_mask)
        batch = decoder_input_ids.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones(encoder_outputs["last_hidden_state"].shape[:2], dtype=torch.long)
        if cache is None:
            state, seen, todo = self._initial_state(encoder_outputs, batch), 0, decoder_input_ids
        else:
            state, seen = cache.tensors, cache.seen_tokens
            todo = (
                decoder_input_ids[:, seen:]
                if decoder_input_ids.shape[1] > seen
                else decoder_input_ids[:, -1:]
            )
        fixed = {"attention_mask": attention_mask.cpu().numpy()}
        for name in self.info["decoder_inputs"]:
            if name in self.info["encoder_outputs"] and name in self.decoder_used:
                fixed[name] = encoder_outputs[name].numpy()
        names = list(state)
        logits = []
        for t in range(todo.shape[1]):
            feeds = dict(fixed, decoder_input_ids=todo[:, t : t + 1].cpu().numpy())
            feeds.update({k: v.numpy() for k, v in state.items()})
            feeds = {k: np.ascontiguousarray(v) for k, v in feeds.items() if k in self.decoder_used}
            outputs = self.decoder_session.run(self.info["decoder_outputs"], feeds)
            logits.append(torch.from_numpy(outputs[0]))
            state = {name: torch.from_numpy(value) for name, value in zip(names, outputs[1:])}
        return Seq2SeqLMOutput(
            logits=torch.stack(logits, dim=1),
            cache=ORTDecoderCache(state, seen + todo.shape[1]),
        )
