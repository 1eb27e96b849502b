"""Issue 28, row 15: with ``--disable_progress_bar`` (no bar), training logs one line every ``--logging_steps``
instead of nothing until the first validation."""

from __future__ import annotations

import json
import logging

from hf_seq2seq.training import DataArguments, ModelArguments, TrainArguments, run_training


def test_disable_progress_bar_logs_a_line_every_logging_steps(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hf_seq2seq.training")
    run_training(
        DataArguments(
            task="numbers", task_num_train=200, task_num_validation=8, task_num_test=8, vocab_size=120
        ),
        ModelArguments(model_type="rnn", model_config=json.dumps({"embedding_size": 8, "hidden_size": 8})),
        TrainArguments(
            output_dir=str(tmp_path / "out"),
            max_steps=6,
            eval_steps=6,
            logging_steps=3,
            max_new_tokens=2,
            num_beams=1,
            log_with="none",
            disable_progress_bar=True,
        ),
    )
    words = [r.getMessage().split() for r in caplog.records]
    steps = [w[1] for w in words if len(w) > 2 and w[0] == "step" and w[2] == "loss"]
    assert steps == ["1/6", "3/6", "6/6"], steps


def test_a_vocab_size_below_what_the_text_needs_is_one_log_line(tmp_path, caplog):
    """Issue 28, row 10: ``--vocab_size 5`` becomes the tokenizer's real size (every character of the corpus and the
    special tokens); training says so in one line naming the option and the size the model got, not as a
    UserWarning with a source line."""
    import re
    import warnings

    caplog.set_level(logging.INFO, logger="hf_seq2seq.training")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_training(
            DataArguments(task="numbers", task_num_train=100, task_num_validation=4, task_num_test=4, vocab_size=5),
            ModelArguments(model_type="rnn", model_config=json.dumps({"embedding_size": 8, "hidden_size": 8})),
            TrainArguments(
                output_dir=str(tmp_path / "out"), max_steps=1, eval_steps=1, max_new_tokens=2, num_beams=1,
                log_with="none", disable_progress_bar=True,
            ),
        )  # fmt: skip
    assert not [w for w in caught if "vocab_size" in str(w.message)]
    said = [r for r in caplog.records if "--vocab_size" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING, [r.getMessage() for r in said]
    match = re.match(r"--vocab_size 5 is below .* have (\d+) entries$", said[0].getMessage())
    assert match and int(match.group(1)) == len(result["tokenizer"]) == result["model"].config.vocab_size > 5
