"""What the toolkit readers share: their one-line error, and loading a mapped state dict into one of our models."""

from __future__ import annotations

from pathlib import Path

from .errors import ConversionError


def source_error(model_dir: Path, message: str) -> ConversionError:
    """The one line for a source directory that cannot be converted: the directory, then what is wrong."""
    return ConversionError(f"{model_dir}: {message}")


def copy_weights(model, values: dict, model_dir: Path, config_name: str):
    """Copy ``values`` (our parameter name → tensor, every parameter of ``model`` exactly once) into ``model``.
    A shape the source's ``config_name`` did not announce is the user's one line; a name that is missing or left
    over is a bug of the mapping."""
    import torch

    params = dict(model.named_parameters(remove_duplicate=False))
    if set(params) != set(values):
        raise ConversionError(f"internal: unmapped weights {sorted(set(params) ^ set(values))[:3]}")
    with torch.no_grad():
        for name, param in params.items():
            if values[name].shape != param.shape:
                raise source_error(
                    model_dir,
                    f"{name} would get shape {tuple(values[name].shape)}, {config_name} implies {tuple(param.shape)}",
                )
            param.copy_(values[name].to(param.dtype))
    return model
