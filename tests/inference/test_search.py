"""hf_seq2seq.inference.search: eole's beam search (``length_penalty: avg`` and ``wu``) as ``generate()`` decoding methods, on
tiny random models of both families. Equality with eole's own search is proven on trained models in
tests/convert/test_convert_eole.py; here its invariants: cached == uncached, a padded batch == each sentence alone,
one beam == greedy, the n-best list starts with the best, its scores are the hypotheses' own, what it does not return
is one line; and a folder storing it (custom_generate/generate.py) decodes with it through our loader, the CLI,
transformers' remote code and the pipeline."""

from __future__ import annotations

import json

import pytest
import torch

from hf_seq2seq import (
    RNNSeq2SeqConfig,
    RNNSeq2SeqForConditionalGeneration,
    TransformerSeq2SeqConfig,
    TransformerSeq2SeqForConditionalGeneration,
)
from hf_seq2seq.inference.search import SEARCHES, average_length_beam_search, wu_length_beam_search

VOCAB = 24


def _model(family: str):
    torch.manual_seed(0)
    if family == "transformer":
        config = TransformerSeq2SeqConfig(
            vocab_size=VOCAB, d_model=16, encoder_layers=1, decoder_layers=2, num_attention_heads=2, ffn_dim=32,
            init_std=0.5, output_bias=True,
        )  # fmt: skip
        return TransformerSeq2SeqForConditionalGeneration(config).eval()
    config = RNNSeq2SeqConfig(
        vocab_size=VOCAB, embedding_size=8, hidden_size=16, encoder_layers=2, decoder_layers=2, dropout=0.0,
        cell="lstm", attention="general", input_feeding=True, decoder_init="final", output_bias=True,
    )  # fmt: skip
    model = RNNSeq2SeqForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)  # peaked distributions: search paths differ
    return model


