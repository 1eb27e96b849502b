"""The ``"image-captioning"`` pipeline: image in, caption out, for the captioning model (or any encoder-decoder model
whose main input is ``pixel_values``).

transformers 5.x removed ``pipeline("image-to-text")``: the name is redirected to ``"image-text-to-text"``, whose
pipeline needs a chat-style multimodal ``processor`` and a text prompt (and ``AutoModelForImageTextToText``); it
does not fit a prompt-free captioner. This small pipeline does, and ships to the Hub as custom code beside the
model (``custom_pipelines`` in config.json): it imports only transformers and torch, never the package.

    >>> captioner = pipeline("image-captioning", model=model, tokenizer=tokenizer, image_processor=processor)
    >>> captioner("photo.jpg", num_beams=3)          # a path, a URL or a PIL image
    [{'generated_text': 'a dog runs on the grass'}]
    >>> captioner([img1, img2])                      # one dict per image
    [{'generated_text': ...}, {'generated_text': ...}]

Every generation option passes through to ``model.generate``.
"""

from __future__ import annotations

from transformers import AutoModelForImageTextToText, Pipeline
from transformers.image_utils import load_image
from transformers.pipelines import PIPELINE_REGISTRY

TASK = "image-captioning"


class ImageCaptioningPipeline(Pipeline):
    """``preprocess`` (load image, image processor) → ``_forward`` (``model.generate``) → ``postprocess`` (decode).

    Call options that are not generation options: ``skip_special_tokens`` (default True),
    ``return_tensors`` (return ``{"generated_token_ids": ...}``), ``timeout`` (for image URLs).
    """

    _pipeline_calls_generate = True
    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.tokenizer is None or self.image_processor is None:
            raise ValueError(
                "The image-captioning pipeline needs a tokenizer and an image processor: pass tokenizer=... and "
                "image_processor=..., or a model folder that holds both."
            )

    def _sanitize_parameters(
        self, skip_special_tokens=None, return_tensors=None, timeout=None, **generate_kwargs
    ):
        preprocess_params = {} if timeout is None else {"timeout": timeout}
        postprocess_params = {}
        if skip_special_tokens is not None:
            postprocess_params["skip_special_tokens"] = skip_special_tokens
        if return_tensors is not None:
            postprocess_params["return_tensors"] = return_tensors
        return preprocess_params, generate_kwargs, postprocess_params

    def __call__(self, images, *args, **kwargs):
        """One image → ``[{"generated_text": ...}]`` (``k`` dicts with ``num_return_sequences=k``); a list → one dict
        per image (one list of ``k`` dicts per image with ``k > 1``)."""
        if isinstance(images, tuple):
            images = list(images)
        result = super().__call__(images, *args, **kwargs)
        if isinstance(images, list) and all(isinstance(r, list) and len(r) == 1 for r in result):
            return [r[0] for r in result]
        return result

    def preprocess(self, image, timeout=None):
        image = load_image(image, timeout=timeout)
        pixel_values = self.image_processor(images=image, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixel_values.to(self.dtype) if self.dtype is not None else pixel_values}

    def _forward(self, model_inputs, **generate_kwargs):
        pixel_values = model_inputs["pixel_values"]
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        output = self.model.generate(pixel_values=pixel_values, **generate_kwargs)
        sequences = output.sequences if hasattr(output, "sequences") else output
        in_b, out_b = pixel_values.shape[0], sequences.shape[0]
        return {"output_ids": sequences.reshape(in_b, out_b // in_b, *sequences.shape[1:])}

    def postprocess(self, model_outputs, skip_special_tokens=True, return_tensors=False):
        records = []
        for ids in model_outputs["output_ids"][0]:
            if return_tensors:
                records.append({"generated_token_ids": ids})
            else:
                text = self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
                records.append({"generated_text": text.strip()})
        return records


def register_pipeline() -> None:
    """Register ``"image-captioning"`` with transformers' pipeline registry (idempotent)."""
    current = PIPELINE_REGISTRY.supported_tasks.get(TASK)
    if current is not None and current.get("impl") is ImageCaptioningPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=ImageCaptioningPipeline, pt_model=AutoModelForImageTextToText, type="image"
    )
