"""hf_seq2seq.inference.alignment and ``Engine.translate(return_alignment=True)``: words from sub-words, soft → hard,
Pharaoh in and out, and the attention read from the one inference path (issue 26). The commands are in
commands/test_align_command.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hub_server import tiny_model, tiny_tokenizer

from hf_seq2seq.analysis import forced_cross_attentions
from hf_seq2seq.hub import save_model_folder
from hf_seq2seq.inference import GenerateEngine, load_engine
from hf_seq2seq.inference.alignment import (
    align_pairs,
    default_alignment_layer,
    format_pharaoh,
    format_soft,
    hard_alignment,
    hypothesis_offsets,
    parse_pharaoh,
    read_pharaoh,
    select_attention,
    soft_alignment,
    spelled_offsets,
    token_word_map,
    whitespace_spans,
)

# sub-words, punctuation glued to words, an empty line, a whitespace-only line, a line longer than the limit below
LINES = [
    "drei und zwanzig",
    "",
    "neun tausend, neun hundert sieben und achtzig.",
    "   ",
    "ein Hund läuft über die Wiese.",
    "neun",
]
TARGETS = ["twenty-three", "", "nine thousand, nine hundred and eighty-seven.", "", "a dog runs.", "nine"]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module", params=["transformer", "rnn"])
def engine(request, tokenizer, tmp_path_factory):
    folder = save_model_folder(
        tiny_model(request.param, len(tokenizer)), tokenizer, tmp_path_factory.mktemp("align") / request.param
    )
    return load_engine(folder, device="cpu")


def _check_in_range(soft: np.ndarray, source: str, target: str) -> None:
    """The invariants of every alignment: the shape is (target words, source words), rows sum to at most 1, the
    Pharaoh line parses with every index in range, and hard = the argmax of soft."""
    n_src, n_tgt = len(source.split()), len(target.split())
    assert soft.shape == (n_tgt, n_src)
    assert (soft >= 0).all() and (soft.sum(axis=1) <= 1 + 1e-5).all()
    links = parse_pharaoh(format_pharaoh(hard_alignment(soft)), n_src, n_tgt)
    assert links == sorted((int(np.argmax(soft[j])), j) for j in range(n_tgt) if soft[j].max() > 0)


# ------------------------------------------------------------------------------------------------ words
def test_subwords_and_punctuation_merge_into_whitespace_words(tokenizer):
    text = "nine thousand, twenty-three."
    enc = tokenizer(text, return_offsets_mapping=True)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert len(tokens) > len(text.split()) + 1  # the tokenizer splits these words
    mapped = token_word_map(enc["offset_mapping"], whitespace_spans(text))
    words = text.split()
    for token, (a, b), w in zip(tokens, enc["offset_mapping"], mapped, strict=True):
        if token == "</s>":
            assert w is None
        else:  # every piece of "thousand," and of "twenty-three." belongs to that whitespace word
            assert w is not None and text[a:b].strip() in words[w]


def test_offsets_of_a_hypothesis_the_tokenizer_would_segment_otherwise(tokenizer):
    """Generated ids need not be the tokenizer's own segmentation of their text: character by character here."""
    pieces = ["▁", "n", "e", "u", "n", "▁", "d", "r", "e", "i"]
    ids = tokenizer.convert_tokens_to_ids(pieces)
    assert tokenizer.unk_token_id not in ids
    text = tokenizer.decode(ids, skip_special_tokens=True).strip()
    assert text == "neun drei" and tokenizer(text, add_special_tokens=False)["input_ids"] != ids
    mapped = token_word_map(hypothesis_offsets(tokenizer, ids, text), whitespace_spans(text))
    assert [w for p, w in zip(pieces, mapped, strict=True) if p != "▁"] == [0, 0, 0, 0, 1, 1, 1, 1]
    attention = np.eye(len(ids) + 1, 3)[:, [1, 0, 2]]  # token 1 ("n") attends to "a", token 0 ("▁") to "b"
    soft = soft_alignment(
        attention, [(0, 1), (2, 3), (0, 0)], hypothesis_offsets(tokenizer, ids, text), "a b", text
    )
    assert soft.tolist() == [[0.25, 0.0], [0.0, 0.0]]  # "neun" = mean of its 4 tokens' rows; "▁" is no word


