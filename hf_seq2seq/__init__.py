"""hf_seq2seq: the classic sequence-to-sequence family as first-class Hugging Face models.

Importing the package registers the text model types with ``AutoConfig`` / ``AutoModelForSeq2SeqLM`` and the
``"text2text"`` pipeline task, and the image-captioning model with ``AutoModelForImageTextToText`` /
``AutoImageProcessor`` and the ``"image-captioning"`` pipeline task, and, when PEFT is (or later gets) imported, the
model types' default LoRA targets (``LoraConfig()`` without ``target_modules``; ``families.ModelFamily``).

Before any of that, :func:`~hf_seq2seq.dependencies.check_dependencies` stops an environment whose torch or
transformers is outside the declared ranges, in one line (hence the imports below it: E402 is off for this file).
"""

import importlib.abc
import importlib.util
import sys

from .dependencies import IncompatibleDependencyError, check_dependencies

check_dependencies()

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageTextToText,
    AutoModelForSeq2SeqLM,
)

from .models.configuration_rnn_captioning import ImageCaptioningConfig
from .models.configuration_rnn_seq2seq import RNNSeq2SeqConfig
from .models.configuration_transformer_seq2seq import TransformerSeq2SeqConfig
from .models.image_processing_rnn_captioning import ImageCaptioningImageProcessor
from .models.modeling_rnn_captioning import ImageCaptioningForConditionalGeneration
from .models.modeling_rnn_seq2seq import RNNSeq2SeqForConditionalGeneration, RNNSeq2SeqModel
from .models.modeling_transformer_seq2seq import (
    TransformerSeq2SeqForConditionalGeneration,
    TransformerSeq2SeqModel,
)
from .models.pipeline_image_captioning import register_pipeline as register_captioning_pipeline
from .models.pipeline_text2text import Text2TextPipeline, register_pipeline
from .tokenization import train_tokenizer

__version__ = "0.1.0"

__all__ = [
    "ImageCaptioningConfig",
    "ImageCaptioningForConditionalGeneration",
    "ImageCaptioningImageProcessor",
    "RNNSeq2SeqConfig",
    "RNNSeq2SeqForConditionalGeneration",
    "RNNSeq2SeqModel",
    "TransformerSeq2SeqConfig",
    "TransformerSeq2SeqForConditionalGeneration",
    "TransformerSeq2SeqModel",
    "Text2TextPipeline",
    "train_tokenizer",
    "IncompatibleDependencyError",
    "export_ctranslate2",
    "export_onnx",
    "translate_with_engine",
]

# Deployment (hf_seq2seq.export) loads on first use: its engines are optional packages.
_EXPORT_NAMES = ("export_ctranslate2", "export_onnx", "translate_with_engine", "ORTModelForSeq2SeqLM")


def __getattr__(name: str):
    if name in _EXPORT_NAMES:
        from . import export

        return getattr(export, name)
    raise AttributeError(f"module 'hf_seq2seq' has no attribute {name!r}")


def _register() -> None:
    for config_cls, base_cls, model_cls in (
        (RNNSeq2SeqConfig, RNNSeq2SeqModel, RNNSeq2SeqForConditionalGeneration),
        (TransformerSeq2SeqConfig, TransformerSeq2SeqModel, TransformerSeq2SeqForConditionalGeneration),
    ):
        AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
        AutoModel.register(config_cls, base_cls, exist_ok=True)  # the headless model, as BartModel under Bart
        AutoModelForSeq2SeqLM.register(config_cls, model_cls, exist_ok=True)
    register_pipeline()
    # Image captioning (Xu et al. 2015): image-to-text was folded into image-text-to-text in transformers v5,
    # so the model is registered there and ships its own "image-captioning" pipeline.
    AutoConfig.register(ImageCaptioningConfig.model_type, ImageCaptioningConfig, exist_ok=True)
    AutoModelForImageTextToText.register(
        ImageCaptioningConfig, ImageCaptioningForConditionalGeneration, exist_ok=True
    )
    AutoImageProcessor.register(
        ImageCaptioningConfig, image_processor_classes={"pil": ImageCaptioningImageProcessor}, exist_ok=True
    )
    register_captioning_pipeline()


def _add_lora_targets(constants) -> None:
    """Our model types' default LoRA targets (``families.ModelFamily.lora_target_modules``) in PEFT's table, which
    ``LoraConfig()`` without ``target_modules`` reads (a model type missing there is refused by PEFT)."""
    from .families import FAMILIES

    table = constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    for family in FAMILIES.values():
        targets = family.lora_target_modules
        table.setdefault(family.model_type, targets if isinstance(targets, str) else list(targets))


class _AfterPeftConstants(importlib.abc.Loader):
    """Runs ``peft.utils.constants`` with its own loader, then adds our LoRA targets to it."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _add_lora_targets(module)


class _PeftImportHook(importlib.abc.MetaPathFinder):
    """Registers the LoRA targets when PEFT is imported after this package, without importing PEFT here (half a
    second) for the many users who never do; removes itself once used."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "peft.utils.constants":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)  # the ordinary finders
        if spec is not None and spec.loader is not None:
            spec.loader = _AfterPeftConstants(spec.loader)
        return spec


def _register_lora_targets() -> None:
    if "peft.utils.constants" in sys.modules:
        _add_lora_targets(sys.modules["peft.utils.constants"])
    elif not any(isinstance(finder, _PeftImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PeftImportHook())


_register()
_register_lora_targets()
