"""The package's CPU inference kernels (``hf_seq2seq.inference.cpu_kernels``): the optimised model computes the
plain model's function (logits close, greedy and beam tokens equal) for every family, saves the same files, is a
no-op where it must be, and undoes itself; the kernels themselves equal the ops they replace; the loaders apply it.
That the model code shipped to the Hub carries none of them is checked from the source text, on every torch build,
by tests/project/test_structure.py."""

from __future__ import annotations

import copy
import itertools
from functools import partial

import pytest
import torch

from hf_seq2seq import (
    ImageCaptioningConfig,
    ImageCaptioningForConditionalGeneration,
    RNNSeq2SeqConfig,
    RNNSeq2SeqForConditionalGeneration,
    TransformerSeq2SeqConfig,
    TransformerSeq2SeqForConditionalGeneration,
)
from hf_seq2seq.inference import cpu_kernels
from hf_seq2seq.inference.cpu_kernels import (
    _RELAY_MIN_WEIGHT,
    cpu_inference,
    fast_linear,
    fast_tanh,
    optimize_for_cpu_inference,
    restore_plain_modules,
)

pytestmark = pytest.mark.skipif(not cpu_kernels.onednn_available(), reason="torch without oneDNN: a no-op")

# V 2100 x H 64: the LM head (and the Transformer's FFN) are above the re-layout size, so every kernel path runs
VOCAB = 2100
RNN_VARIANTS = {
    "gru-bahdanau-bi": dict(cell="gru", attention="bahdanau", bidirectional_encoder=True),
    "lstm-general-feed": dict(
        cell="lstm", attention="general", input_feeding=True, bidirectional_encoder=False
    ),
    "lstm-concat": dict(cell="lstm", attention="concat", bidirectional_encoder=True),
    "gru-dot-proj": dict(cell="gru", attention="dot", embedding_size=24, tie_word_embeddings=True),
    "lstm-none": dict(cell="lstm", attention="none", bidirectional_encoder=True),
}


def rnn_model(seed: int = 0, **overrides):
    kw = dict(
        vocab_size=VOCAB, embedding_size=32, hidden_size=64, encoder_layers=2, decoder_layers=2, dropout=0.0
    )
    torch.manual_seed(seed)
    model = RNNSeq2SeqForConditionalGeneration(RNNSeq2SeqConfig(**{**kw, **overrides}))
    with torch.no_grad():  # sharper distributions: decoding paths differ between tokens and beams
        model.lm_head.weight.mul_(4.0)
    return model.eval()


def transformer_model(seed: int = 0):
    torch.manual_seed(seed)
    config = TransformerSeq2SeqConfig(
        vocab_size=VOCAB, d_model=64, num_attention_heads=4, ffn_dim=2048, encoder_layers=2, decoder_layers=2,
        dropout=0.0, init_std=0.1,
    )  # fmt: skip
    return TransformerSeq2SeqForConditionalGeneration(config).eval()


def captioning_model(seed: int = 0, vocab_size: int = VOCAB):
    torch.manual_seed(seed)
    config = ImageCaptioningConfig(
        image_size=16, encoder_channels=[4, 8], vocab_size=vocab_size, embedding_size=16, hidden_size=64,
        dropout=0.0, doubly_stochastic_weight=0.0,
    )  # fmt: skip
    model = ImageCaptioningForConditionalGeneration(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)
    return model.eval()


MODELS = {
    **{f"rnn-{name}": partial(rnn_model, **kw) for name, kw in RNN_VARIANTS.items()},
    "transformer": transformer_model,
    "captioning": captioning_model,
}


def source(name: str, batch: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(batch)
    if name == "captioning":
        return {"pixel_values": torch.randn(batch, 3, 16, 16, generator=g) * 2}
    lengths = [9, 5, 7, 3][:batch]
    ids = torch.randint(4, VOCAB, (batch, max(lengths)), generator=g)
    mask = (torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]).long()
    ids = ids.masked_fill(mask == 0, 0)
    ids[torch.arange(batch), torch.tensor(lengths) - 1] = 2
    return {"input_ids": ids, "attention_mask": mask}


def optimized(model):
    fast = optimize_for_cpu_inference(copy.deepcopy(model))
    assert any(type(m).__name__.startswith("CPUInference") for m in fast.modules())
    return fast


def teacher_forced_and_steps(model, inputs: dict, dec: torch.Tensor, grad: bool = False):
    """Full teacher-forced logits and the same positions decoded one cached step at a time."""
    with torch.set_grad_enabled(grad):
        full = model(**inputs, decoder_input_ids=dec, use_cache=False).logits
        cache, steps = None, []
        for t in range(dec.shape[1]):
            out = model(**inputs, decoder_input_ids=dec[:, t : t + 1], cache=cache, use_cache=True)
            cache = out.cache
            steps.append(out.logits)
    return full.detach(), torch.cat(steps, dim=1).detach()


