"""Checkpoint averaging: the element-wise mean of the weights of the last N checkpoints of a run.

Averaging the parameters of the last few checkpoints of one run is the standard cheap gain for NMT (Vaswani et al.
2017, Sec. 6.1: "the last 5 checkpoints"; fairseq's ``scripts/average_checkpoints.py``, JoeyNMT's
``scripts/average_checkpoints.py``, Marian's ``scripts/checkpoints/average.py``): typically +0.5-1 BLEU at no
training cost, because the late checkpoints of one run lie in the same basin and their mean sits nearer its centre
than any single one.

    theta_avg[k] = (1 / N) * sum_i theta_i[k]      for every stored tensor k

What goes in: checkpoint folders (``OUTPUT_DIR/checkpoints/step-N``, written by ``accelerator.save_state``, complete
only with the ``COMPLETE`` marker) and saved model folders (``final_model``, ``best_model``, anything
:func:`hf_seq2seq.hub.save_model_folder` wrote), in any mix. Only ``model.safetensors`` is read (never a pickle), one
tensor at a time from every file, so memory is the size of one model plus one tensor.

Deviations and details:
- The sum is accumulated in float64 (not float32) and divided once, then cast back to the stored dtype of the first
  path: N identical copies average to exactly themselves, and bf16/fp16 weights are not averaged in half precision.
- Integer and boolean tensors (counters such as BatchNorm's ``num_batches_tracked``) are not averaged: the value of
  the last path is kept.
- Tied weights (shared embeddings / output projection) are stored once in ``model.safetensors``; given the tie
  groups of the model (:func:`tied_weight_groups`), a file that stores a different name of a group, or several,
  is read under one name, so a tied matrix is averaged once and stays tied in the written model.

``hf-seq2seq average-checkpoints`` (:mod:`hf_seq2seq.commands.average_checkpoints`) writes a complete model folder: the files of a
template model folder (config, code, tokenizer, generation config, card) with the averaged weights, written into a
temporary folder, loaded back and checked, then renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers.core_model_loading import revert_weight_conversion

from ..data import DataError
from .checkpointing import COMPLETE_MARKER, list_checkpoints

__all__ = [
    "CheckpointAveragingError",
    "average_checkpoints",
    "last_checkpoints",
    "tied_weight_groups",
    "write_averaged_model",
    "default_template",
]

WEIGHTS_NAME = "model.safetensors"
SHARDED_INDEX_NAME = "model.safetensors.index.json"
AVERAGING_INFO_NAME = "averaging.json"
_SHOWN = 5  # keys listed in a mismatch message


class CheckpointAveragingError(DataError):
    """Checkpoints that cannot be averaged: the message names the path and the problem."""


# ---------------------------------------------------------------------------------------------------- inputs
def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file()


def _weights_file(path: Path) -> Path:
    """``path/model.safetensors`` after checking that ``path`` is a complete checkpoint or a model folder."""
    if not path.exists():
        raise CheckpointAveragingError(f"{path} does not exist")
    if not path.is_dir():
        raise CheckpointAveragingError(
            f"{path} is not a folder: give checkpoint folders (OUTPUT_DIR/checkpoints/step-N) or model folders"
        )
    if not _is_model_folder(path) and not (path / COMPLETE_MARKER).is_file():
        raise CheckpointAveragingError(
            f"{path} is an incomplete checkpoint (no {COMPLETE_MARKER} marker: its write was interrupted or is still "
            "running); leave it out"
        )
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        if (path / SHARDED_INDEX_NAME).is_file():
            raise CheckpointAveragingError(
                f"{path} holds sharded weights ({SHARDED_INDEX_NAME}); only a single {WEIGHTS_NAME} is supported"
            )
        found = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        hint = f" (found {', '.join(found)}: pickle files are never loaded)" if found else ""
        raise CheckpointAveragingError(f"{path} has no {WEIGHTS_NAME}{hint}")
    return weights


def _open(stack: contextlib.ExitStack, weights: Path):
    from safetensors import safe_open

    try:
        return stack.enter_context(safe_open(str(weights), framework="pt", device="cpu"))
    except Exception as err:  # SafetensorError: truncated, empty or not a safetensors file
        raise CheckpointAveragingError(
            f"cannot read {weights}: {type(err).__name__}: {err} (is the file truncated or corrupt?)"
        ) from None


def _header(handle, weights: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    try:
        return {
            key: (tuple(handle.get_slice(key).get_shape()), handle.get_slice(key).get_dtype())
            for key in handle.keys()
        }
    except Exception as err:
        raise CheckpointAveragingError(f"cannot read the header of {weights}: {err}") from None


def _tensor(handle, weights: Path, key: str) -> torch.Tensor:
    try:
        return handle.get_tensor(key)
    except Exception as err:
        raise CheckpointAveragingError(f"cannot read tensor {key!r} of {weights}: {err}") from None


def _canonical_names(
    handle, weights: Path, keys: Sequence[str], tied_weights: Sequence[Sequence[str]]
) -> dict[str, str]:
    """``{name used for averaging: name stored in the file}``: every tie group under its first name."""
    names = {key: key for key in keys}
    for group in tied_weights:
        present = [name for name in group if name in names]
        if not present:
            continue
        first = _tensor(handle, weights, present[0])
        for other in present[1:]:
            if not torch.equal(first, _tensor(handle, weights, other)):
                raise CheckpointAveragingError(
                    f"{weights} stores different values for {present[0]!r} and {other!r}, which the model ties "
                    "(one shared matrix): these weights do not belong to this model"
                )
            del names[other]
        del names[present[0]]
        names[group[0]] = present[0]
    return names


def _list(keys) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def _check_paths(paths: Sequence[Path]) -> None:
    """At least two paths, none given twice (it would count double)."""
    if len(paths) < 2:
        raise CheckpointAveragingError(
            f"averaging needs at least 2 checkpoints, got {len(paths)}: {', '.join(map(str, paths)) or 'none'}"
        )
    seen: dict[Path, Path] = {}
    for p in paths:
        resolved = p.resolve()
        if resolved in seen:
            raise CheckpointAveragingError(
                f"{p} is given twice (as {seen[resolved]} too): it would count double in the average"
            )
        seen[resolved] = p


def _check_same_weights(paths: Sequence[Path], headers: list[dict], names: list[dict[str, str]]) -> None:
    """Every path stores the same (canonical) names with the same shapes as the first one."""
    ref_keys = set(names[0])
    for path, mapping in zip(paths[1:], names[1:]):
        if set(mapping) != ref_keys:
            only_ref, only_here = ref_keys - set(mapping), set(mapping) - ref_keys
            detail = []
            if only_ref:
                detail.append(f"missing {_list(only_ref)}")
            if only_here:
                detail.append(f"extra {_list(only_here)}")
            raise CheckpointAveragingError(
                f"{path} does not hold the same weights as {paths[0]} ({'; '.join(detail)}): "
                "only checkpoints of one model (one run) can be averaged"
            )
    for key in sorted(ref_keys):
        ref_shape = headers[0][names[0][key]][0]
        for path, header, mapping in zip(paths[1:], headers[1:], names[1:]):
            shape = header[mapping[key]][0]
            if shape != ref_shape:
                raise CheckpointAveragingError(
                    f"{path}: {key!r} has shape {list(shape)} but {list(ref_shape)} in {paths[0]}: only "
                    "checkpoints of one model (one run) can be averaged"
                )


def average_checkpoints(
    paths: Sequence[str | os.PathLike], *, tied_weights: Sequence[Sequence[str]] = ()
) -> dict[str, torch.Tensor]:
    """The element-wise mean of the weights stored in ``paths`` (checkpoint or model folders, at least two).

    Args:
        paths: folders holding ``model.safetensors``: complete checkpoints (``COMPLETE`` marker) or model folders
            (``config.json``). Nothing in them is modified.
        tied_weights: groups of parameter names that are one shared tensor in the model (see
            :func:`tied_weight_groups`); a file may store any one of them (or several equal copies). The result
            holds each group under its first name. Without it, the stored names must match exactly.

    Returns:
        ``{name: tensor}``, each tensor in the dtype the first path stores it in (floats averaged in float64).

    Raises:
        CheckpointAveragingError (a ``ValueError``) naming the path: fewer than two paths, a path given twice, a
        missing folder or ``model.safetensors``, an incomplete checkpoint, a truncated/corrupt file, non-finite
        weights, or names/shapes that differ between paths.
    """
    paths = [Path(p) for p in paths]
    _check_paths(paths)
    files = [_weights_file(p) for p in paths]  # every folder checked before any tensor is read
    with contextlib.ExitStack() as stack:
        handles = [_open(stack, w) for w in files]
        headers = [_header(h, w) for h, w in zip(handles, files)]
        names = [_canonical_names(h, w, hd, tied_weights) for h, w, hd in zip(handles, files, headers)]
        _check_same_weights(paths, headers, names)
        averaged: dict[str, torch.Tensor] = {}
        for key in names[0]:  # file order of the first path
            first = _tensor(handles[0], files[0], names[0][key])
            if not (first.is_floating_point() or first.is_complex()):
                averaged[key] = _tensor(handles[-1], files[-1], names[-1][key]).to(first.dtype)
                continue
            total = torch.zeros(first.shape, dtype=torch.float64)
            for i, (handle, weights, mapping) in enumerate(zip(handles, files, names)):
                tensor = first if i == 0 else _tensor(handle, weights, mapping[key])
                if not torch.isfinite(tensor).all():
                    raise CheckpointAveragingError(
                        f"{weights}: {mapping[key]!r} holds NaN/inf values; leave this checkpoint out"
                    )
                total += tensor.to(torch.float64)
            averaged[key] = (total / len(paths)).to(first.dtype).contiguous()
    return averaged


def last_checkpoints(run_dir: str | os.PathLike, n: int) -> list[Path]:
    """The ``n`` complete checkpoints of ``run_dir`` with the highest step numbers, oldest first.

    Only ``checkpoints/step-N`` folders with the ``COMPLETE`` marker count (interrupted ``.tmp-step-N`` writes and
    folders without the marker are skipped). Raises :class:`CheckpointAveragingError` if there are fewer than ``n``.
    """
    run_dir = Path(run_dir)
    if n < 1:
        raise CheckpointAveragingError(f"--last must be >= 1, got {n}")
    if not run_dir.is_dir():
        raise CheckpointAveragingError(f"run folder {run_dir} does not exist")
    if not (run_dir / "checkpoints").is_dir():
        raise CheckpointAveragingError(
            f"{run_dir} has no checkpoints/ folder: is it a training --output_dir?"
        )
    found = list_checkpoints(run_dir)
    if len(found) < n:
        steps = ", ".join(str(s) for s, _ in found) or "none"
        raise CheckpointAveragingError(
            f"{run_dir / 'checkpoints'} has {len(found)} complete checkpoint(s) (steps: {steps}), fewer than "
            f"--last {n}; train with --save_total_limit {n} (or more) to keep enough of them"
        )
    return [p for _, p in found[-n:]]


# ---------------------------------------------------------------------------------------------------- output
def tied_weight_groups(model, stored: Sequence[str] = ()) -> list[tuple[str, ...]]:
    """Names of parameters that are one shared tensor in ``model``, one tuple per group (groups of 2+ only).

    The name that appears in ``stored`` (the keys of a ``model.safetensors`` this model loads) comes first, so
    :func:`average_checkpoints` writes each group under the name the loader expects.
    """
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    stored = set(stored)
    return [
        tuple(sorted(names, key=lambda n: n not in stored))  # stable: stored name first, then model order
        for names in groups.values()
        if len(names) > 1
    ]


def _auto_model_class(folder: Path):
    import transformers

    import hf_seq2seq  # noqa: F401  (registers our model types)

    from ..families import BY_MODEL_TYPE

    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as err:
        raise CheckpointAveragingError(
            f"{folder / 'config.json'} is not a readable JSON object: {err}"
        ) from None
    family = BY_MODEL_TYPE.get(model_type)
    # a folder that is not ours is a text-to-text model as far as averaging goes (the former default)
    return getattr(transformers, family.auto_class if family else "AutoModelForSeq2SeqLM")


def _load_model(folder: Path, **kwargs):
    model_cls = _auto_model_class(folder)
    try:
        return model_cls.from_pretrained(str(folder), use_safetensors=True, **kwargs)
    except Exception as err:
        raise CheckpointAveragingError(
            f"cannot load the model in {folder}: {type(err).__name__}: {err}"
        ) from None


def _stored_keys(weights: Path) -> list[str]:
    with contextlib.ExitStack() as stack:
        return list(_open(stack, weights).keys())


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _check_output(output: Path, inputs: Sequence[Path], overwrite: bool) -> None:
    out = output.resolve()
    for path in inputs:
        src = path.resolve()
        if _within(src, out) or _within(out, src):
            raise CheckpointAveragingError(
                f"--output {output} overlaps the input {path}: write the averaged model to a separate folder "
                "(inputs are never modified)"
            )
    if output.exists():
        if not output.is_dir():
            raise CheckpointAveragingError(f"--output {output} exists and is not a folder")
        if any(output.iterdir()) and not overwrite:
            raise CheckpointAveragingError(
                f"--output {output} exists and is not empty; pass --overwrite_output_dir to replace it"
            )


def _short(path: Path) -> str:
    """``checkpoints/step-N`` / ``run/final_model``: no local absolute paths in files that may be pushed."""
    return f"{path.parent.name}/{path.name}"


def _card_note(paths: Sequence[Path], template: Path) -> str:
    listed = "\n".join(f"- `{_short(p)}`" for p in paths)
    return (
        "\n\n## Checkpoint averaging\n\n"
        f"The weights of this folder are the element-wise mean of {len(paths)} checkpoints "
        "(`hf-seq2seq average-checkpoints`):\n\n"
        f"{listed}\n\n"
        f"Configuration, tokenizer, code and this card come from `{_short(template)}`; metrics reported above were "
        "measured on that model, not on the average (score it with `hf-seq2seq evaluate`).\n"
    )


def write_averaged_model(
    paths: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    template: str | os.PathLike,
    overwrite: bool = False,
) -> Path:
    """Average ``paths`` and write a complete model folder to ``output_dir``; returns its path.

    The folder is a copy of the ``template`` model folder (config, code files, tokenizer, generation config, card
    and images) whose ``model.safetensors`` holds the average, plus ``averaging.json`` (what was averaged) and a
    note at the end of ``README.md``. It is written into a temporary sibling folder, loaded back with the Auto
    class and compared with the average, then renamed to ``output_dir``. An existing non-empty ``output_dir`` is
    only replaced with ``overwrite=True``; the inputs and the template are never modified.
    """
    from safetensors.torch import save_file

    paths = [Path(p) for p in paths]
    template, output = Path(template), Path(output_dir)
    if not _is_model_folder(template):
        raise CheckpointAveragingError(
            f"template {template} is not a saved model folder (no config.json): it gives the averaged model its "
            "config, tokenizer and code"
        )
    _check_output(output, [*paths, template], overwrite)
    template_weights = _weights_file(template)
    model = _load_model(template)
    groups = tied_weight_groups(model, _stored_keys(template_weights))
    del model
    averaged = average_checkpoints(paths, tied_weights=groups)

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".tmp-{output.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        skip = {WEIGHTS_NAME, SHARDED_INDEX_NAME, AVERAGING_INFO_NAME}
        shutil.copytree(template, tmp, ignore=lambda _dir, names: [n for n in names if n in skip])
        save_file(averaged, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        os.chmod(tmp / WEIGHTS_NAME, template_weights.stat().st_mode & 0o777)  # save_file writes 0600
        info = {"averaged": [_short(p) for p in paths], "template": _short(template)}
        (tmp / AVERAGING_INFO_NAME).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        card = tmp / "README.md"
        if card.is_file():
            card.write_text(card.read_text(encoding="utf-8") + _card_note(paths, template), encoding="utf-8")
        _verify(tmp, averaged, template)
        old = None
        if output.exists():
            old = output.parent / f".old-{output.name}-{os.getpid()}"
            os.replace(output, old)
        os.replace(tmp, output)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return output


def _verify(folder: Path, averaged: dict[str, torch.Tensor], template: Path) -> None:
    """Load ``folder`` back and check that the model computes with exactly the averaged weights."""
    model, info = _load_model(folder, output_loading_info=True)
    problems = {k: v for k, v in info.items() if k != "error_msgs" and v} | (
        {"error_msgs": info["error_msgs"]} if info.get("error_msgs") else {}
    )
    if problems:
        detail = "; ".join(f"{k}: {_list(map(str, v))}" for k, v in problems.items())
        raise CheckpointAveragingError(
            f"the averaged weights do not fit the model of template {template} ({detail}): use the final_model or "
            "best_model folder of the run the checkpoints come from as --template"
        )
    # a model may rename keys on load and back on save (transformers' conversion mapping): an averaged weight may be
    # named either way (save_pretrained folders: the saved names; accelerate checkpoints: the module's names)
    state = model.state_dict()
    state = {**state, **revert_weight_conversion(model, state)}
    for key, tensor in averaged.items():
        if key not in state or not torch.equal(state[key].to(tensor.dtype), tensor):
            raise CheckpointAveragingError(
                f"{key!r} of the averaged weights did not load into the model of template {template} as written"
            )


# ---------------------------------------------------------------------------------------------------- template
def default_template(run_dirs: Sequence[Path], paths: Sequence[Path]) -> Path:
    """The model folder that gives the averaged model its config, tokenizer and code: a run's ``final_model``,
    else its ``best_model``, else the first saved model folder among ``paths``."""
    for run_dir in run_dirs:
        for name in ("final_model", "best_model"):
            if _is_model_folder(run_dir / name):
                return run_dir / name
    for path in paths:
        if _is_model_folder(path):
            return path
    where = f" ({', '.join(str(r) for r in run_dirs)} has no final_model/ or best_model/)" if run_dirs else ""
    raise CheckpointAveragingError(
        f"no template model folder{where}: pass --template DIR, a saved model folder of the same model that "
        "gives the config, tokenizer and code"
    )