def test_offsets_spelled_by_the_ids_are_the_tokenizers_or_none(tokenizer):
    """word_alignments reads the offsets off the token strings instead of tokenizing again: where it does, they are
    the offsets re-encoding gives; where it cannot be sure (a lone marker first, <unk>, a text the pieces do not
    spell) it says None and the tokenizer is asked."""
    from hf_seq2seq.tasks import make_task

    texts = [line.strip() for line in LINES + TARGETS] + [
        text for row in make_task("numbers", 50, seed=3) for text in row["translation"].values()
    ]
    found = 0
    for text in texts:
        enc = tokenizer(text, return_offsets_mapping=True)
        pieces = [
            None if i in tokenizer.all_special_ids else p
            for i, p in zip(enc["input_ids"], tokenizer.convert_ids_to_tokens(enc["input_ids"]), strict=True)
        ]
        offsets = spelled_offsets(pieces, text)
        if offsets is not None:
            found += 1
            assert offsets == [tuple(o) for o in enc["offset_mapping"]], text
    assert found >= len(texts) // 2  # the usual case, not the exception
    ids = tokenizer("neun tausend", add_special_tokens=False)["input_ids"]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert spelled_offsets(pieces[:-1], "neun tausend") is None  # a source cut at the limit: only as a prefix
    cut = spelled_offsets(pieces[:-1], "neun tausend", allow_prefix=True)
    assert (
        cut
        == [tuple(o) for o in tokenizer("neun tausend", return_offsets_mapping=True)["offset_mapping"]][:-2]
    )
    assert spelled_offsets(["▁", "n", "e", "u", "n"], "neun") is None  # the tokenizer gives "▁" (0, 1) here
    assert spelled_offsets(["▁neun"], "Neun") is None  # a normalizer or decoder changed the text


# ------------------------------------------------------------------------------------------------ soft → hard
def test_hard_alignment_is_the_argmax_of_soft_and_a_threshold_keeps_what_reaches_it():
    rng = np.random.default_rng(0)
    for _ in range(20):
        soft = rng.dirichlet(np.ones(5), size=4) * rng.uniform(0.5, 1.0)
        soft[rng.integers(4)] = 0.0  # a target word with no attention on any source word: no link
        links = hard_alignment(soft)
        assert links == sorted((int(soft[j].argmax()), j) for j in range(4) if soft[j].max() > 0)
        assert len({j for _, j in links}) == len(links) == int((soft.max(axis=1) > 0).sum())
        links = hard_alignment(soft, 0.2)
        assert all(soft[j, i] >= 0.2 for i, j in links)
        assert len(links) == int((soft >= 0.2).sum())
    assert hard_alignment(np.zeros((0, 3))) == [] and hard_alignment(np.zeros((2, 0))) == []


def test_pharaoh_round_trip_and_soft_text():
    links = [(0, 0), (2, 1), (1, 2)]
    assert format_pharaoh(links) == "0-0 2-1 1-2" and parse_pharaoh("0-0 2-1 1-2", 3, 3) == links
    assert parse_pharaoh("") == [] and format_pharaoh([]) == ""
    text = format_soft(np.array([[0.9, 0.1], [0.25, 0.75]]))
    assert [[float(x) for x in row.split(",")] for row in text.split()] == [[0.9, 0.1], [0.25, 0.75]]


