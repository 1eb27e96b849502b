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
