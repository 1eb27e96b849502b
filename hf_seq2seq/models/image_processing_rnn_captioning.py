"""Image processor of the captioning model: RGB -> resize to the model's square size -> rescale to [0, 1] ->
normalise with the ImageNet mean/std -> ``pixel_values`` (B, C, P, P) float32.

transformers 5.x splits image processors by backend (``TorchvisionBackend`` / ``PilBackend``, both
``BaseImageProcessor`` subclasses). This one is the PIL/NumPy backend, so it runs where torchvision is not
installed; the backend's ``_preprocess`` does the standard resize/rescale/normalise, and the class attributes are
its defaults (overridable per instance and per call, saved in ``preprocessor_config.json``).

Shipped to the Hub as custom code beside the model (``AutoImageProcessor.from_pretrained(folder,
trust_remote_code=True)``): imports only transformers.
"""

from __future__ import annotations

from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

__all__ = ["ImageCaptioningImageProcessor"]


class ImageCaptioningImageProcessor(PilBackend):
    """Resize (bilinear) to ``size`` (default 224×224, match ``ImageCaptioningConfig.image_size``), rescale by
    1/255, normalise with the ImageNet mean/std, convert to RGB. Build one for a config with
    :meth:`for_image_size`."""

    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"height": 224, "width": 224}
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True

    @classmethod
    def for_image_size(cls, image_size: int, **kwargs) -> ImageCaptioningImageProcessor:
        """The processor for a model with ``config.image_size == image_size``."""
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(
                f"ImageCaptioningImageProcessor: `image_size` must be an integer >= 1, got {image_size!r}"
            )
        return cls(size={"height": image_size, "width": image_size}, **kwargs)


# Every `save_pretrained` (Seq2SeqTrainer.save_model included) writes `auto_map` into config.json and copies
# this file and its flat siblings, so the folder loads with `trust_remote_code=True` where this package is absent.
ImageCaptioningImageProcessor.register_for_auto_class("AutoImageProcessor")