def _batch():
    """Three right-padded sources of lengths 6, 4, 2 ending in </s> (2)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (3, 6), generator=g)
    mask = torch.ones_like(ids)
    for row, length in ((1, 4), (2, 2)):
        ids[row, length:], mask[row, length:] = 0, 0
    ids[torch.arange(3), mask.sum(1) - 1] = 2
    return {"input_ids": ids, "attention_mask": mask}


def _search(model, inputs, search=average_length_beam_search, **options):
    options = {"num_beams": 4, "length_penalty": 1.0, "max_new_tokens": 10, **options}
    with torch.no_grad():
        return model.generate(**inputs, custom_generate=search, **options)


def _strip(rows: torch.Tensor) -> list[list[int]]:
    return [[t for t in row if t != 0] for row in rows.tolist()]


@pytest.mark.parametrize("search", list(SEARCHES.values()))
@pytest.mark.parametrize("family", ["transformer", "rnn"])
def test_cached_equals_uncached_and_padded_equals_alone(family, search):
    model, inputs = _model(family), _batch()
    for alpha in (0.0, 1.0, 0.6):
        out = _search(model, inputs, search, length_penalty=alpha)
        assert torch.equal(out, _search(model, inputs, search, length_penalty=alpha, use_cache=False)), alpha
        for i, length in enumerate(inputs["attention_mask"].sum(1).tolist()):
            alone = {k: v[i : i + 1, :length] for k, v in inputs.items()}
            assert _strip(_search(model, alone, search, length_penalty=alpha)) == _strip(out[i : i + 1]), (
                alpha,
                i,
            )
    assert len({tuple(row) for row in _strip(_search(model, inputs, search))}) > 1  # not one repeated output


@pytest.mark.parametrize("family", ["transformer", "rnn"])
def test_one_beam_is_greedy_and_n_best_starts_with_the_best(family):
    model, inputs = _model(family), _batch()
    with torch.no_grad():
        greedy = model.generate(**inputs, num_beams=1, do_sample=False, max_new_tokens=10)
    assert _strip(_search(model, inputs, num_beams=1)) == _strip(greedy)
    best = _strip(_search(model, inputs))
    n_best = _strip(_search(model, inputs, num_return_sequences=3))
    assert len(n_best) == 9 and n_best[::3] == best
    assert all(
        len({tuple(r) for r in n_best[i : i + 3]}) == 3 for i in (0, 3, 6)
    )  # three different hypotheses


def test_a_length_penalty_changes_what_wins():
    """alpha 0 (eole's none) and a large alpha rank hypotheses of different lengths differently somewhere; at alpha 0
    avg and wu are both eole's none."""
    model, inputs = _model("rnn"), _batch()
    assert _strip(_search(model, inputs, length_penalty=0.0)) != _strip(
        _search(model, inputs, length_penalty=3.0)
    )
    assert torch.equal(
        _search(model, inputs, length_penalty=0.0),
        _search(model, inputs, wu_length_beam_search, length_penalty=0.0),
    )


# the divisor each search puts under a hypothesis of n generated tokens (eos included): eole's length n + 1
DIVISORS = {
    average_length_beam_search: lambda n, alpha: (n + 1) ** alpha,
    wu_length_beam_search: lambda n, alpha: ((5 + n + 1) / 6) ** alpha,
}


@pytest.mark.parametrize("search", list(DIVISORS))
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_its_scores_are_the_hypotheses_own_and_beam_indices_their_rows(alpha, search):
    """return_dict_in_generate: the same sequences, each scored by its teacher-forced log-probability over the
    search's length penalty (avg: (n + 1) ** alpha, wu: ((5 + n + 1) / 6) ** alpha, n: its tokens with eos), best
    first; each token's beam index is a row of its own input."""
    model, inputs = _model("rnn"), _batch()
    plain = _search(model, inputs, search, length_penalty=alpha, num_return_sequences=2)
    out = _search(
        model,
        inputs,
        search,
        length_penalty=alpha,
        num_return_sequences=2,
        return_dict_in_generate=True,
        output_scores=True,
    )
    assert torch.equal(out.sequences, plain)
    steps = (out.beam_indices >= 0).sum(1)  # tokens each hypothesis generated
    with torch.no_grad():
        logits = model(
            **{k: v.repeat_interleave(2, 0) for k, v in inputs.items()}, decoder_input_ids=plain
        ).logits
    log_probs = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, plain[:, 1:, None]).squeeze(-1)
    for r, n in enumerate(steps.tolist()):
        expected = log_probs[r, :n].sum() / DIVISORS[search](n, alpha)
        assert out.sequences_scores[r].item() == pytest.approx(expected.item(), abs=1e-4), r
        rows = out.beam_indices[r, :n]
        assert ((rows // 4) == r // 2).all() and (out.beam_indices[r, n:] == -1).all()
    assert (out.sequences_scores[0::2] >= out.sequences_scores[1::2]).all()


def test_what_it_does_not_return_is_one_line():
    model, inputs = _model("transformer"), _batch()
    with pytest.raises(ValueError, match="output_attentions=True") as info:
        _search(model, inputs, return_dict_in_generate=True, output_attentions=True)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------- stored with a model folder
SOURCES = [
    "sechs und dreißig", "sechs und neunzig", "vier und neunzig", "zwei hundert drei und dreißig",
    "sechs tausend fünf hundert fünf und zwanzig", "acht hundert fünf und sechzig",
    "drei tausend fünf hundert neun und vierzig", "vier und sechzig",
]  # fmt: skip


@pytest.fixture(scope="module", params=list(SEARCHES))
def stored(tmp_path_factory, request):
    """(folder, its model, its tokenizer, the search): a peaked tiny RNN whose hypotheses end at different lengths
    (a bias on eos), saved with the search as custom_generate/generate.py."""
    from _convert import tiny_tokenizer

    from hf_seq2seq.hub import save_model_folder
    from hf_seq2seq.inference.search import write_custom_generate

    tokenizer = tiny_tokenizer()
    torch.manual_seed(2)
    config = RNNSeq2SeqConfig(
        vocab_size=len(tokenizer), embedding_size=8, hidden_size=16, dropout=0.0, cell="lstm", attention="general",
        output_bias=True,
    )  # fmt: skip
    model = RNNSeq2SeqForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)
        model.lm_head.bias.zero_()[config.eos_token_id] = 1.0
    folder = tmp_path_factory.mktemp("stored") / "model"
    save_model_folder(model, tokenizer, folder)
    write_custom_generate(folder, request.param)
    return folder, model, tokenizer, SEARCHES[request.param]


def _texts(tokenizer, rows) -> list[str]:
    return [t.strip() for t in tokenizer.batch_decode(rows, skip_special_tokens=True)]


@pytest.mark.slow  # subprocesses (a fresh Python each): make test-fast skips it
def test_a_folder_storing_the_search_decodes_with_it(stored, tmp_path):
    """hf_seq2seq's loader (no remote code), `hf-seq2seq translate`, and transformers' own custom_generate loading
    (trust_remote_code=True) in a fresh process without the package, generate() and the pipeline: every beam
    search is the stored one; greedy is transformers' own."""
    from hf_seq2seq.cli import main as cli_main
    from hf_seq2seq.inference import load_model

    folder, model, tokenizer, search = stored
    inputs = tokenizer(SOURCES, return_tensors="pt", padding=True)
    beam = {"num_beams": 4, "max_new_tokens": 10}
    expected = _texts(tokenizer, _search(model, inputs, search, **beam))
    transformers_beam = _texts(tokenizer, model.generate(**inputs, **beam))
    loaded, _ = load_model(folder, device="cpu")
    with torch.no_grad():
        assert _texts(tokenizer, loaded.generate(**inputs, **beam)) == expected
        greedy = {"num_beams": 1, "max_new_tokens": 10}
        assert _texts(tokenizer, loaded.generate(**inputs, **greedy)) == _texts(
            tokenizer, model.generate(**inputs, **greedy)
        )
    (tmp_path / "in.txt").write_text("\n".join(SOURCES) + "\n", encoding="utf-8")
    argv = ["translate", "--model", str(folder), "--input", str(tmp_path / "in.txt"), "--output"]
    assert cli_main([*argv, str(tmp_path / "out.txt"), "--num_beams", "4", "--max_new_tokens", "10"]) == 0
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines() == expected

    from conftest import run_without_package

    code = f"""
        import json, torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
        model = AutoModelForSeq2SeqLM.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        tokenizer = AutoTokenizer.from_pretrained({str(folder)!r}, trust_remote_code=True)
        inputs = tokenizer({SOURCES!r}, return_tensors="pt", padding=True)
        rows = model.generate(**inputs, num_beams=4, max_new_tokens=10)
        pipe = pipeline(model={str(folder)!r}, trust_remote_code=True)
        print("RESULT" + json.dumps({{
            "generate": [t.strip() for t in tokenizer.batch_decode(rows, skip_special_tokens=True)],
            "pipeline": [r["generated_text"] for r in pipe({SOURCES!r}, num_beams=4, max_new_tokens=10)],
        }}))
    """
    out = run_without_package(code, cwd=tmp_path).stdout
    result = json.loads(out[out.index("RESULT") + 6 :].splitlines()[0])
    assert result == {"generate": expected, "pipeline": expected}
    assert sum(a != b for a, b in zip(expected, transformers_beam)) >= 2  # transformers' own search differs


def test_a_folder_storing_another_decoding_method_needs_trust_remote_code(stored, tmp_path):
    import shutil

    from hf_seq2seq.inference import load_model
    from hf_seq2seq.inference.loading import ModelLoadError

    folder = tmp_path / "other"
    shutil.copytree(stored[0], folder)
    (folder / "custom_generate" / "generate.py").write_text("def generate(model, **kwargs):\n    pass\n")
    with pytest.raises(ModelLoadError, match="pass --trust_remote_code") as info:
        load_model(folder, device="cpu")
    assert "\n" not in str(info.value) and "custom_generate/generate.py" in str(info.value)


def test_a_re_saved_folder_keeps_its_search(stored, tmp_path):
    """save_pretrained does not copy custom_generate/: our save carries it from the folder the model was loaded
    from (loaded by hf_seq2seq or by transformers), so the re-saved folder decodes with the same search; a folder that
    has its own custom_generate/ keeps it."""
    from transformers import AutoModelForSeq2SeqLM

    from hf_seq2seq.inference import load_model
    from hf_seq2seq.inference.search import stored_search, write_custom_generate

    folder, model, tokenizer, search = stored
    name = stored_search(folder)
    inputs = tokenizer(SOURCES, return_tensors="pt", padding=True)
    beam = {"num_beams": 4, "max_new_tokens": 10}
    expected = _texts(tokenizer, _search(model, inputs, search, **beam))
    loaded, _ = load_model(folder, device="cpu")
    loaded.save_pretrained(tmp_path / "again")
    tokenizer.save_pretrained(tmp_path / "again")
    assert stored_search(tmp_path / "again") == name
    reloaded, _ = load_model(tmp_path / "again", device="cpu")
    with torch.no_grad():
        assert _texts(tokenizer, reloaded.generate(**inputs, **beam)) == expected
    AutoModelForSeq2SeqLM.from_pretrained(folder).save_pretrained(tmp_path / "auto")
    assert stored_search(tmp_path / "auto") == name
    other = "wu_length_beam_search" if name != "wu_length_beam_search" else "average_length_beam_search"
    (tmp_path / "own").mkdir()
    write_custom_generate(tmp_path / "own", other)
    loaded.save_pretrained(tmp_path / "own")
    assert stored_search(tmp_path / "own") == other
