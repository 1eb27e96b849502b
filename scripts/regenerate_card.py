"""Rewrite the model card of a trained run's model folder with the current card code, from what the run saved.

A folder written by an older hf_seq2seq has a card that may show local paths, "Recipe: not recorded" and a bare
"1 x cpu". Its run folder still holds ``run_config.json`` (every option that ran) and ``training_history.json``
(the validation results with their sacreBLEU signatures), so the card can be rendered again without retraining:

    python scripts/regenerate_card.py --run_dir RUN --model RUN/best_model --config configs/RECIPE.yaml \\
        --hardware "CPU AMD EPYC (1 thread), fp32"

Only ``README.md`` and its figures change; weights, config and tokenizer are left as they are. What the run did not
record can be given: ``--config`` (the recipe it was started with), ``--hardware``, ``--train_time`` (seconds or
H:MM:SS; default: the time the old card states). Then add test-set results with
``hf-seq2seq evaluate --model RUN/best_model ... --update_card``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from pathlib import Path

# history keys -> the learning-curve keys of the card (as training.evaluation.model_card maps them)
CURVE_KEYS = {"loss": "train_loss", "eval_loss": "valid_loss", "eval_bleu": "bleu"}


def _seconds(text: str | None) -> float | None:
    if not text:
        return None
    parts = [float(p) for p in text.split(":")]
    return sum(p * 60**i for i, p in enumerate(reversed(parts)))


def _old_train_time(readme: Path) -> float | None:
    if not readme.is_file():
        return None
    match = re.search(r"\*\*training time\*\*: (\d+:\d\d:\d\d)", readme.read_text(encoding="utf-8"))
    return _seconds(match.group(1)) if match else None


def _chosen_evaluation(history: list[dict], options: dict, folder: Path) -> dict:
    """The validation the folder holds: the best by ``metric_for_best_model`` (best_model), else the last one."""
    evals = [h for h in history if "eval_loss" in h]
    if not evals:
        raise ValueError("training_history.json has no validation result")
    if folder.name != "best_model":
        return evals[-1]
    metric = options.get("metric_for_best_model", "bleu")
    if metric == "loss":
        return min(evals, key=lambda h: h["eval_loss"])
    return max(evals, key=lambda h: h.get(f"eval_{metric}", float("-inf")))


def _first_validation_source(options: dict) -> str | None:
    prefix, src = options.get("validation_prefix"), options.get("source_lang")
    for path in (Path(f"{prefix}.{src}"), Path(f"{prefix}.{src}.gz")) if prefix and src else ():
        if path.is_file():
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8") as f:
                return f.readline().strip() or None
    return None


def card_from_run(run_dir: Path, folder: Path, args) -> dict:
    """The card dict `training.evaluation.model_card` would have written, rebuilt from the run's saved files."""
    from hf_seq2seq.hub import dataset_display_name, public_path, public_training_args
    from hf_seq2seq.training.recipe import recipe_as_run

    options = json.loads((run_dir / "run_config.json").read_text(encoding="utf-8"))
    history = json.loads((run_dir / "training_history.json").read_text(encoding="utf-8"))
    chosen = _chosen_evaluation(history, options, folder)
    name = options.get("dataset_name")
    hub_id = name if name and not Path(name).exists() else None  # --dataset_name may be a local folder
    local = options.get("train_prefix") or options.get("train_file") or (name if not hub_id else None)
    card = {
        "model_name": Path(options.get("output_dir") or run_dir).name,
        "source_lang": options.get("source_lang"),
        "target_lang": options.get("target_lang"),
        "dataset": hub_id,
        "dataset_name": args.dataset_display_name
        or options.get("dataset_display_name")
        or hub_id
        or (dataset_display_name(local) if local else None),
        "eval_split": "validation",
        "num_eval_sentences": chosen.get("eval_num_sentences"),
        "num_beams": options.get("num_beams"),
        **{k: chosen.get(f"eval_{k}") for k in ("bleu", "chrf", "bleu_signature", "chrf_signature")},
        "training_args": public_training_args({k: v for k, v in options.items() if k != "config"}),
        "steps": chosen["step"],
        "epochs": chosen.get("epoch"),
        "train_time": _seconds(args.train_time) or _old_train_time(folder / "README.md"),
        "hardware": args.hardware,
        "history": [
            {"step": h["step"], **{new: h[old] for old, new in CURVE_KEYS.items() if h.get(old) is not None}}
            for h in history
        ],
        "example": _first_validation_source(options),
    }
    recipe = args.config or options.get("config")  # run_config.json records --config since issue 18
    if recipe and Path(recipe).is_file():
        card["recipe"] = public_path(recipe)
        card["recipe_text"] = recipe_as_run(  # the file merged with the options that ran
            Path(recipe).read_text(encoding="utf-8"),
            {k: v for k, v in options.items() if k != "config"},
            json_format=recipe.endswith(".json"),
        )
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", required=True, help="the run's --output_dir (run_config.json, history)")
    parser.add_argument("--model", required=True, help="the model folder whose card is rewritten")
    parser.add_argument(
        "--config",
        default=None,
        help="the recipe the run was started with (default: the one run_config.json records, when it exists here)",
    )
    parser.add_argument(
        "--hardware", default=None, help='e.g. "1 x NVIDIA H100 80GB HBM3, bf16 mixed precision"'
    )
    parser.add_argument("--train_time", default=None, help="seconds or H:MM:SS (default: the old card's)")
    parser.add_argument(
        "--dataset_display_name", default=None, help="the data's name (default: its folder's)"
    )
    args = parser.parse_args(argv)
    run_dir, folder = Path(args.run_dir), Path(args.model)
    try:
        for path in (run_dir / "run_config.json", run_dir / "training_history.json", folder / "config.json"):
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist")
        if args.config and not Path(args.config).is_file():
            raise FileNotFoundError(f"--config {args.config}: file not found")
        card = card_from_run(run_dir, folder, args)
        from hf_seq2seq.hub import write_model_card
        from hf_seq2seq.inference import load_model

        model, tokenizer = load_model(folder, "cpu", cpu_kernels=False)
        readme = write_model_card(model, tokenizer, folder, card)
    except (OSError, ValueError) as err:
        print(f"regenerate_card.py: error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
