"""JoeyNMT's own answers for a trained model directory, computed with JoeyNMT's code in JoeyNMT's virtual environment
(tests/convert/test_convert_joeynmt.py runs it there; this project's venv never imports joeynmt).

    python _joeynmt_reference.py MODEL_DIR SOURCE_FILE TARGET_FILE OUT.pt

Writes ``OUT.pt`` (``torch.save`` of plain tensors and lists): JoeyNMT's source and target ids of every line, the
teacher-forced log-probabilities (gold-token ones for all lines, full distributions for the first lines) and the
greedy and beam-5 outputs (ids, cut after the first eos).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from joeynmt.config import _check_special_symbols, load_config
from joeynmt.decoders import TransformerDecoder
from joeynmt.helpers import load_checkpoint
from joeynmt.model import build_model
from joeynmt.search import beam_search, recurrent_greedy, transformer_greedy
from joeynmt.tokenizers import build_tokenizer
from joeynmt.vocabulary import build_vocab

FULL_LINES = 10  # full (T, V) distributions are kept for this many lines
MAX_OUTPUT_LENGTH = 40


def _cut(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos) + 1] if eos in row else row


def main(model_dir: str, source: str, target: str, out: str) -> None:
    torch.set_num_threads(1)
    model_dir_path = Path(model_dir)
    cfg = load_config(model_dir_path / "config.yaml")
    data = cfg["data"]
    data["src"].pop("voc_file", None)  # the vocabularies the run saved beside the checkpoint
    data["trg"].pop("voc_file", None)
    data["special_symbols"] = SimpleNamespace(**_check_special_symbols(data.get("special_symbols", {})))
    src_vocab, trg_vocab = build_vocab(data, model_dir=model_dir_path)
    model = build_model(cfg["model"], src_vocab=src_vocab, trg_vocab=trg_vocab)
    checkpoint = model_dir_path / "best.ckpt"
    if not checkpoint.is_file():
        checkpoint = model_dir_path / "latest.ckpt"
    model.load_state_dict(load_checkpoint(checkpoint, map_location="cpu")["model_state"])
    model.eval()
    tokenizers = build_tokenizer(data)
    src_tok, trg_tok = tokenizers[data["src"]["lang"]], tokenizers[data["trg"]["lang"]]
    sources = Path(source).read_text(encoding="utf-8").splitlines()
    targets = Path(target).read_text(encoding="utf-8").splitlines()
    # JoeyNMT's recurrent encoder packs its batch: sources sorted longest first (undone before saving)
    order = sorted(range(len(sources)), key=lambda i: -len(src_tok(src_tok.pre_process(sources[i]))))
    restore = torch.argsort(torch.tensor(order))
    src_tokens = [src_tok(src_tok.pre_process(sources[i])) for i in order]
    trg_tokens = [trg_tok(trg_tok.pre_process(targets[i])) for i in order]
    src, src_length, _ = src_vocab.sentences_to_ids(src_tokens, bos=False, eos=True)
    trg, trg_length, _ = trg_vocab.sentences_to_ids(trg_tokens, bos=True, eos=True)
    src, trg = torch.tensor(src), torch.tensor(trg)
    src_length = torch.tensor(src_length)
    pad = trg_vocab.pad_index
    src_mask = (src != pad).unsqueeze(1)
    trg_input = trg[:, :-1]
    trg_mask = (trg_input != pad).unsqueeze(1)
    with torch.no_grad():
        logits, _, _, _ = model._encode_decode(
            src=src, trg_input=trg_input, src_mask=src_mask, src_length=src_length, trg_mask=trg_mask
        )
        log_probs = F.log_softmax(logits, dim=-1)
        gold = log_probs.gather(-1, trg[:, 1:].unsqueeze(-1)).squeeze(-1)
        encoder_output, encoder_hidden = model._encode(src=src, src_length=src_length, src_mask=src_mask)
        search = transformer_greedy if isinstance(model.decoder, TransformerDecoder) else recurrent_greedy
        greedy, _, _ = search(src_mask, MAX_OUTPUT_LENGTH, model, encoder_output, encoder_hidden)
        beam, _, _ = beam_search(
            model, 5, encoder_output, encoder_hidden, src_mask, MAX_OUTPUT_LENGTH, alpha=-1, n_best=1
        )
    eos = trg_vocab.eos_index

    def unsort(rows: list) -> list:
        return [rows[i] for i in restore.tolist()]

    torch.save(
        {
            "src_ids": unsort([row[:n] for row, n in zip(src.tolist(), src_length.tolist())]),
            "trg_ids": unsort([row[:n] for row, n in zip(trg.tolist(), trg_length)]),
            "gold_log_probs": gold[restore],
            "label_mask": (trg[:, 1:] != pad)[restore],
            "full_log_probs": log_probs[restore][:FULL_LINES],
            "greedy": unsort([_cut(row, eos) for row in greedy.tolist()]),
            "beam5": unsort([_cut(row, eos) for row in beam.tolist()]),
        },
        out,
    )


if __name__ == "__main__":
    main(*sys.argv[1:5])
