"""Reading the options: a YAML/JSON recipe (``--config``) becomes the parser's defaults, so anything given on the
command line wins; recipe values are type-checked here because argparse converts only command-line strings."""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from pathlib import Path

from .arguments import ARGUMENT_CLASSES, DataArguments, ModelArguments, TrainArguments, check_task_options

# The first line of ``train.py --help`` (it was the training module's first docstring line; kept word for word)
PARSER_DESCRIPTION = "The Accelerate training loop behind ``scripts/train.py`` and ``hf-seq2seq train``."


def build_parser(prog: str = "train.py"):
    from transformers import HfArgumentParser

    parser = HfArgumentParser(ARGUMENT_CLASSES, prog=prog, description=PARSER_DESCRIPTION)
    parser.add_argument(
        "--config",
        default=None,
        help="YAML or JSON recipe whose keys are the options listed here (without the dashes, e.g. "
        "'max_steps: 1000'); options given on the command line override it.",
    )
    # HfArgumentParser adds the dataclass options first; list --config right after -h, where it is looked for
    for actions in (parser._actions, parser._optionals._group_actions):
        actions.insert(1, actions.pop())
    return parser


def _read_recipe(path: str) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--config {path!r}: file not found")
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"--config {path!r} does not parse: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path!r} must hold a mapping of option: value")
    return data


def _check_recipe_types(path: str, recipe: dict) -> None:
    """A recipe value is used as given (argparse converts only command-line strings): check its type here, so
    ``max_steps: 2.5`` or ``disable_progress_bar: maybe`` in YAML fails naming the file and the option."""
    import typing

    hints = {}
    for cls in ARGUMENT_CLASSES:
        hints.update(typing.get_type_hints(cls))
    for key, value in recipe.items():
        expected = hints.get(key)
        if expected is None:
            continue
        args = typing.get_args(expected) or (expected,)
        if value is None:
            if type(None) in args:
                continue
        elif isinstance(value, str) and str not in args:
            # argparse converts string defaults as if typed on the command line (YAML reads 5e-4 as a string)
            try:
                if bool in args:
                    ok = value.lower() in ("yes", "true", "t", "y", "1", "no", "false", "f", "n", "0")
                else:
                    (int if int in args else float)(value)
                    ok = True
            except ValueError:
                ok = False
            if ok:
                continue
        elif any(
            (t is bool and isinstance(value, bool))
            or (t is int and isinstance(value, int) and not isinstance(value, bool))
            or (t is float and isinstance(value, (int, float)) and not isinstance(value, bool))
            or (t is str and isinstance(value, str))
            for t in args
        ):
            continue
        names = " or ".join(
            {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(t, "null")
            for t in args
        )
        raise ValueError(f"--config {path!r}: {key}: {value!r} is not valid; it must be {names}")


def parse_args(
    argv: list[str] | None = None, prog: str = "train.py"
) -> tuple[DataArguments, ModelArguments, TrainArguments]:
    """Recipe (``--config``) values become parser defaults, so anything on the command line wins."""
    import argparse

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(prog)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config:
        recipe = _read_recipe(known.config)
        valid = {f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(recipe) - valid)
        if unknown:
            raise ValueError(f"--config {known.config!r}: unknown option(s) {unknown}; see --help")
        if isinstance(recipe.get("model_config"), dict):
            recipe["model_config"] = json.dumps(recipe["model_config"])
        _check_recipe_types(known.config, recipe)
        parser.set_defaults(**recipe)
    *outputs, _extra = parser.parse_args_into_dataclasses(args=argv)
    check_task_options(*outputs)
    if known.config:
        # the model card shows the recipe (name and content): declared fields of TrainArguments, not options
        outputs[2].recipe = known.config
        outputs[2].recipe_text = Path(known.config).read_text(encoding="utf-8")
    return tuple(outputs)


def _option_defaults() -> dict:
    defaults = {}
    for cls in ARGUMENT_CLASSES:
        for f in dataclasses.fields(cls):
            if f.init:
                factory = f.default_factory
                defaults[f.name] = factory() if factory is not dataclasses.MISSING else f.default
    return defaults


def _same(written, ran) -> bool:
    """Whether a recipe value is the one that ran: YAML reads ``3e-3`` or ``yes`` as strings, argparse converts them."""
    if isinstance(written, str) and isinstance(ran, (bool, int, float)) and not isinstance(ran, str):
        if isinstance(ran, bool):
            return written.lower() in (
                ("yes", "true", "t", "y", "1") if ran else ("no", "false", "f", "n", "0")
            )
        try:
            return float(written) == ran
        except ValueError:
            return False
    return written == ran


def recipe_as_run(recipe_text: str, options: dict, json_format: bool = False) -> str:
    """The recipe as the run used it, for the model card: the recipe's keys in its order with the values that ran
    (a command-line option given beside ``--config`` wins over the file), then every other option that differs from
    its default (given on the command line, or derived from one). A YAML recipe keeps its opening comment lines and
    gets one more naming the options that are not as the file says. ``options`` is what ran
    (`arguments.args_to_dict`); the card shows paths by `hub.scrub_paths`."""
    import yaml

    def value(key, v):
        if key == "model_config" and isinstance(v, str):
            try:
                return json.loads(v)
            except json.JSONDecodeError:
                return v
        return v

    try:
        recipe = json.loads(recipe_text) if json_format else yaml.safe_load(recipe_text)
    except (json.JSONDecodeError, yaml.YAMLError):
        return recipe_text
    recipe = recipe if isinstance(recipe, dict) else {}
    defaults = _option_defaults()
    merged = {k: value(k, options.get(k, v)) for k, v in recipe.items()}
    merged.update(
        {k: value(k, v) for k, v in options.items() if k not in recipe and k in defaults and v != defaults[k]}
    )
    changed = [k for k, v in merged.items() if k not in recipe or not _same(value(k, recipe[k]), v)]
    if json_format:
        return json.dumps(merged, indent=2, ensure_ascii=False)
    comments = list(itertools.takewhile(lambda line: line.startswith("#"), recipe_text.splitlines()))
    if changed:
        comments.append("# as it ran; not as in the file: " + ", ".join(f"--{k}" for k in changed))
    body = yaml.safe_dump(merged, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join([*comments, body.rstrip("\n")])