close = partial(torch.testing.assert_close, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------ model == optimised
@pytest.mark.parametrize("batch", [1, 3], ids=["one-row", "rows"])
@pytest.mark.parametrize("name", list(MODELS))
def test_optimized_model_computes_the_plain_function(name, batch):
    """Logits (teacher-forced and cached steps) close, greedy and beam-4 tokens equal; batch 1 takes the one-row
    kernels (gemv over W^T), batch 3 oneDNN's."""
    plain = MODELS[name]()
    fast = optimized(plain)
    inputs = source(name, batch)
    dec = torch.randint(3, VOCAB, (batch, 5), generator=torch.Generator().manual_seed(5))
    dec[:, 0] = plain.config.decoder_start_token_id
    for a, b in zip(
        teacher_forced_and_steps(fast, inputs, dec), teacher_forced_and_steps(plain, inputs, dec)
    ):
        close(a, b)
    with torch.no_grad():
        for beams in (1, 4):
            opts = dict(num_beams=beams, max_new_tokens=8, min_new_tokens=8, do_sample=False)
            assert torch.equal(fast.generate(**inputs, **opts), plain.generate(**inputs, **opts)), beams


@pytest.mark.parametrize("name", ["rnn-gru-bahdanau-bi", "rnn-lstm-general-feed", "transformer"])
def test_with_autograd_the_optimized_model_runs_the_plain_ops_and_trains(name):
    """Recording gradients (training, or a step with grad) takes the plain forward: same logits and gradients."""
    plain = MODELS[name]()
    fast = optimized(plain)
    inputs = source(name, 2)
    labels = torch.randint(3, VOCAB, (2, 4), generator=torch.Generator().manual_seed(1))
    for model in (plain, fast):
        model.train()
        model.zero_grad()
        model(**inputs, labels=labels).loss.backward()
    close(
        torch.cat([p.grad.flatten() for p in fast.parameters() if p.grad is not None]),
        torch.cat([p.grad.flatten() for p in plain.parameters() if p.grad is not None]),
    )


@pytest.mark.parametrize("name", ["rnn-gru-bahdanau-bi", "rnn-lstm-concat", "transformer", "captioning"])
def test_save_after_optimize_writes_the_same_files(name, tmp_path):
    plain = MODELS[name]()
    fast = optimized(plain)
    plain.save_pretrained(tmp_path / "plain")
    fast.save_pretrained(tmp_path / "fast")
    files = sorted(p.name for p in (tmp_path / "plain").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "fast").iterdir())
    assert "model.safetensors" in files and any(f.startswith("modeling_") for f in files)
    for file in files:
        assert (tmp_path / "plain" / file).read_bytes() == (tmp_path / "fast" / file).read_bytes(), file
    assert fast.state_dict().keys() == plain.state_dict().keys()


def test_no_op_in_training_mode_off_fp32_and_without_onednn(monkeypatch):
    def classes(model):
        return [type(m) for m in model.modules()]

    model = rnn_model().train()
    before = classes(model)
    assert optimize_for_cpu_inference(model) is model and classes(model) == before
    model.eval()
    double = copy.deepcopy(model).double()
    assert classes(optimize_for_cpu_inference(double)) == before
    monkeypatch.setattr(cpu_kernels, "_onednn", False)  # as on a torch without torch.ops.mkldnn's ops
    assert classes(optimize_for_cpu_inference(model)) == before
    monkeypatch.setattr(cpu_kernels, "_onednn", None)
    assert cpu_kernels.onednn_available()  # the guarded lookup finds them here


def test_idempotent_and_reversible():
    plain = rnn_model(**RNN_VARIANTS["gru-bahdanau-bi"])
    fast = optimized(plain)
    swapped = [type(m) for m in fast.modules()]
    assert [type(m) for m in optimize_for_cpu_inference(fast).modules()] == swapped  # twice = once
    restore_plain_modules(fast)
    assert [type(m) for m in fast.modules()] == [type(m) for m in plain.modules()]
    inputs = source("rnn", 2)
    with torch.no_grad():
        assert torch.equal(fast(**inputs, decoder_input_ids=inputs["input_ids"]).logits,
                           plain(**inputs, decoder_input_ids=inputs["input_ids"]).logits)  # fmt: skip


def test_hooked_and_subclassed_modules_keep_their_forward():
    """A module whose forward was replaced on the instance (accelerate's offloading) or a subclass of nn.Linear
    (quantised, adapter) is left alone; forward hooks still see the call of a swapped module."""
    model = rnn_model(**RNN_VARIANTS["gru-bahdanau-bi"])

    class MyLinear(torch.nn.Linear):
        pass

    model.lm_head.__class__ = MyLinear
    readout = model.model.decoder.readout
    readout.forward = partial(torch.nn.Linear.forward, readout)
    calls = []
    model.model.decoder.score.query_proj.register_forward_hook(lambda *_: calls.append(1))
    optimize_for_cpu_inference(model)
    assert type(model.lm_head) is MyLinear and type(readout) is torch.nn.Linear
    assert type(model.model.decoder.score.query_proj).__name__ == "CPUInferenceLinear"
    with torch.no_grad():
        model.generate(**source("rnn", 1), max_new_tokens=2)
    assert calls


