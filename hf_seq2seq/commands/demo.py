"""``hf-seq2seq demo``: the whole path on an embedded task, on CPU, in a few minutes.

Generates the German→English number-words task (:mod:`hf_seq2seq.tasks`, reordering: "drei und zwanzig" →
"twenty-three"), trains a Bahdanau GRU and a small Transformer with the same library code as
``scripts/train.py`` (:func:`hf_seq2seq.training.run_training`), prints exact match and BLEU on the held-out test
split (translated by :mod:`hf_seq2seq.inference`), translates a few examples, and leaves under ``--output_dir``:

    gru_bahdanau/final_model/      loadable with AutoModelForSeq2SeqLM.from_pretrained(..., trust_remote_code=True)
    transformer/final_model/
    attention_gru_bahdanau.png     the alignment heatmap of one test sentence
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .common import check_writable, fail

README_EXAMPLE = "drei und zwanzig"  # README.md's "three lines of transformers" (num_beams=5)

# name -> (model_type, config overrides, learning rate, optimizer steps). The Transformer gets twice the GRU's
# steps: at 600 it already scores ~99% on the (mostly four-digit) test split, yet gets only about a third of the
# 90 two-digit numbers right ("drei und zwanzig" -> "sixty-three"), which are 2% of the training pairs; at 1200 it
# translates every number 0..99 (measured with seeds 0, on 2 CPU cores; see the demo test).
MODELS = {
    "gru_bahdanau": (
        "rnn",
        {
            "cell": "gru",
            "bidirectional_encoder": True,
            "attention": "bahdanau",
            "embedding_size": 32,
            "hidden_size": 64,
            "dropout": 0.0,
        },
        5e-3,
        600,
    ),
    "transformer": (
        "transformer",
        {
            "d_model": 64,
            "encoder_layers": 2,
            "decoder_layers": 2,
            "num_attention_heads": 4,
            "ffn_dim": 128,
            "dropout": 0.0,
        },
        3e-3,
        1200,
    ),
}


# hf_seq2seq.tasks.TASKS, spelled out for a fast --help (tests/commands/test_user_errors.py checks they agree)
DEMO_TASKS = ("numbers", "dates")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hf-seq2seq demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--output_dir", default="demo_output", help="Where the model folders and the PNG go.")
    p.add_argument(
        "--task", default="numbers", choices=DEMO_TASKS, help="Embedded task: 'numbers' or 'dates'."
    )
    p.add_argument("--num_examples", type=int, default=4000, help="Training pairs generated.")
    p.add_argument(
        "--num_test", type=int, default=200, help="Held-out test pairs (also the validation size)."
    )
    p.add_argument(
        "--max_steps",
        type=int,
        default=None,
        help="Optimizer steps of every model (default: 600 for the GRU, 1200 for the Transformer).",
    )
    p.add_argument("--max_tokens", type=int, default=1024, help="Token budget of a batch.")
    p.add_argument("--models", default="gru_bahdanau,transformer", help=f"Comma list of {', '.join(MODELS)}.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the task and of training.")
    p.add_argument("--num_beams", type=int, default=4, help="Beam size for evaluation and translation.")
    p.add_argument("--disable_progress_bar", action="store_true", help="Hide the progress bars.")
    return p


def _option_problem(args, names: list[str]) -> str | None:
    """What is wrong with the parsed options (one line), or None."""
    if not names or any(n not in MODELS for n in names):
        return f"--models {args.models!r}; valid: {', '.join(MODELS)}"
    for option in ("num_examples", "num_test", "max_steps", "max_tokens", "num_beams"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            return f"--{option}={getattr(args, option)} must be >= 1"
    return None


def demo_main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    problem = _option_problem(args, names)
    if problem:  # on stderr, exit status 2, as argparse's own refusals
        print(f"{parser.prog}: error: {problem}", file=sys.stderr)
        return 2
    try:
        check_writable({"--output_dir": args.output_dir})  # the default demo_output too: before any training
        _run_demo(args, names)
    except (OSError, ValueError, FloatingPointError) as err:
        return fail(parser.prog, err)
    return 0


def _run_demo(args, names: list[str]) -> None:
    from ..inference import GenerateEngine
    from ..metrics import corpus_scores
    from ..training import DataArguments, ModelArguments, TrainArguments, run_training

    out_root = Path(args.output_dir)
    summary = []
    for name in names:
        model_type, model_config, lr, default_steps = MODELS[name]
        max_steps = args.max_steps or default_steps
        data_args = DataArguments(
            task=args.task,
            task_num_train=args.num_examples,
            task_num_validation=args.num_test,
            task_num_test=args.num_test,
            vocab_size=400,
            max_tokens=args.max_tokens,
            max_source_length=48,
            max_target_length=48,
        )
        model_args = ModelArguments(model_type=model_type, model_config=json.dumps(model_config))
        train_args = TrainArguments(
            output_dir=str(out_root / name),
            overwrite_output_dir=True,
            seed=args.seed,
            learning_rate=lr,
            lr_scheduler="inverse_sqrt",
            warmup_steps=max(1, max_steps // 10),
            max_steps=max_steps,
            eval_steps=max_steps,
            num_beams=args.num_beams,
            max_new_tokens=48,
            log_with="none",
            disable_progress_bar=args.disable_progress_bar,
        )
        print(
            f"\n=== {name}: training on {args.num_examples} generated '{args.task}' pairs for {max_steps} steps"
        )
        start = time.perf_counter()
        result = run_training(data_args, model_args, train_args)
        seconds = time.perf_counter() - start
        model, tokenizer = result["model"], result["tokenizer"]
        engine = GenerateEngine.from_model(
            model, tokenizer
        )  # the folder's generation config: max_new_tokens=48
        src, tgt = result["source_lang"], result["target_lang"]
        test = result["raw_datasets"]["test"]["translation"]
        sources, references = [ex[src] for ex in test], [ex[tgt] for ex in test]
        hyps = [t.text for t in engine.translate(sources, num_beams=args.num_beams, batch_size=64)]
        exact = sum(h == r.strip() for h, r in zip(hyps, references)) / len(references)
        bleu = corpus_scores(hyps, references, metrics=("bleu",))
        summary.append((name, seconds, exact, bleu["bleu"]))
        print(
            f"{name}: trained in {seconds:.0f}s, test exact match {100 * exact:.1f}%, BLEU {bleu['bleu']:.1f}"
        )
        print(f"  ({bleu['bleu_signature']})")
        for s, h, r in list(zip(sources, hyps, references))[:4]:
            mark = "ok " if h == r.strip() else "err"
            print(f"  [{mark}] {s!r} -> {h!r} (reference {r!r})")
        if args.task == "numbers":  # the README's example: a short input (2% of the training pairs)
            print(
                f"  [README] {README_EXAMPLE!r} -> {engine.translate([README_EXAMPLE], num_beams=5)[0].text!r}"
            )
        print(f"  model folder: {out_root / name / 'final_model'}")
        if model_type == "rnn" or len(names) == 1:
            from ..plotting import attention_matrix, plot_attention

            example = max(sources[:50], key=len)
            matrix, src_tokens, tgt_tokens = attention_matrix(
                model, tokenizer, example, num_beams=args.num_beams
            )
            png = plot_attention(
                matrix, src_tokens, tgt_tokens, out_root / f"attention_{name}.png", title=example
            )
            print(f"  attention heatmap of {example!r}: {png}")
    print("\nmodel          train time  exact match  BLEU")
    for name, seconds, exact, score in summary:
        print(f"{name:<14} {seconds:>8.0f}s  {100 * exact:>10.1f}%  {score:5.1f}")
