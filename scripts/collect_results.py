"""Turn a folder of benchmark runs (``scripts/run_multi30k_gpu.sh``) into ``docs/results.md``.

    python scripts/collect_results.py RUNS_DIR --setup "1x H100, 4 runs sharing it, 5.5 min each" [--merge]

``--merge`` keeps the rows of ``docs/results/runs.json`` from earlier sessions whose run name is not in RUNS_DIR
(each row carries its own ``setup`` line), so a rerun of some recipes does not drop the others.

For every ``RUNS_DIR/<name>/`` it reads ``training_history.json`` (steps, epochs, validation scores),
``run_config.json`` (the recipe as run), the model card facts in ``final_model/README.md`` and
``RUNS_DIR/<name>.test.json`` (sacreBLEU/chrF on test_2016_flickr, written by ``hf-seq2seq evaluate``), and copies
the learning curve PNG to ``docs/results/``. Where the run averaged checkpoints (``AVERAGE=N``),
``RUNS_DIR/<name>.selection.json`` says which of the best checkpoint and the average won on val.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
from pathlib import Path

TARGETS = {  # by recipe family: the longest matching prefix of the run name
    "transformer_de_en": (
        "Transformer, ≤ 10M parameters",
        "36.5 (tokenized, lowercased; PyTorch tutorial, 9M)",
        "≥ 40",
    ),
    "transformer_en_de": ("Transformer, ≤ 10M parameters", "—", "≥ 38"),
    "bigru_bahdanau_de_en": ("bi-GRU + Bahdanau", "28.3 (same tutorial)", "≥ 36"),
    "lstm_luong_de_en": ("LSTM + Luong general, input feeding", "—", "≥ 36"),
    "gru_vanilla_de_en": ("vanilla GRU seq2seq, no attention", "20.6 (same tutorial)", "report"),
}


# rows written before runs carried their own setup line (stop 10)
LEGACY_SETUP = (
    "`bash scripts/run_multi30k_gpu.sh ../shared/data/multi30k outputs/gpu 3.0`: 1x NVIDIA H100 80GB HBM3, "
    "bf16 autocast, 5 runs sharing the card, each stopped by `--max_train_minutes 3`, `--eval_steps 1500`"
)


def family(name: str) -> str | None:
    """The TARGETS key a run name belongs to (``transformer_de_en_dropout03`` -> ``transformer_de_en``)."""
    keys = [k for k in TARGETS if name == k or name.startswith(k + "_")]
    return max(keys, key=len) if keys else None


def summarize(run: Path, runs: Path, figures: Path, setup: str) -> dict:
    history = json.loads((run / "training_history.json").read_text())
    config = json.loads((run / "run_config.json").read_text())
    evals = [e for e in history if "eval_bleu" in e]
    best = max(evals, key=lambda e: e["eval_bleu"]) if evals else {}
    card_path = run / "final_model" / "README.md"
    if not card_path.exists():  # runs saved before hub.py skipped the heatmap of attention="none" models
        card_path = run / "best_model" / "README.md"
    card = card_path.read_text()
    params = re.search(r"([\d,]+) parameters", card)
    train_time = re.search(r"\*\*training time\*\*: ([\d:]+)", card)
    test = json.loads((runs / f"{run.name}.test.json").read_text())
    selection_file = runs / f"{run.name}.selection.json"
    selection = json.loads(selection_file.read_text()) if selection_file.exists() else None
    # Only the learning curve: the heatmaps show a Multi30k sentence, which stays out of this tree.
    for image in ("learning_curve.png",):
        if (run / "final_model" / image).exists():
            shutil.copy(run / "final_model" / image, figures / f"{run.name}_{image}")
    return {
        "name": run.name,
        "pair": f"{config['source_lang']}→{config['target_lang']}",
        "params": params.group(1) if params else "?",
        "steps": history[-1]["step"],
        "epochs": history[-1].get("epoch", "?"),
        "time": train_time.group(1) if train_time else "?",
        "max_tokens": config["max_tokens"],
        "val_bleu": best.get("eval_bleu", float("nan")),
        "val_ppl": math.exp(best["eval_loss"]) if "eval_loss" in best else float("nan"),
        "test_bleu": test["bleu"],
        "test_chrf": test["chrf"],
        "bleu_signature": test["bleu_signature"],
        "chrf_signature": test["chrf_signature"],
        "selected": selection["selected"] if selection else "best_model",
        "val_bleu_selected": selection[selection["selected"]]["val_bleu"] if selection else None,
        "selection": {k: v["val_bleu"] for k, v in selection.items() if k != "selected"}
        if selection
        else None,
        "setup": setup,
        "recipe": config,
    }


KEEP_MARKER = "<!-- collect_results keeps everything below this line -->"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", type=Path)
    p.add_argument(
        "--setup",
        required=True,
        help="how these runs were made: command, hardware, sharing, time budget (one line in the table notes)",
    )
    p.add_argument("--merge", action="store_true", help="keep earlier rows of runs.json not rerun here")
    p.add_argument("--out", type=Path, default=Path("docs/results.md"))
    args = p.parse_args(argv)
    figures = args.out.parent / "results"
    figures.mkdir(parents=True, exist_ok=True)
    rows = [
        summarize(r, args.runs, figures, args.setup)
        for r in sorted(args.runs.iterdir())
        if (r / "run_config.json").exists()
    ]
    if args.merge and (figures / "runs.json").exists():
        new = {r["name"] for r in rows}
        rows += [r for r in json.loads((figures / "runs.json").read_text()) if r["name"] not in new]
    order = list(TARGETS)
    rows.sort(key=lambda r: (order.index(family(r["name"])) if family(r["name"]) else len(order), r["name"]))
    setups = list(dict.fromkeys(r.get("setup") or LEGACY_SETUP for r in rows))
    (figures / "runs.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    lines = [
        "# Multi30k results",
        "",
        "Produced by `scripts/run_multi30k_gpu.sh` (the setups below) then `python scripts/collect_results.py RUNS_DIR",
        "--setup ... --merge`. Trained on `train` (29,000 pairs), selected on `val` by BLEU, reported on",
        "`test_2016_flickr` (1,000 sentences): detokenized, cased sacreBLEU and chrF, beam 5. Validation perplexity is",
        "teacher-forced, with label smoothing 0.1 in the loss (an upper bound on the unsmoothed perplexity). Every run",
        "was stopped by `--max_train_minutes`: these are what each recipe reaches in its budget, not converged numbers.",
        "*selected*: the best validation checkpoint, or the average of the last checkpoints",
        "(`hf-seq2seq average-checkpoints`) where that scored higher on val.",
        "",
        "Setups:",
        "",
    ]
    lines += [f"{i + 1}. {s}" for i, s in enumerate(setups)]
    lines += [
        "",
        "| model | pair | params | setup | steps (epochs) | train time | val BLEU | val ppl | selected | **test BLEU** | test chrF | peer | target |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|",
    ]
    for r in rows:
        label, peer, target = TARGETS.get(family(r["name"]), (r["name"], "—", "—"))
        selected = r.get("selected", "best_model")
        val_bleu = r.get("val_bleu_selected") or r["val_bleu"]
        if selected == "averaged_model":
            selected = f"average of last {r['recipe'].get('save_total_limit', '?')}"
        else:
            selected = "best"
        lines.append(
            f"| {label} (`{r['name']}`) | {r['pair']} | {r['params']} | {setups.index(r.get('setup') or LEGACY_SETUP) + 1} | "
            f"{r['steps']} ({r['epochs']}) | {r['time']} | {val_bleu:.1f} | {r['val_ppl']:.2f} | {selected} | "
            f"**{r['test_bleu']:.1f}** | {r['test_chrf']:.1f} | {peer} | {target} |"
        )
    lines += [
        "",
        "Per target, the recipe selected on val (highest val BLEU of its family; test only reported):",
        "",
    ]
    for key, (label, _, target) in TARGETS.items():
        group = [r for r in rows if family(r["name"]) == key]
        if not group:
            continue
        best = max(group, key=lambda r: r.get("val_bleu_selected") or r["val_bleu"])
        verdict = ""
        if target.startswith("≥"):
            verdict = " — met" if best["test_bleu"] >= float(target[1:]) else " — **not met**"
        lines.append(
            f"- {label}, {best['pair']}: `{best['name']}`, test BLEU {best['test_bleu']:.1f} (target {target}){verdict}"
        )
    lines += [
        "",
        f"BLEU signature: `{rows[0]['bleu_signature']}`; chrF signature: `{rows[0]['chrf_signature']}`.",
        "",
        "Recipes: `configs/multi30k_<name>.yaml`; the exact options of each run (recipe plus the command line) are",
        "in `docs/results/runs.json`.",
        "",
        "## Learning curves",
        "",
    ]
    for r in rows:
        if (figures / f"{r['name']}_learning_curve.png").exists():
            lines.append(f"![{r['name']}](results/{r['name']}_learning_curve.png)")
    kept = ""  # hand-written sections after the marker (e.g. the analyze results) survive a rewrite
    if args.out.exists() and KEEP_MARKER in (old := args.out.read_text()):
        kept = "\n" + old[old.index(KEEP_MARKER) :]
    args.out.write_text("\n".join(lines) + "\n" + kept)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
