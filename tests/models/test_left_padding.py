"""Issue 28, row 2: the Transformer honours a left-padded source (positions counted from the attention mask), in
``forward``, ``generate()`` and the exported ONNX encoder: left padding gives what right padding gives. (The RNN
refuses left padding in one line; CTranslate2 is handed token lists, never a padded batch.)"""

from __future__ import annotations

import pytest
import torch
from hub_server import tiny_model, tiny_tokenizer

SOURCES = ["sieben", "neun tausend neun hundert sieben und achtzig", "ein Hund läuft über die Wiese."]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _encode(tokenizer, side: str):
    tokenizer.padding_side = side
    try:
        return tokenizer(SOURCES, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = "right"


@pytest.mark.parametrize("position_embedding", ["sinusoidal", "learned"])
def test_left_padding_equals_right_padding(tokenizer, position_embedding):
    model = tiny_model("transformer", len(tokenizer), position_embedding=position_embedding).eval()
    with torch.no_grad():  # sharper distributions, so that a wrong position changes the tokens
        model.lm_head.weight.mul_(8.0)
    right, left = _encode(tokenizer, "right"), _encode(tokenizer, "left")
    assert not torch.equal(right["attention_mask"], left["attention_mask"])
    decoder_input_ids = torch.tensor([[1, 5, 9, 7]] * len(SOURCES))
    with torch.no_grad():
        out_right = model(**right, decoder_input_ids=decoder_input_ids)
        out_left = model(**left, decoder_input_ids=decoder_input_ids)
    torch.testing.assert_close(out_left.logits, out_right.logits, atol=1e-5, rtol=1e-4)
    for row, mask in enumerate(right["attention_mask"].bool()):
        n = int(mask.sum())  # the real tokens: first n slots on the right-padded side, last n on the left
        torch.testing.assert_close(
            out_left.encoder_last_hidden_state[row, -n:],
            out_right.encoder_last_hidden_state[row, :n],
            atol=1e-5,
            rtol=1e-4,
        )
    for kwargs in (dict(num_beams=1), dict(num_beams=3)):
        want = model.generate(**right, max_new_tokens=8, do_sample=False, **kwargs)
        got = model.generate(**left, max_new_tokens=8, do_sample=False, **kwargs)
        assert got.tolist() == want.tolist(), kwargs


def test_exported_onnx_encoder_honours_left_padding(tokenizer, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from hf_seq2seq.export import export_onnx
    from hf_seq2seq.hub import save_model_folder

    model = tiny_model("transformer", len(tokenizer)).eval()
    folder = save_model_folder(model, tokenizer, tmp_path / "model")
    out = export_onnx(folder, tmp_path / "onnx")
    session = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    results = {}
    for side in ("right", "left"):
        enc = _encode(tokenizer, side)
        feeds = {name: enc[name].numpy() for name in names}
        results[side] = (torch.from_numpy(session.run(None, feeds)[0]), enc["attention_mask"].bool())
    (right, mask), (left, _) = results["right"], results["left"]
    for row in range(len(SOURCES)):
        n = int(mask[row].sum())
        # cross K of layer 0: (B, H, S, Dh)
        torch.testing.assert_close(left[row, :, -n:], right[row, :, :n], atol=1e-4, rtol=1e-4)