def test_bad_pharaoh_is_one_line_naming_file_and_line(tmp_path):
    path = tmp_path / "align.txt"
    path.write_text("0-0 1-1\n0-3\n", encoding="utf-8")
    sources, targets = ["a b", "a b"], ["x y", "x y"]
    with pytest.raises(ValueError) as err:
        read_pharaoh(path, sources, targets)
    assert str(err.value) == (
        f"{path}:2: link 0-3: target word 3 is out of range; the target has 2 word(s) (0-based indices 0..1)"
    )
    with pytest.raises(
        ValueError, match=rf"^{path}: 2 line\(s\) of alignments, but there are 3 sentence pairs"
    ):
        read_pharaoh(path, [*sources, "c"], [*targets, "z"])
    path.write_text("0-0 1:1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{path}:1: '1:1' is not a link; Pharaoh links are i-j"):
        read_pharaoh(path)
    path.write_text("0-0 7-9\n\n", encoding="utf-8")
    assert read_pharaoh(path) == [[(0, 0), (7, 9)], []]  # without the pairs: the syntax only


def test_layer_and_heads_choice():
    cross = np.random.default_rng(1).random((3, 4, 2, 5))
    assert default_alignment_layer(1) == 0 and default_alignment_layer(6) == 5
    np.testing.assert_allclose(select_attention(cross), cross[2].mean(axis=0))
    np.testing.assert_allclose(select_attention(cross, -1, [2]), cross[2, 2])
    with pytest.raises(
        ValueError, match=r"^--alignment_layer 3 is out of range: the model has 3 decoder layer"
    ):
        select_attention(cross, 3)
    with pytest.raises(
        ValueError, match=r"^--alignment_heads 0,4 is not valid: the model has 4 attention head"
    ):
        select_attention(cross, 0, [0, 4])


# ------------------------------------------------------------------------------------- through the engine
def test_translate_returns_alignments_in_range_for_every_line(engine):
    limit, engine.max_source_length = engine.max_source_length, 6  # the long lines are truncated (warned)
    try:
        results = engine.translate(LINES, num_beams=2, n_best=2, batch_size=2, return_alignment=True)
        plain = engine.translate(LINES, num_beams=2, n_best=2, batch_size=2)
    finally:
        engine.max_source_length = limit
    assert results == plain  # the same hypotheses and scores: alignment is read after the search, not in it
    for line, r in zip(LINES, results, strict=True):
        assert len(r.alignments) == 2
        for hyp, soft in zip(r.hypotheses, r.alignments, strict=True):
            _check_in_range(soft, line, hyp)
    truncated = results[2].alignments[0]  # 6 source tokens: the last source words were never seen
    assert truncated.shape[1] == 7 and not truncated[:, -1].any()
    assert results[1].alignments[0].shape == (0, 0)  # an empty line