# ------------------------------------------------------------------------------------------------ kernels
def test_kernels_compute_the_same_function():
    x, w, b = torch.randn(5, 3, 6), torch.randn(4, 6), torch.randn(4)  # 15 rows: oneDNN, tanh fused
    with torch.no_grad():
        assert cpu_inference(x) and not cpu_inference(x.double())
        close(fast_linear(x, w, b), torch.nn.functional.linear(x, w, b))
        close(fast_linear(x, w, None, "tanh"), torch.tanh(torch.nn.functional.linear(x, w)))
        big = torch.randn(8192) * 10  # above the size where the sigmoid form starts
        torch.testing.assert_close(fast_tanh(big), torch.tanh(big), atol=1e-6, rtol=0)
    assert not cpu_inference(x)  # autograd on: the plain ops


@pytest.mark.parametrize("rows", [1, 5])
def test_relaid_weights_follow_updates(rows):
    """Weights above the re-layout size are laid out once for the kernel (W^T for one row, oneDNN's packing for
    more) and kept: an in-place update, a new ``.data`` and another weight of the same shape must all be seen."""
    layer = torch.nn.Linear(400, _RELAY_MIN_WEIGHT // 400 + 8)
    x = torch.randn(rows, 400)
    near = partial(
        torch.testing.assert_close, atol=1e-4, rtol=1e-4
    )  # rounding; a stale layout is off by O(1)
    with torch.no_grad():
        for _ in range(2):  # the second call reads the kept layout
            near(fast_linear(x, layer.weight, layer.bias), layer(x))
        near(fast_linear(x[None], layer.weight, None, "tanh"), torch.tanh(x @ layer.weight.T)[None])
        layer.weight.mul_(-2.0)  # in place: the version counter moves
        near(fast_linear(x, layer.weight, layer.bias), layer(x))
        layer.weight.data = torch.randn_like(layer.weight)  # new storage
        near(fast_linear(x, layer.weight, layer.bias), layer(x))
        other = torch.randn_like(layer.weight)
        near(fast_linear(x, other), x @ other.T)


@pytest.mark.parametrize("cell, layers", list(itertools.product(["gru", "lstm"], [1, 3])))
def test_one_step_rnn_call_equals_the_torch_module(cell, layers):
    rnn = getattr(torch.nn, cell.upper())(12, 16, num_layers=layers, batch_first=True).eval()
    fast = optimize_for_cpu_inference(copy.deepcopy(rnn))
    x = torch.randn(3, 1, 12)
    hx = torch.randn(layers, 3, 16)
    hx = (hx, torch.randn(layers, 3, 16)) if cell == "lstm" else hx
    with torch.no_grad():
        (out_a, state_a), (out_b, state_b) = fast(x, hx), rnn(x, hx)
    close(out_a, out_b)
    for a, b in zip(state_a if cell == "lstm" else [state_a], state_b if cell == "lstm" else [state_b]):
        close(a, b)


def test_load_captioner_applies_the_kernels_and_captions_the_same(tmp_path, tokenizer):
    # load_captioner, like load_model, optimises a model it loads on CPU (cpu_kernels=True, the default): caption and
    # plot-attention --image keep the speed the captioning decoder had while the kernels were inline
    import numpy as np
    from PIL import Image

    from hf_seq2seq.hub import save_captioning_folder
    from hf_seq2seq.inference import load_captioner
    from hf_seq2seq.models.image_processing_rnn_captioning import ImageCaptioningImageProcessor

    processor = ImageCaptioningImageProcessor.for_image_size(16)
    folder = save_captioning_folder(
        captioning_model(vocab_size=len(tokenizer)), tokenizer, processor, tmp_path / "captioner"
    )
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)) for _ in range(3)]
    captions = {}
    for kernels in (True, False):
        model, processor, tok = load_captioner(folder, "cpu", cpu_kernels=kernels)
        swapped = {type(m).__name__ for m in model.modules() if type(m).__name__.startswith("CPUInference")}
        assert swapped >= ({"CPUInferenceLinear", "CPUInferenceLSTM"} if kernels else set()), swapped
        assert bool(swapped) == kernels
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            for beams in (1, 3):
                ids = model.generate(pixel_values=pixels, num_beams=beams, max_new_tokens=8)
                captions[kernels, beams] = (ids.tolist(), tok.batch_decode(ids, skip_special_tokens=True))
    for beams in (1, 3):
        assert captions[True, beams] == captions[False, beams], beams
    assert any(text.strip() for text in captions[True, 1][1])
