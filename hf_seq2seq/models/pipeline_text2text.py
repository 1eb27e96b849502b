"""The ``"text2text"`` pipeline: source text in, generated text out, for any ``AutoModelForSeq2SeqLM``.

transformers v5 removed ``pipeline("translation")`` and ``pipeline("text2text-generation")``; this is their
replacement for our models (and works with any encoder-decoder model that has a tokenizer).

This file ships to the Hub as custom code beside the model (``custom_pipelines`` in config.json), so
``pipeline(model=repo, trust_remote_code=True)`` builds it where hf_seq2seq is not installed. It therefore imports
only transformers and torch, never the package.

    >>> pipe = pipeline("text2text", model=model, tokenizer=tokenizer)
    >>> pipe("Ein Hund läuft.", num_beams=4)
    [{'generated_text': 'A dog runs.'}]
    >>> pipe(["a", "b"], num_return_sequences=2, num_beams=2)   # one list of candidates per input
    [[{'generated_text': ...}, {'generated_text': ...}], [...]]

Every generation option (``num_beams``, ``max_new_tokens``, ``do_sample``, ``top_k``, ``top_p``, ``temperature``,
``length_penalty``, ``num_return_sequences``, ``generation_config``, ...) passes through to ``model.generate``, at
construction or per call. Inputs longer than the model accepts are truncated with a warning.
"""

from __future__ import annotations

import warnings

from transformers import AutoModelForSeq2SeqLM, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

TASK = "text2text"


class Text2TextPipeline(Pipeline):
    """Seq2seq generation: ``preprocess`` (tokenize, truncate) → ``_forward`` (``model.generate``) → ``postprocess``
    (decode).

    Call options that are not generation options:
        truncation (bool, default True): cut inputs to ``max_source_length`` tokens (with a warning) instead of
            letting the model fail on them.
        max_source_length (int): the truncation length; default the smaller of the model's
            ``config.max_position_embeddings`` and the tokenizer's ``model_max_length``.
        skip_special_tokens (bool, default True), clean_up_tokenization_spaces (bool): decoding options.
        return_tensors (bool): return ``{"generated_token_ids": ...}`` instead of text.
    """

    _pipeline_calls_generate = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not getattr(self.model.config, "is_encoder_decoder", False):
            raise ValueError(
                f"The text2text pipeline needs an encoder-decoder model; {type(self.model).__name__} is not one "
                "(config.is_encoder_decoder is False)."
            )
        if self.tokenizer is None:
            raise ValueError(
                "The text2text pipeline needs a tokenizer: pass tokenizer=... or a folder that has one."
            )
        # Source batches are right-padded: the encoder masks padding, the decoder starts from its own start token.
        self.tokenizer.padding_side = "right"

    # ------------------------------------------------------------------ parameters
    def _sanitize_parameters(
        self,
        truncation=None,
        max_source_length=None,
        skip_special_tokens=None,
        clean_up_tokenization_spaces=None,
        return_tensors=None,
        **generate_kwargs,
    ):
        preprocess_params = {}
        if truncation is not None:
            preprocess_params["truncation"] = truncation
        if max_source_length is not None:
            preprocess_params["max_source_length"] = max_source_length

        postprocess_params = {}
        if skip_special_tokens is not None:
            postprocess_params["skip_special_tokens"] = skip_special_tokens
        if clean_up_tokenization_spaces is not None:
            postprocess_params["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        if return_tensors is not None:
            postprocess_params["return_tensors"] = return_tensors
        return preprocess_params, generate_kwargs, postprocess_params

    def max_source_length(self) -> int:
        """The number of source tokens (special tokens included) the model accepts."""
        limits = [getattr(self.model.config, "max_position_embeddings", None)]
        model_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and model_max < 10**9:  # "no limit" is stored as a huge int
            limits.append(model_max)
        limits = [int(x) for x in limits if isinstance(x, int) and x > 0]
        return min(limits) if limits else 512

    # ------------------------------------------------------------------ steps
    def __call__(self, inputs, *args, **kwargs):
        """Translate one string or a list of strings.

        One string → ``[{"generated_text": ...}]`` (``k`` dicts with ``num_return_sequences=k``, best first).
        A list of strings → one dict per input, in order; with ``num_return_sequences=k > 1`` one list of ``k`` dicts
        per input.
        """
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        result = super().__call__(inputs, *args, **kwargs)
        if isinstance(inputs, list) and all(isinstance(r, list) and len(r) == 1 for r in result):
            return [r[0] for r in result]
        return result

    def preprocess(self, text, truncation=True, max_source_length=None):
        if not isinstance(text, str):
            raise TypeError(f"text2text inputs must be strings, got {type(text).__name__}: {text!r}")
        limit = int(max_source_length or self.max_source_length())
        # verbose=False: our warning below says what happens; transformers' "indexing errors" one would precede it
        encoded = self.tokenizer(text, truncation=False, return_tensors="pt", verbose=False)
        length = encoded["input_ids"].shape[-1]
        if length > limit:
            if not truncation:
                raise ValueError(
                    f"The input has {length} tokens, more than the {limit} the model accepts; pass truncation=True "
                    "to cut it."
                )
            warnings.warn(
                f"Input of {length} tokens truncated to {limit} (the model's maximum source length): "
                f"{text[:60]!r}...",
                stacklevel=2,
            )
            encoded = self.tokenizer(text, truncation=True, max_length=limit, return_tensors="pt")
        if (
            encoded["input_ids"].shape[-1] == 0
        ):  # an empty string with a tokenizer that adds no special tokens
            eos = self.model.config.eos_token_id
            eos = eos[0] if isinstance(eos, (list, tuple)) else eos
            if eos is None:
                eos = self.tokenizer.pad_token_id
            encoded = {
                "input_ids": encoded["input_ids"].new_full((1, 1), int(eos)),
                "attention_mask": encoded["input_ids"].new_ones((1, 1)),
            }
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def _forward(self, model_inputs, **generate_kwargs):
        input_ids = model_inputs["input_ids"]
        in_b = input_ids.shape[0]
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        output = self.model.generate(
            input_ids=input_ids, attention_mask=model_inputs["attention_mask"], **generate_kwargs
        )
        sequences = output.sequences if hasattr(output, "sequences") else output
        out_b = sequences.shape[0]
        # (in_b * k, L) → (in_b, k, L): the pipeline's batch iterator splits on dim 0, one input at a time.
        return {"output_ids": sequences.reshape(in_b, out_b // in_b, *sequences.shape[1:])}

    def postprocess(
        self, model_outputs, skip_special_tokens=True, clean_up_tokenization_spaces=None, return_tensors=False
    ):
        records = []
        for ids in model_outputs["output_ids"][0]:
            if return_tensors:
                records.append({"generated_token_ids": ids})
            else:
                text = self.tokenizer.decode(
                    ids,
                    skip_special_tokens=skip_special_tokens,
                    clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                )
                records.append({"generated_text": text.strip()})
        return records


def register_pipeline() -> None:
    """Register ``"text2text"`` with transformers' pipeline registry (idempotent; called on ``import hf_seq2seq``)."""
    current = PIPELINE_REGISTRY.supported_tasks.get(TASK)
    if current is not None and current.get("impl") is Text2TextPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=Text2TextPipeline, pt_model=AutoModelForSeq2SeqLM, type="text"
    )