@pytest.mark.parametrize("num_beams", [1, 3])
def test_translation_alignment_is_the_forced_alignment_of_its_hypothesis(engine, num_beams):
    """translate --alignments keeps each hypothesis' attention from the search's own steps (through beam_indices in
    a beam search); forcing the hypothesis through the decoder afterwards (pair_attention, what align does) gives
    the same alignment, for every hypothesis of the n-best list."""
    lines = [line for line in LINES if line.strip()]
    # an untrained model may generate <unk> or <pad> mid-sentence: the search saw it, the hypothesis ids drop it
    engine.generate_kwargs["bad_words_ids"] = [[0], [1], [3]]
    try:
        results = engine.translate(lines, num_beams=num_beams, n_best=num_beams, return_alignment=True)
    finally:
        del engine.generate_kwargs["bad_words_ids"]
    n = num_beams
    forced = engine.word_alignments(
        [ids for ids in engine.encode(lines) for _ in range(n)],
        [line.strip() for line in lines for _ in range(n)],
        [h for r in results for h in r.token_ids],
        [h for r in results for h in r.hypotheses],
    )
    found = [a for r in results for a in r.alignments]
    assert len(found) == len(forced) == n * len(lines)
    for a, b in zip(found, forced, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_align_is_the_teacher_forced_attention_of_forward(engine):
    """align_pairs equals the cross-attention of a plain forward pass with labels (analyze's teacher forcing),
    merged into words; a padded batch equals each pair alone."""
    model, tok = engine.model, engine.tokenizer
    pairs = [(s, t) for s, t in zip(LINES, TARGETS, strict=True) if s.strip() and t]
    sources, targets = [s for s, _ in pairs], [t for _, t in pairs]
    layers = getattr(model.config, "decoder_layers", 1) if model.config.model_type != "rnn_seq2seq" else 1
    heads = getattr(model.config, "num_attention_heads", 1) if layers > 1 else 1
    choices = [(None, None), (layers - 1, [heads - 1])]
    for layer, head in choices:
        batched = align_pairs(engine, sources, targets, batch_size=4, layer=layer, heads=head)
        alone = [align_pairs(engine, [s], [t], layer=layer, heads=head)[0] for s, t in pairs]
        expected = [
            soft_alignment(select_attention(cross, layer, head), src_off, tgt_off, s, t)
            for (cross, src_off, tgt_off), s, t in zip(
                forced_cross_attentions(model, tok, sources, targets, batch_size=1),
                sources,
                targets,
                strict=True,
            )
        ]
        for b, a, e, (s, t) in zip(batched, alone, expected, pairs, strict=True):
            np.testing.assert_allclose(b, e, atol=1e-5)
            np.testing.assert_allclose(a, e, atol=1e-5)
            _check_in_range(b, s, t)
    # an empty side: an empty alignment of the right shape
    assert [a.shape for a in align_pairs(engine, ["drei", ""], ["", "three"])] == [(0, 1), (1, 0)]


def test_align_truncates_a_target_past_the_decoder_positions(engine, capsys):
    limit = engine.max_target_length
    engine.max_target_length = 4
    try:
        (soft,) = align_pairs(engine, [LINES[2]], [TARGETS[2]])
    finally:
        engine.max_target_length = limit
    assert (
        "target line(s) longer than the decoder's 3 positions truncated (lines [1])"
        in capsys.readouterr().err
    )
    _check_in_range(soft, LINES[2], TARGETS[2])
    assert soft[:2].any() and not soft[-1].any()  # the words after the cut have no attention


# ------------------------------------------------------------------------------------------------ refusals
def test_a_model_without_attention_is_refused_in_one_line(tokenizer):
    engine = GenerateEngine.from_model(tiny_model("rnn", len(tokenizer), attention="none"), tokenizer)
    message = (
        r"^the model RNNSeq2SeqForConditionalGeneration has attention='none' \(an RNN without attention\)"
    )
    with pytest.raises(ValueError, match=message):
        engine.translate(LINES, return_alignment=True)
    with pytest.raises(ValueError, match=message):
        align_pairs(engine, LINES, TARGETS)
    assert engine.translate(LINES)  # translating without alignments still works


def test_a_layer_or_head_the_model_lacks_is_refused_before_translating(engine):
    with pytest.raises(ValueError, match=r"^--alignment_layer 5 is out of range"):
        engine.translate(LINES, return_alignment=True, alignment_layer=5)
    with pytest.raises(ValueError, match=r"^--alignment_heads 7 is not valid"):
        align_pairs(engine, LINES, TARGETS, heads=[7])
    with pytest.raises(ValueError, match="6 source and 5 target lines"):
        align_pairs(engine, LINES, TARGETS[:5])


def test_a_transformer_search_records_only_the_alignment_layer(engine):
    """The Transformer's search keeps its fast attention kernels: only the chosen layer's cross-attention is asked
    for its weights (two hooks, removed afterwards), generate() gets no output_attentions; the RNN, whose one
    attention computes its weights anyway, uses output_attentions."""
    model = engine.model
    calls = []
    generate = model.generate

    def spy(*args, **kwargs):
        calls.append(kwargs.get("output_attentions", False))
        return generate(*args, **kwargs)

    model.generate = spy
    try:
        engine.translate(LINES, num_beams=2, return_alignment=True, alignment_layer=0)
    finally:
        del model.generate
    transformer = model.config.model_type == "transformer_seq2seq"
    assert calls and calls == [not transformer] * len(calls)
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_cpu_kernels_do_not_change_the_alignment(engine, tokenizer):
    """load_engine applies the CPU kernels; the model's plain modules give the same attention."""
    plain = GenerateEngine.from_model(
        type(engine.model).from_pretrained(engine.path).eval(), tokenizer, path=engine.path
    )
    with torch.no_grad():
        a = align_pairs(engine, LINES, TARGETS)
        b = align_pairs(plain, LINES, TARGETS)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5)


