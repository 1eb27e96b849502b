"""What both model families (RNN and Transformer encoder-decoders) share, kept in one place.

Shipped to the Hub beside the modeling files that import it (``save_pretrained`` copies a model file's relative
imports with it), so it imports only torch: the label shift, the output options, the sinusoidal position table and
the save that ships the code (``save_with_code``, which also carries the folder's pipeline files and decoding method). The model code is plain torch; the package's CPU inference kernels are applied to a loaded
model from outside (``hf_seq2seq.inference.cpu_kernels``).

Dimensions: B batch, T target length.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["output_options", "save_with_code", "shift_tokens_right", "sinusoidal_table"]


def save_with_code(
    model: Any,
    auto_class: str | None,
    save: Callable[[], Any],
    save_directory: str | os.PathLike | None = None,
) -> Any:
    """Run ``save`` (``PreTrainedModel.save_pretrained``) with ``type(model)`` registered for ``auto_class``, so
    that every save (``Seq2SeqTrainer.save_model`` included) writes ``auto_map`` and copies the model's file and its flat
    siblings: the folder then loads with ``trust_remote_code=True`` where this package is absent. The custom
    pipeline files that ``config.custom_pipelines`` names are copied into ``save_directory`` too
    (`copy_pipeline_files`): ``save_pretrained`` keeps that config entry but copies only the model's own imports.

    The registration is undone afterwards: a class registered for an Auto class counts as remote code, and
    ``generate()`` then inspects ``forward``'s signature at every decoding step (measurable on small models)."""
    cls = type(model)
    if auto_class is None or cls._auto_class is not None:  # loaded as remote code, or registered by the user
        result = save()
    else:
        cls.register_for_auto_class(auto_class)
        try:
            result = save()
        finally:
            cls._auto_class = None
    if save_directory is not None:
        copy_pipeline_files(model, save_directory)
        copy_custom_generate(model, save_directory)
    return result


def copy_custom_generate(model: Any, save_directory: str | os.PathLike) -> None:
    """Copy the decoding method stored with the local folder the model was loaded from (transformers'
    ``custom_generate/``: ``generate.py`` and its ``requirements.txt``; ``convert --from eole`` stores eole's beam
    search there) into ``save_directory`` where it has none: ``save_pretrained`` saves the weights, the config and the
    code but not that folder, and a re-saved model would otherwise decode with a different search."""
    loaded_from = getattr(model.config, "_name_or_path", "")
    if not loaded_from or not os.path.isdir(loaded_from) or not os.path.isdir(save_directory):
        return
    source, target = Path(loaded_from) / "custom_generate", Path(save_directory) / "custom_generate"
    if source.is_dir() and not target.exists():
        shutil.copytree(source, target)


def copy_pipeline_files(model: Any, save_directory: str | os.PathLike) -> None:
    """Copy the module file of each pipeline in ``model.config.custom_pipelines`` (``{"impl":
    "pipeline_text2text.Text2TextPipeline", ...}``) into ``save_directory`` where it is missing, so that
    ``pipeline(model=folder, trust_remote_code=True)`` finds it. The file is a flat sibling of the model's own
    module (this package's ``models/``, or the remote-code cache), or lies in the folder (or Hub repository) the model
    was loaded from; where it is found nowhere the config entry is dropped, since a ``custom_pipelines`` without its file fails."""
    pipelines = getattr(model.config, "custom_pipelines", None)
    if not pipelines or not os.path.isdir(save_directory):
        return
    module_file = getattr(sys.modules.get(type(model).__module__), "__file__", None)
    candidates = [Path(module_file).parent] if module_file else []
    loaded_from = getattr(model.config, "_name_or_path", "")
    if loaded_from and os.path.isdir(loaded_from):
        candidates.append(Path(loaded_from))
    missing = []
    for task, entry in pipelines.items():
        name = str(entry.get("impl", "")).split(".")[0] + ".py"
        target = Path(save_directory) / name
        if target.is_file():
            continue
        source = next((c / name for c in candidates if (c / name).is_file()), None)
        if source is None and loaded_from and not os.path.isdir(loaded_from):
            # loaded from a Hub repository: its copy (cached, or fetched)
            source = _hub_file(loaded_from, name)
        if source is None:
            missing.append(task)
            continue
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
    if missing:
        _drop_pipelines(Path(save_directory) / "config.json", missing)


def _hub_file(repo_id: str, name: str) -> Path | None:
    from transformers.utils import cached_file

    try:
        found = cached_file(repo_id, name, _raise_exceptions_for_missing_entries=False)
    except (OSError, ValueError):  # offline, no such repository, not a repository id
        return None
    return Path(found) if found else None


def _drop_pipelines(config_file: Path, tasks: list[str]) -> None:
    if not config_file.is_file():
        return
    config = json.loads(config_file.read_text(encoding="utf-8"))
    kept = {k: v for k, v in config.get("custom_pipelines", {}).items() if k not in tasks}
    if kept:
        config["custom_pipelines"] = kept
    else:
        config.pop("custom_pipelines", None)
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher-forcing decoder inputs from ``labels`` (B, T): ``decoder_start_token_id`` first, then the labels
    shifted one step right, ``-100`` (ignored positions) replaced by ``pad_token_id``. The labels are not changed."""
    shifted = labels.new_empty(labels.shape)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


def output_options(config, output_attentions, output_hidden_states, return_dict) -> tuple[bool, bool, bool]:
    """The transformers contract for ``forward``: an output option passed as ``None`` takes the config's value."""
    return (
        config.output_attentions if output_attentions is None else output_attentions,
        config.output_hidden_states if output_hidden_states is None else output_hidden_states,
        config.return_dict if return_dict is None else return_dict,
    )


def sinusoidal_table(num_positions: int, dim: int, start: int = 0) -> torch.Tensor:
    """Vaswani et al. (2017) sec. 3.5: PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(pos / 10000^(2i/D))
    for pos = start .. num_positions - 1 → (num_positions - start, D), computed in float64 and rounded to float32.

    Interleaved exactly as in the paper (Marian instead concatenates [sin | cos]). Each row depends on its position
    only, so a slice computed from ``start`` equals the same rows of the whole table.
    """
    position = torch.arange(start, num_positions, dtype=torch.float64)[:, None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions - start, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table.float()
