"""The one registry of model families: what the training options, the CLI, checkpoint averaging and the Hub code
need to know about each architecture, in one place instead of class-name checks and per-module constants.

A family is named by its ``--model_type`` value ("rnn", "transformer", "captioning"); ``model_type`` is the
transformers ``config.model_type`` of the saved folder. Config and model classes are imported on first use, so this
module stays cheap to import (``hf-seq2seq --help`` must not load torch).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFamily:
    """One architecture. ``input`` is "text" or "image"; ``auto_class`` is the transformers Auto class that loads
    it; ``scheduled_sampling`` says whether training may feed the model its own predictions (RNN decoders);
    ``lora_target_modules`` is what PEFT's LoRA adapts when its config names no modules."""

    name: str
    model_type: str
    config_module: str
    config_class_name: str
    model_module: str
    model_class_name: str
    auto_class: str
    input: str = "text"
    scheduled_sampling: bool = False
    card_template: str = ""
    card_task: str = "translation"  # a key of hub.CARD_TASKS
    # PEFT's default LoRA targets (LoraConfig without target_modules; registered on import, hf_seq2seq.__init__):
    # module names, or "all-linear" (every nn.Linear but the output layer)
    lora_target_modules: tuple[str, ...] | str = "all-linear"

    @property
    def config_class(self):
        return getattr(importlib.import_module(f"hf_seq2seq.{self.config_module}"), self.config_class_name)

    @property
    def model_class(self):
        return getattr(importlib.import_module(f"hf_seq2seq.{self.model_module}"), self.model_class_name)


FAMILIES: dict[str, ModelFamily] = {
    f.name: f
    for f in (
        ModelFamily(
            name="rnn",
            model_type="rnn_seq2seq",
            config_module="models.configuration_rnn_seq2seq",
            config_class_name="RNNSeq2SeqConfig",
            model_module="models.modeling_rnn_seq2seq",
            model_class_name="RNNSeq2SeqForConditionalGeneration",
            auto_class="AutoModelForSeq2SeqLM",
            scheduled_sampling=True,
            card_template="rnn_seq2seq.md",
        ),
        ModelFamily(
            name="transformer",
            model_type="transformer_seq2seq",
            config_module="models.configuration_transformer_seq2seq",
            config_class_name="TransformerSeq2SeqConfig",
            model_module="models.modeling_transformer_seq2seq",
            model_class_name="TransformerSeq2SeqForConditionalGeneration",
            auto_class="AutoModelForSeq2SeqLM",
            card_template="transformer_seq2seq.md",
            # every attention projection: self-attention's Q, K, V are one fused qkv_proj, cross-attention's K, V
            # one kv_proj, so the usual ["q_proj", "v_proj"] would reach only the cross-attention query
            lora_target_modules=("qkv_proj", "q_proj", "kv_proj"),
        ),
        ModelFamily(
            name="captioning",
            model_type="rnn_captioning",
            config_module="models.configuration_rnn_captioning",
            config_class_name="ImageCaptioningConfig",
            model_module="models.modeling_rnn_captioning",
            model_class_name="ImageCaptioningForConditionalGeneration",
            auto_class="AutoModelForImageTextToText",
            input="image",
            card_template="rnn_captioning.md",
            card_task="image-to-text",
        ),
    )
}
BY_MODEL_TYPE: dict[str, ModelFamily] = {f.model_type: f for f in FAMILIES.values()}
# config.model_type values of the text (translation) families
TEXT_MODEL_TYPES = tuple(f.model_type for f in FAMILIES.values() if f.input == "text")
CAPTIONING_MODEL_TYPE = FAMILIES["captioning"].model_type


def family(name: str) -> ModelFamily:
    """The family of a ``--model_type`` value (the caller has checked it is one of ``FAMILIES``)."""
    return FAMILIES[name]


def family_of(model_or_config) -> ModelFamily | None:
    """The family of a model or config by its ``model_type``; ``None`` for a model that is not ours."""
    config = getattr(model_or_config, "config", model_or_config)
    return BY_MODEL_TYPE.get(getattr(config, "model_type", None))