# ------------------------------------------------------------------------------------------------ engines
def test_ctranslate2_gives_the_torch_alignment_and_onnxruntime_refuses(tokenizer, tmp_path, capsys):
    """A CTranslate2 export returns the attention translate --alignments reads by default (all heads of the
    last layer, fixed at export); the model's queries and keys are scaled so that attention is far from uniform and
    another layer or head would differ. onnxruntime's graphs return no attention: one line."""
    pytest.importorskip("ctranslate2")
    pytest.importorskip("onnxruntime")
    from hf_seq2seq.cli import main as cli_main
    from hf_seq2seq.export import export_ctranslate2, export_onnx

    model = tiny_model("transformer", len(tokenizer), decoder_layers=3)
    with torch.no_grad():
        for layer in model.get_decoder().layers:
            layer.cross_attn.q_proj.weight.mul_(30.0)
            layer.cross_attn.kv_proj.weight.mul_(30.0)
    folder = save_model_folder(model, tokenizer, tmp_path / "peaky")
    torch_engine = load_engine(folder, device="cpu")
    ct2 = load_engine(export_ctranslate2(folder, tmp_path / "ct2"), "ctranslate2")
    lines = [line for line in LINES if line.strip()]
    a = torch_engine.translate(lines, num_beams=1, return_alignment=True)
    b = ct2.translate(lines, num_beams=1, return_alignment=True)
    assert [r.hypotheses for r in a] == [r.hypotheses for r in b]
    spread = 0.0
    for x, y, line in zip(a, b, lines, strict=True):
        np.testing.assert_allclose(x.alignments[0], y.alignments[0], atol=1e-4)
        _check_in_range(y.alignments[0], line, y.text)
        other = torch_engine.translate([line], num_beams=1, return_alignment=True, alignment_layer=0)[0]
        spread = max(spread, float(np.abs(other.alignments[0] - x.alignments[0]).max()))
    assert spread > 0.05  # the layer matters, so the agreement above is not of two uniform matrices
    # the greedy search's own attention (return_attention, no second pass; a beam search forces its hypotheses
    # afterwards) is the forced one, for every hypothesis
    for num_beams in (1, 3):
        found = ct2.translate(lines, num_beams=num_beams, n_best=num_beams, return_alignment=True)
        forced = ct2.word_alignments(
            [ids for ids in ct2.encode(lines) for _ in range(num_beams)],
            [line for line in lines for _ in range(num_beams)],
            [h for r in found for h in r.token_ids],
            [h for r in found for h in r.hypotheses],
        )
        for x, y in zip([a for r in found for a in r.alignments], forced, strict=True):
            np.testing.assert_allclose(x, y, atol=1e-4)
    forced = align_pairs(ct2, lines, TARGETS[:1] + TARGETS[2:3] + TARGETS[4:])
    expected = align_pairs(torch_engine, lines, TARGETS[:1] + TARGETS[2:3] + TARGETS[4:])
    for x, y in zip(forced, expected, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-4)
    with pytest.raises(ValueError, match=r"^--alignment_layer / --alignment_heads apply to --engine torch"):
        ct2.translate(lines, return_alignment=True, alignment_heads=[0])
    onnx = export_onnx(folder, tmp_path / "onnx")
    argv = ["translate", "--model", str(onnx), "--engine", "onnxruntime", "--alignments"]
    source = tmp_path / "in.txt"
    source.write_text("drei\n", encoding="utf-8")
    capsys.readouterr()
    assert cli_main([*argv, "--input", str(source)]) == 1
    assert capsys.readouterr().err.strip() == (
        "hf-seq2seq translate: error: alignments need --engine torch or ctranslate2: the onnxruntime export's "
        "decoder graph returns no attention"
    )


