"""eole's own answers for a trained model directory, computed with eole's code in eole's virtual environment
(tests/convert/test_convert_eole.py runs it there; this project's venv never imports eole).

    python _eole_reference.py MODEL_DIR SOURCE_FILE TARGET_FILE OUT.pt

Writes ``OUT.pt`` (``torch.save`` of plain tensors and lists): eole's source and target ids of every line, the
teacher-forced log-probabilities of eole's model (gold-token ones for all lines, full distributions for the first
lines) and the greedy and beam-5 outputs of eole's own inference engine (``length_penalty: none``, and beam 5 with
eole's default ``avg`` and with ``wu``, alpha 1), as ids ending in eos. An RNN (an ``rnn`` decoder) is run one sentence at a
time, for the forward pass and the search: eole's RNN encoder does not pack, so padding in a batch changes a
sentence's encoding.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from eole.config.run import PredictConfig
from eole.inference_engine import InferenceEnginePY

FULL_LINES = 10  # full (T, V) distributions are kept for this many lines
MAX_OUTPUT_LENGTH = 40


def _engine(
    model_dir: str, beam_size: int, batch_size: int, length_penalty: str = "none"
) -> InferenceEnginePY:
    config = PredictConfig(
        model_path=model_dir,
        src="unused",
        beam_size=beam_size,
        max_length=MAX_OUTPUT_LENGTH,
        length_penalty=length_penalty,
        batch_size=batch_size,
        batch_type="sents",
        world_size=1,
        gpu_ranks=[],
        seed=1,
    )
    return InferenceEnginePY(config)


def main(model_dir: str, source: str, target: str, out: str) -> None:
    torch.set_num_threads(1)
    sources = Path(source).read_text(encoding="utf-8").splitlines()
    targets = Path(target).read_text(encoding="utf-8").splitlines()
    section = json.loads((Path(model_dir) / "config.json").read_text())["model"]
    # architecture rnn, or custom with an rnn decoder (eole's way to a brnn encoder)
    rnn = (section.get("decoder") or {}).get("decoder_type") == "rnn"
    batch_size = 1 if rnn else 200  # eole's RNN encoder runs over padding: one sentence at a time
    engine = _engine(model_dir, beam_size=1, batch_size=batch_size)
    vocabs, model = engine.vocabs, engine.predictor.model
    src_vocab, tgt_vocab = vocabs["src"], vocabs["tgt"]
    specials = vocabs["specials"]
    pad = src_vocab.tokens_to_ids[specials["pad_token"]]
    eos = tgt_vocab.tokens_to_ids[specials["eos_token"]]
    start = tgt_vocab.tokens_to_ids[vocabs["decoder_start_token"]]
    # what eole's Numericalizer does for an encoder-decoder: the source as split at spaces, no eos; the target
    # after the decoder start token, ending in eos
    src_ids = [src_vocab(line.strip().split(" ")) for line in sources]
    trg_ids = [[start, *tgt_vocab(line.strip().split(" ")), eos] for line in targets]

    def padded(rows: list) -> torch.Tensor:
        width = max(map(len, rows))
        return torch.tensor([row + [pad] * (width - len(row)) for row in rows])

    src, trg = padded(src_ids), padded(trg_ids)
    src_len = torch.tensor([len(row) for row in src_ids])
    with torch.no_grad():
        if rnn:  # (N, T, V) assembled from one forward pass per sentence, zeros past each target's end
            log_probs = torch.zeros(len(src_ids), trg.shape[1] - 1, len(tgt_vocab))
            for i, (source_ids, target_ids) in enumerate(zip(src_ids, trg_ids)):
                dec_out = model(
                    torch.tensor([source_ids]), torch.tensor([target_ids]), src_len[i : i + 1]
                ).dec_out
                log_probs[i, : len(target_ids) - 1] = F.log_softmax(model.generator(dec_out).float(), dim=-1)[
                    0
                ]
        else:
            dec_out = model(src, trg, src_len).dec_out
            log_probs = F.log_softmax(model.generator(dec_out).float(), dim=-1)
    gold = log_probs.gather(-1, trg[:, 1:].unsqueeze(-1)).squeeze(-1)

    def search(engine: InferenceEnginePY) -> list:
        _, _, predictions = engine.infer_list(sources)
        return [[*tgt_vocab(best[0].split(" ")), eos] if best[0] else [eos] for best in predictions]

    greedy = search(engine)
    beam5 = search(_engine(model_dir, beam_size=5, batch_size=batch_size))
    beam5_avg = search(_engine(model_dir, beam_size=5, batch_size=batch_size, length_penalty="avg"))
    beam5_wu = search(_engine(model_dir, beam_size=5, batch_size=batch_size, length_penalty="wu"))
    torch.save(
        {
            "src_ids": src_ids,
            "trg_ids": trg_ids,
            "gold_log_probs": gold,
            "label_mask": trg[:, 1:] != pad,
            "full_log_probs": log_probs[:FULL_LINES],
            "greedy": greedy,
            "beam5": beam5,
            "beam5_avg": beam5_avg,
            "beam5_wu": beam5_wu,
        },
        out,
    )


if __name__ == "__main__":
    main(*sys.argv[1:5])
