"""hf_seq2seq.training.guided_alignment (issue 26, item 3): the supervision of a pair from its Pharaoh links, and
the guided-alignment loss (Garg et al. 2019; supervised attention for the RNN): 0 when the attention equals the
supervision, and its gradient reaches only the named head of its layer's cross-attention."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_server import tiny_model, tiny_tokenizer

from hf_seq2seq.inference.alignment import token_word_map, whitespace_spans
from hf_seq2seq.training.guided_alignment import guided_alignment_loss, head_attention, supervision_matrix

SOURCE, TARGET = "drei und zwanzig tausend", "twenty-three thousand"
LINKS = [(0, 0), (2, 0), (3, 1)]  # drei, zwanzig → twenty-three; tausend → thousand


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _forward(model, tokenizer):
    enc = tokenizer([SOURCE], return_offsets_mapping=True, return_tensors="pt")
    lab = tokenizer([TARGET], return_offsets_mapping=True, return_tensors="pt")
    out = model(
        input_ids=enc["input_ids"],
        attention_mask=enc["attention_mask"],
        labels=lab["input_ids"],
        output_attentions=True,
    )
    sup = supervision_matrix(
        LINKS, enc["offset_mapping"][0].tolist(), lab["offset_mapping"][0].tolist(), SOURCE, TARGET
    )
    return out, torch.tensor(sup, dtype=torch.float32)[None]


def test_supervision_rows_spread_each_target_token_over_its_linked_source_tokens(tokenizer):
    enc, lab = tokenizer(SOURCE, return_offsets_mapping=True), tokenizer(TARGET, return_offsets_mapping=True)
    sup = supervision_matrix(LINKS, enc["offset_mapping"], lab["offset_mapping"], SOURCE, TARGET)
    assert sup.shape == (len(lab["input_ids"]), len(enc["input_ids"]))
    sums = sup.sum(axis=1)
    assert np.allclose(sums[:-1], 1.0) and sums[-1] == 0.0  # every token of a linked word; </s> none
    words = token_word_map(enc["offset_mapping"], whitespace_spans(SOURCE))
    assert set(np.nonzero(sup[0])[0]) == {s for s, w in enumerate(words) if w in (0, 2)}  # drei, zwanzig
    assert set(np.nonzero(sup[-2])[0]) == {s for s, w in enumerate(words) if w == 3}  # thousand ← tausend
    assert supervision_matrix([], enc["offset_mapping"], lab["offset_mapping"], SOURCE, TARGET).sum() == 0.0


def test_loss_is_zero_when_attention_equals_supervision_and_positive_otherwise():
    rng = np.random.default_rng(0)
    sup = rng.dirichlet(np.ones(5), size=(2, 4))
    sup[0, 3] = 0.0  # an unsupervised row (</s>, padding): not counted, whatever the attention
    attention = torch.tensor(sup, dtype=torch.float32)
    attention[0, 3] = torch.tensor([0.2] * 5)
    loss, rows = guided_alignment_loss(attention, torch.tensor(sup))
    assert float(loss) == pytest.approx(0.0, abs=1e-6) and int(rows) == 7
    other = torch.tensor(rng.dirichlet(np.ones(5), size=(2, 4)), dtype=torch.float32)
    loss, _ = guided_alignment_loss(other, torch.tensor(sup))
    p, a = sup[sup.sum(-1) > 0], other.numpy()[sup.sum(-1) > 0]
    assert (
        float(loss) == pytest.approx(float((p * (np.log(p) - np.log(a))).sum()), rel=1e-4) and float(loss) > 0
    )
    with pytest.raises(ValueError, match="attention has shape"):
        guided_alignment_loss(other[:, :2], torch.tensor(sup))


def test_the_gradient_moves_only_the_named_head(tokenizer):
    model = tiny_model("transformer", len(tokenizer), decoder_layers=2, num_attention_heads=2).train()
    out, sup = _forward(model, tokenizer)
    layer, head = 0, 1
    attention = head_attention(out.cross_attentions, layer, head)
    loss, rows = guided_alignment_loss(attention, sup)
    assert float(loss.detach()) > 0 and int(rows) == sup.shape[1] - 1
    loss.backward()
    layers = model.get_decoder().layers
    cross = layers[layer].cross_attn
    dh, d = cross.head_dim, model.config.d_model
    q, kv = cross.q_proj.weight.grad, cross.kv_proj.weight.grad
    named, others = (
        slice(head * dh, (head + 1) * dh),
        [slice(h * dh, (h + 1) * dh) for h in range(2) if h != head],
    )
    assert q[named].abs().sum() > 0 and kv[named].abs().sum() > 0  # the named head's queries and keys
    for rows_ in others:  # the other heads' queries and keys
        assert q[rows_].abs().sum() == 0 and kv[rows_].abs().sum() == 0
    assert kv[d:].abs().sum() == 0  # no value, no output projection: the loss reads attention weights only
    assert cross.out_proj.weight.grad is None or cross.out_proj.weight.grad.abs().sum() == 0
    for p in layers[1].parameters():  # a layer above the named one takes no part
        assert p.grad is None or p.grad.abs().sum() == 0
    # the supervision equal to the head's own attention: loss 0 (rows where the supervision is given)
    model.zero_grad()
    out, _ = _forward(model, tokenizer)
    own = head_attention(out.cross_attentions, layer, head).detach() * (sup.sum(-1, keepdim=True) > 0)
    zero, _ = guided_alignment_loss(head_attention(out.cross_attentions, layer, head), own)
    assert float(zero.detach()) == pytest.approx(0.0, abs=1e-5)


def test_rnn_attention_is_supervised_and_a_missing_head_is_one_line(tokenizer):
    model = tiny_model("rnn", len(tokenizer)).train()
    out, sup = _forward(model, tokenizer)
    loss, _ = guided_alignment_loss(head_attention(out.cross_attentions, 0, 0), sup)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.get_decoder().parameters())
    with pytest.raises(
        ValueError, match=r"^--alignment_heads 1 is not valid: the model has 1 attention head"
    ):
        head_attention(out.cross_attentions, 0, 1)
    with pytest.raises(
        ValueError, match=r"^--alignment_layer 1 is out of range: the model has 1 decoder layer"
    ):
        head_attention(out.cross_attentions, 1, 0)


# ------------------------------------------------------------------------------------------------ training
def _pairs(n: int = 500):
    from hf_seq2seq.tasks import load_task_dataset

    return load_task_dataset("numbers", n, 20, 20, seed=42)["train"]["translation"]


def _monotone_links(pairs) -> str:
    """Supervision a model would not find alone: source word i ↔ target word i (within both lengths)."""
    lines = []
    for p in pairs:
        n = min(len(p["de"].split()), len(p["en"].split()))
        lines.append(" ".join(f"{i}-{i}" for i in range(n)))
    return "".join(line + "\n" for line in lines)


def _run(tmp_path, name: str, extra: list[str]) -> int:
    from hf_seq2seq.commands.train import train_main

    root = str(Path(__file__).resolve().parents[2])
    args = [
        "--config",
        f"{root}/configs/test_tiny.yaml",
        "--seed",
        "42",
        "--output_dir",
        str(tmp_path / name),
    ]
    return train_main([*args, "--max_steps", "30", "--eval_steps", "30", *extra])


def _head_kl(folder, tokenizer_pairs, supervision: str) -> float:
    from hf_seq2seq.inference import load_model
    from hf_seq2seq.inference.alignment import parse_pharaoh

    model, tok = load_model(folder, "cpu", cpu_kernels=False)
    total = 0.0
    for pair, line in list(zip(tokenizer_pairs, supervision.splitlines(), strict=True))[:50]:
        enc = tok([pair["de"]], return_offsets_mapping=True, return_tensors="pt")
        lab = tok([pair["en"]], return_offsets_mapping=True, return_tensors="pt")
        with torch.no_grad():
            out = model(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=lab["input_ids"],
                output_attentions=True,
            )  # fmt: skip
        sup = supervision_matrix(
            parse_pharaoh(line), enc["offset_mapping"][0].tolist(), lab["offset_mapping"][0].tolist(), pair["de"],
            pair["en"],
        )  # fmt: skip
        kl, _ = guided_alignment_loss(
            head_attention(out.cross_attentions, -1, 0), torch.tensor(sup)[None].float()
        )
        total += float(kl)
    return total


@pytest.mark.slow
def test_training_with_supervision_pulls_the_named_head_toward_it(tmp_path):
    """30 steps of the tiny recipe with and without --alignment_supervision (same seed): the supervised head ends
    closer to the supervision (its guided-alignment loss on the training pairs is lower)."""
    pairs = _pairs()
    path = tmp_path / "links.txt"
    path.write_text(_monotone_links(pairs), encoding="utf-8")
    assert _run(tmp_path, "plain", []) == 0
    guided = [
        "--alignment_supervision",
        str(path),
        "--alignment_loss_weight",
        "1.0",
        "--alignment_layer",
        "-1",
    ]
    assert _run(tmp_path, "guided", guided) == 0
    text = path.read_text(encoding="utf-8")
    plain_kl = _head_kl(tmp_path / "plain" / "final_model", pairs, text)
    guided_kl = _head_kl(tmp_path / "guided" / "final_model", pairs, text)
    assert guided_kl < 0.8 * plain_kl
    # the saved model names its supervised head: translate --alignments and align default to it
    config = json.loads((tmp_path / "guided" / "final_model" / "config.json").read_text(encoding="utf-8"))
    assert (config["alignment_layer"], config["alignment_heads"]) == (-1, [0])


def test_a_bad_supervision_file_is_one_line_naming_file_and_line(tmp_path, capsys):
    pairs = _pairs()
    path = tmp_path / "links.txt"
    path.write_text("0-0\n", encoding="utf-8")
    assert _run(tmp_path, "short", ["--alignment_supervision", str(path)]) != 0
    err = capsys.readouterr().err
    assert f"{path}: 1 line(s) of alignments, but there are 500 sentence pairs (one line each)" in err
    lines = _monotone_links(pairs).splitlines()
    lines[6] = "0-0 0-99"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    assert _run(tmp_path, "range", ["--alignment_supervision", str(path)]) != 0
    assert f"{path}:7: link 0-99: target word 99 is out of range" in capsys.readouterr().err
    assert (
        _run(tmp_path, "weight", ["--alignment_supervision", str(path), "--alignment_loss_weight", "0"]) != 0
    )
    assert "--alignment_loss_weight=0.0 is invalid; it must be > 0" in capsys.readouterr().err


@pytest.mark.slow
def test_a_guided_run_resumed_from_a_checkpoint_equals_the_uninterrupted_run(tmp_path):
    """Checkpoints and --resume behave as without supervision: the same per-step losses (which include the
    alignment term) and the same final weights."""
    from safetensors.torch import load_file

    path = tmp_path / "links.txt"
    path.write_text(_monotone_links(_pairs()), encoding="utf-8")
    guided = ["--alignment_supervision", str(path), "--alignment_loss_weight", "0.5", "--max_steps", "12"]
    assert _run(tmp_path, "full", guided) == 0
    assert _run(tmp_path, "resumed", [*guided, "--stop_after_step", "6"]) == 0
    assert _run(tmp_path, "resumed", [*guided, "--resume"]) == 0

    def losses(name):
        history = json.loads((tmp_path / name / "training_history.json").read_text(encoding="utf-8"))
        return [(h["step"], h["loss"]) for h in history if "loss" in h]

    full, resumed = losses("full"), losses("resumed")
    assert [s for s, _ in resumed] == [s for s, _ in full] == list(range(1, 13))
    for (_, a), (_, b) in zip(full, resumed, strict=True):
        assert b == pytest.approx(a, rel=1e-6, abs=1e-7)
    a = load_file(str(tmp_path / "full" / "final_model" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "final_model" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_two_processes_with_supervision_match_one_process(tmp_path):
    """Multi-process runs behave as without supervision: 2 processes x 1 micro-batch give the losses (alignment
    term included) and weights of 1 process x 2 accumulation steps."""
    import os
    import socket
    import subprocess
    import sys

    from safetensors.torch import load_file

    root = Path(__file__).resolve().parents[2]
    path = tmp_path / "links.txt"
    path.write_text(_monotone_links(_pairs()), encoding="utf-8")
    args = [
        str(root / "scripts" / "train.py"),
        "--config",
        str(root / "configs" / "test_tiny.yaml"),
        "--seed",
        "42",
    ]
    args += ["--alignment_supervision", str(path), "--alignment_loss_weight", "0.5", "--max_steps", "6"]
    args += ["--eval_steps", "100", "--disable_progress_bar"]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", ACCELERATE_USE_CPU="1")
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    accelerate = [
        str(Path(sys.executable).with_name("accelerate")),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
    ]
    accelerate += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    accelerate += ["--main_process_port", str(port)]
    runs = {
        "one": [
            sys.executable,
            *args,
            "--gradient_accumulation_steps",
            "2",
            "--output_dir",
            str(tmp_path / "one"),
        ],
        "two": [*accelerate, *args, "--output_dir", str(tmp_path / "two")],
    }
    for name, cmd in runs.items():
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"

    def losses(name):
        history = json.loads((tmp_path / name / "training_history.json").read_text(encoding="utf-8"))
        return [h["loss"] for h in history if "loss" in h]

    assert len(losses("two")) == 6
    for a, b in zip(losses("one"), losses("two"), strict=True):
        assert b == pytest.approx(a, rel=1e-4)
    a = load_file(str(tmp_path / "one" / "final_model" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "final_model" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-4)