def test_the_models_own_alignment_head_is_the_default_of_every_engine(tokenizer, tmp_path):
    """A model trained with guided alignment names its supervised head in its config (alignment_layer,
    alignment_heads): translate and align default to it, and the CTranslate2 export stores it."""
    pytest.importorskip("ctranslate2")
    from hf_seq2seq.export import export_ctranslate2

    model = tiny_model("transformer", len(tokenizer), decoder_layers=3)
    with torch.no_grad():
        for layer in model.get_decoder().layers:
            layer.cross_attn.q_proj.weight.mul_(30.0)
            layer.cross_attn.kv_proj.weight.mul_(30.0)
    model.config.alignment_layer, model.config.alignment_heads = 0, [0]
    folder = save_model_folder(model, tokenizer, tmp_path / "guided")
    engine = load_engine(folder, device="cpu")
    lines = [line for line in LINES if line.strip()]
    own = engine.translate(lines, num_beams=1, return_alignment=True)
    named = engine.translate(
        lines, num_beams=1, return_alignment=True, alignment_layer=0, alignment_heads=[0]
    )
    mean = engine.translate(
        lines, num_beams=1, return_alignment=True, alignment_layer=2, alignment_heads=[0, 1]
    )
    ct2 = load_engine(export_ctranslate2(folder, tmp_path / "ct2"), "ctranslate2")
    exported = ct2.translate(lines, num_beams=1, return_alignment=True)
    differs = 0.0
    for a, b, c, d in zip(own, named, mean, exported, strict=True):
        np.testing.assert_allclose(a.alignments[0], b.alignments[0], atol=1e-6)
        np.testing.assert_allclose(a.alignments[0], d.alignments[0], atol=1e-4)
        differs = max(differs, float(np.abs(a.alignments[0] - c.alignments[0]).max()))
    assert differs > 0.05
    forced = align_pairs(engine, lines[:2], TARGETS[:1] + TARGETS[2:3])
    np.testing.assert_allclose(
        forced[0], align_pairs(engine, lines[:1], TARGETS[:1], layer=0, heads=[0])[0], atol=1e-6
    )


@pytest.mark.parametrize("num_beams", [1, 2])
def test_ctranslate2_alignments_are_in_range_for_every_line(tokenizer, tmp_path, num_beams):
    """The CTranslate2 engine on the same lines as the torch engine: empty and whitespace-only lines, sub-words,
    punctuation and a source cut at ``max_source_length`` (its last words get no link), each hypothesis of the n-best
    list; the hypotheses and scores are those of the plain translation."""
    pytest.importorskip("ctranslate2")
    from hf_seq2seq.export import export_ctranslate2

    folder = save_model_folder(tiny_model("transformer", len(tokenizer)), tokenizer, tmp_path / "model")
    ct2 = load_engine(export_ctranslate2(folder, tmp_path / "ct2"), "ctranslate2")
    ct2.max_source_length = 6
    options = dict(num_beams=num_beams, n_best=num_beams, batch_size=2)
    results = ct2.translate(LINES, return_alignment=True, **options)
    assert [(r.hypotheses, r.scores) for r in results] == [
        (r.hypotheses, r.scores) for r in ct2.translate(LINES, **options)
    ]
    for line, r in zip(LINES, results, strict=True):
        if not line.strip():
            assert [a.shape for a in r.alignments] == [(0, 0)] * len(r.alignments)
            continue
        assert len(r.alignments) == num_beams
        for hyp, soft in zip(r.hypotheses, r.alignments, strict=True):
            _check_in_range(soft, line, hyp)
    truncated = results[2].alignments[0]  # 6 source tokens: the last source words were never seen
    assert truncated.shape[1] == 7 and not truncated[:, -1].any()
