"""Image captioning with visual attention (issue 9): the RNN family's contract tests for the captioning model, the
image processor and pipeline, the rendered shapes task, the Flickr8k/COCO folder reader, and a learning test whose
attention must land on the object a word names.

Learning test (`test_learns_shapes_task_and_attends_to_named_object`), stated numbers: a tiny model (32×32 images,
8×8 regions, hidden 64) trained 600 steps of batch 32 on 3000 rendered scenes; on 200 unseen scenes greedy captions
must match exactly in >= 60 % (measured 88.5 %), and for the first / second object's colour word the attention
argmax must fall in a grid cell overlapping that object's box in >= 70 % of scenes (measured 87 % / 92 %, chance
~6 %), with on average >= 50 % of the attention mass inside those cells (measured 83 % / 85 %).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from conftest import run_without_package
from huggingface_hub import ModelCardData, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText, pipeline

from hf_seq2seq.captioning_data import (
    COLORS,
    SHAPES,
    CaptioningCollator,
    load_caption_folder,
    render_scene,
    shapes_dataset,
)
from hf_seq2seq.hub import NOT_RECORDED, save_captioning_folder
from hf_seq2seq.models.configuration_rnn_captioning import ImageCaptioningConfig
from hf_seq2seq.models.image_processing_rnn_captioning import ImageCaptioningImageProcessor
from hf_seq2seq.models.modeling_rnn_captioning import (
    ImageCaptioningForConditionalGeneration,
    doubly_stochastic_penalty,
)
from hf_seq2seq.models.modeling_rnn_seq2seq import RNNDecoderCache
from hf_seq2seq.models.pipeline_image_captioning import TASK, register_pipeline
from hf_seq2seq.plotting import plot_attention_over_image
from hf_seq2seq.tokenization import train_tokenizer

SIZE = 16  # contract-test image side: 2 stages -> a 4x4 grid


@pytest.fixture(scope="module", autouse=True)
def registered():
    """What `import hf_seq2seq` will do once the lead wires these classes into __init__."""
    AutoConfig.register(ImageCaptioningConfig.model_type, ImageCaptioningConfig, exist_ok=True)
    AutoModelForImageTextToText.register(
        ImageCaptioningConfig, ImageCaptioningForConditionalGeneration, exist_ok=True
    )
    AutoImageProcessor.register(
        ImageCaptioningConfig, image_processor_classes={"pil": ImageCaptioningImageProcessor}, exist_ok=True
    )
    register_pipeline()


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([render_scene(7, i)["caption"] for i in range(200)], vocab_size=100)


def make_model(vocab_size: int = 24, seed: int = 0, **overrides) -> ImageCaptioningForConditionalGeneration:
    kw = dict(
        image_size=SIZE,
        encoder_channels=[4, 8],
        vocab_size=vocab_size,
        embedding_size=8,
        hidden_size=16,
        dropout=0.0,
        doubly_stochastic_weight=0.0,
    )
    kw.update(overrides)
    torch.manual_seed(seed)
    model = ImageCaptioningForConditionalGeneration(ImageCaptioningConfig(**kw))
    with torch.no_grad():  # sharper distributions and image-dependent states, so decoding paths differ
        model.lm_head.weight.mul_(4.0)
        model.encoder.project.weight.mul_(4.0)
    return model.eval()


def images(batch: int = 3, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    # noise around a different mean colour per image: random-init features then differ between images
    return torch.randn(batch, 3, SIZE, SIZE, generator=gen) + 2 * torch.randn(batch, 3, 1, 1, generator=gen)


VARIANTS = [
    {"attention": "bahdanau", "cell": "lstm", "attention_gate": True},
    {"attention": "bahdanau", "cell": "gru", "attention_gate": False, "decoder_layers": 2},
    {"attention": "general", "cell": "lstm", "attention_gate": False, "input_feeding": True},
    {"attention": "dot", "cell": "lstm", "attention_gate": False, "position_embedding": False},
]


# ------------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "option, value",
    [
        ("attention", "luong"),
        ("attention", "none"),
        ("backbone", "vgg"),
        ("cell", "rnn"),
        ("hidden_size", 0),
        ("encoder_channels", []),
        ("encoder_channels", [8, -1]),
        ("dropout", 1.0),
        ("doubly_stochastic_weight", -0.5),
        ("position_embedding", "yes"),
        ("image_size", 8),  # smaller than the 2**4 stride of the default 4 stages
        ("pad_token_id", 9000),
    ],
)
def test_invalid_config_values_raise_naming_option(option, value):
    with pytest.raises(ValueError, match=option):
        ImageCaptioningConfig(**{option: value})


def test_config_cross_option_checks_and_grid():
    with pytest.raises(ValueError, match="attention_gate"):
        ImageCaptioningConfig(attention="dot")  # the gate defaults on and is Bahdanau-only
    with pytest.raises(ValueError, match="input_feeding"):
        ImageCaptioningConfig(input_feeding=True)
    assert ImageCaptioningConfig().grid_size == 14  # 224 / 2**4: the 14x14 grid of Xu et al.
    assert ImageCaptioningConfig(image_size=SIZE, encoder_channels=[4, 8]).grid_size == 4


def test_torchvision_backbone_is_optional():
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="torchvision"):
            ImageCaptioningForConditionalGeneration(ImageCaptioningConfig(backbone="resnet18", image_size=64))
    else:
        model = ImageCaptioningForConditionalGeneration(
            ImageCaptioningConfig(backbone="resnet18", image_size=64)
        )
        out = model.encoder(torch.randn(1, 3, 64, 64))
        assert out.last_hidden_state.shape == (1, 4, model.config.hidden_size)


# ------------------------------------------------------------------------------------------------ model contract
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v['attention']}-{v['cell']}")
def test_cached_equals_uncached_greedy_and_beam(variant):
    model, x = make_model(**variant), images()
    for kwargs in ({}, {"num_beams": 3}, {"num_beams": 3, "num_return_sequences": 2, "length_penalty": 0.5}):
        cached = model.generate(pixel_values=x, max_new_tokens=8, **kwargs)
        uncached = model.generate(pixel_values=x, max_new_tokens=8, use_cache=False, **kwargs)
        assert torch.equal(cached, uncached), kwargs
    scores = model.generate(
        pixel_values=x, max_new_tokens=1, output_scores=True, return_dict_in_generate=True
    )
    assert not torch.allclose(scores.scores[0][0], scores.scores[0][1]), "outputs do not depend on the image"


@pytest.mark.parametrize("variant", VARIANTS[:3], ids=lambda v: f"{v['attention']}-{v['cell']}")
def test_teacher_forced_equals_stepwise_and_attention_is_a_distribution(variant):
    model, x = make_model(**variant), images()
    ids = torch.randint(3, 24, (3, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(pixel_values=x, decoder_input_ids=ids, output_attentions=True)
        enc = model.get_encoder()(x)
        cache, steps = None, []
        for t in range(ids.shape[1]):
            out = model(encoder_outputs=enc, decoder_input_ids=ids[:, t : t + 1], cache=cache, use_cache=True)
            cache = out.cache
            steps.append(out.logits)
    assert isinstance(cache, RNNDecoderCache) and cache.get_seq_length() == ids.shape[1]
    torch.testing.assert_close(torch.cat(steps, dim=1), full.logits, rtol=1e-5, atol=1e-5)
    (attn,) = full.cross_attentions
    S = model.config.grid_size**2
    assert attn.shape == (3, 1, 6, S)
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 1, 6))
    assert full.encoder_last_hidden_state.shape == (3, S, model.config.hidden_size)
    assert model.attention_maps(full.cross_attentions).shape == (3, 6, 4, 4)


def test_batched_equals_single_and_generate_modes():
    model, x = make_model(), images(4)
    batch = model.generate(pixel_values=x, max_new_tokens=8, num_beams=2)
    for i in range(4):
        alone = model.generate(pixel_values=x[i : i + 1], max_new_tokens=8, num_beams=2)
        row = batch[i, : alone.shape[1]]
        assert torch.equal(row, alone[0]) and bool((batch[i, alone.shape[1] :] == 0).all())
    torch.manual_seed(0)
    sampled = model.generate(
        pixel_values=x, max_new_tokens=6, do_sample=True, top_k=5, top_p=0.9, temperature=0.8
    )
    assert sampled.shape[0] == 4 and bool((sampled[:, 0] == 1).all())
    out = model.generate(
        pixel_values=x,
        max_new_tokens=5,
        min_new_tokens=5,
        return_dict_in_generate=True,
        output_attentions=True,
    )
    assert len(out.cross_attentions) == 5
    for step in out.cross_attentions:
        (attn,) = step
        assert attn.shape == (4, 1, 1, 16)
        torch.testing.assert_close(attn.sum(-1), torch.ones(4, 1, 1))
    beams = model.generate(
        pixel_values=x[:2],
        max_new_tokens=5,
        num_beams=3,
        return_dict_in_generate=True,
        output_attentions=True,
    )
    assert beams.cross_attentions[0][0].shape == (6, 1, 1, 16)


def test_loss_and_doubly_stochastic_penalty():
    model, x = make_model(doubly_stochastic_weight=0.7), images()
    labels = torch.tensor([[5, 6, 7, 2], [5, 6, 2, -100], [8, 2, -100, -100]])
    out = model(pixel_values=x, labels=labels, output_attentions=True)
    ce = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 24), labels.reshape(-1), ignore_index=-100)
    attn = out.cross_attentions[0][:, 0]
    expected_penalty = ((1 - (attn * (labels != -100)[..., None]).sum(1)) ** 2).mean()
    torch.testing.assert_close(doubly_stochastic_penalty(attn, labels != -100), expected_penalty)
    torch.testing.assert_close(out.loss, ce + 0.7 * expected_penalty)
    out.loss.backward()  # gradients reach the CNN through the attention
    assert model.encoder.backbone.layers[0].weight.grad.abs().sum() > 0
    # DataCollatorForSeq2Seq-style shift: start token first, -100 -> pad
    assert model.prepare_decoder_input_ids_from_labels(labels)[2].tolist() == [1, 8, 2, 0]
    with pytest.raises(ValueError, match="pixel_values"):
        model(pixel_values=torch.randn(1, 3, SIZE + 1, SIZE), labels=labels[:1])


def test_tied_weights_and_save_load_roundtrip(tmp_path):
    model, x = make_model(), images()
    assert model.lm_head.weight is model.decoder.embed_tokens.weight
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert type(loaded) is ImageCaptioningForConditionalGeneration
    assert loaded.lm_head.weight is loaded.decoder.embed_tokens.weight
    for kwargs in ({}, {"num_beams": 3}):
        assert torch.equal(
            model.generate(pixel_values=x, max_new_tokens=8, **kwargs),
            loaded.generate(pixel_values=x, max_new_tokens=8, **kwargs),
        )
    untied = make_model(tie_word_embeddings=False)
    assert untied.lm_head.weight is not untied.decoder.embed_tokens.weight


# ------------------------------------------------------------------------------------------------ processor, pipeline
def test_image_processor_roundtrip_and_pipeline(tmp_path, tokenizer):
    proc = ImageCaptioningImageProcessor.for_image_size(SIZE)
    scene = render_scene(3, 0)
    grey = scene["image"].convert("L").resize((40, 20))
    pixels = proc([scene["image"], grey], return_tensors="pt")["pixel_values"]
    assert pixels.shape == (2, 3, SIZE, SIZE) and pixels.dtype == torch.float32
    assert -3 < float(pixels.min()) < 0 < float(pixels.max()) < 3  # normalised, not [0, 255]
    proc.save_pretrained(tmp_path)
    again = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(again) is ImageCaptioningImageProcessor
    assert torch.equal(again(scene["image"], return_tensors="pt")["pixel_values"], pixels[:1])

    model = make_model(vocab_size=len(tokenizer))
    captioner = pipeline(TASK, model=model, tokenizer=tokenizer, image_processor=proc)
    ids = model.generate(pixel_values=pixels[:1], max_new_tokens=6, num_beams=2)
    expected = tokenizer.decode(ids[0], skip_special_tokens=True).strip()
    assert captioner(scene["image"], max_new_tokens=6, num_beams=2) == [{"generated_text": expected}]
    both = captioner([scene["image"], scene["image"]], max_new_tokens=6, num_beams=2)
    assert both == [{"generated_text": expected}] * 2


@pytest.mark.slow
def test_remote_code_loads_without_package(tmp_path, tokenizer):
    model = make_model(vocab_size=len(tokenizer))
    proc = ImageCaptioningImageProcessor.for_image_size(SIZE)
    folder = save_captioning_folder(model, tokenizer, proc, tmp_path / "captioner")
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModelForImageTextToText"].endswith(
        "ImageCaptioningForConditionalGeneration"
    )
    assert "image-captioning" in config["custom_pipelines"]
    for name in ("modeling_rnn_captioning.py", "modeling_rnn_seq2seq.py", "attention.py",
                 "image_processing_rnn_captioning.py", "pipeline_image_captioning.py", "README.md"):  # fmt: skip
        assert (folder / name).is_file(), name
    image_path = tmp_path / "scene.png"
    render_scene(3, 1)["image"].save(image_path)
    pixels = proc(Image.open(image_path), return_tensors="pt")["pixel_values"]
    expected = {
        "greedy": model.generate(pixel_values=pixels, max_new_tokens=6)[0].tolist(),
        "beam": model.generate(pixel_values=pixels, max_new_tokens=6, num_beams=3)[0].tolist(),
    }
    # the model card's "How to use" code, pointed at this folder and image, runs as written
    readme = (folder / "README.md").read_text()
    card_code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    card_code = card_code.replace("path/to/this/folder", str(folder)).replace("image.jpg", str(image_path))
    (tmp_path / "card_code.py").write_text(card_code)
    card_caption = tokenizer.decode(model.generate(pixel_values=pixels)[0], skip_special_tokens=True).strip()
    proc_run = run_without_package(
        f"""
        import contextlib, io, json
        from PIL import Image
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer, pipeline
        folder = {str(folder)!r}
        model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
        proc = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
        tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        pixels = proc(Image.open({str(image_path)!r}), return_tensors="pt")["pixel_values"]
        greedy = model.generate(pixel_values=pixels, max_new_tokens=6)[0].tolist()
        beam = model.generate(pixel_values=pixels, max_new_tokens=6, num_beams=3)[0].tolist()
        pipe = pipeline(model=folder, trust_remote_code=True)
        text = pipe({str(image_path)!r}, max_new_tokens=6)[0]["generated_text"]
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(open({str(tmp_path / "card_code.py")!r}).read())
        print(json.dumps({{"module": type(model).__module__, "greedy": greedy, "beam": beam, "text": text,
                          "card": printed.getvalue().splitlines()}}))
        """
    )
    result = json.loads(proc_run.stdout.strip().splitlines()[-1])
    assert not result["module"].startswith("hf_seq2seq")
    assert result["greedy"] == expected["greedy"] and result["beam"] == expected["beam"]
    assert result["text"] == tokenizer.decode(expected["greedy"], skip_special_tokens=True).strip()
    assert result["card"] == [repr([card_caption]), repr([{"generated_text": card_caption}])]


CARD = {
    "repo_id": "user/tiny-captioner",
    "languages": ["en"],
    "dataset": "user/shapes",
    "dataset_name": "rendered shapes task (400 scenes)",
    "eval_split": "validation",
    "num_eval_sentences": 24,
    "num_references": 48,
    "bleu": 41.2345,
    "chrf": 60.5,
    "exact_match": 37.5,
    "cider": 1.23456,
    "bleu_signature": "nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
    "chrf_signature": "nrefs:2|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0",
    "steps": 321,
    "epochs": 2,
    "train_time": 75,
    "hardware": "2 x cpu",
    "recipe": "configs/captioning_shapes.yaml",
    "training_args": {"learning_rate": 0.003, "batch_size": 32},
    "history": [
        {"step": 1, "train_loss": 4.0},
        {"step": 2, "train_loss": 3.0, "valid_loss": 3.5, "bleu": 5.0},
    ],
}


def test_model_card_metadata_holds_the_scores(tmp_path, tokenizer):
    model = make_model(vocab_size=len(tokenizer))
    proc = ImageCaptioningImageProcessor.for_image_size(SIZE)
    card = {**CARD, "example": render_scene(3, 2, 32)["image"]}
    folder = save_captioning_folder(model, tokenizer, proc, tmp_path / "m", card=card)
    meta = metadata_load(folder / "README.md")
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "image-to-text"
    assert (
        meta["language"] == ["en"] and meta["license"] == "apache-2.0" and meta["datasets"] == ["user/shapes"]
    )
    assert {"image-captioning", "hf_seq2seq"} <= set(meta["tags"])
    model_name, results = model_index_to_eval_results(meta["model-index"])
    assert model_name == "tiny-captioner"
    scores = {r.metric_name: r for r in results}
    assert {name: r.metric_value for name, r in scores.items()} == {
        "BLEU-4": 41.23, "chrF": 60.5, "Exact match": 37.5, "CIDEr-D": 1.235,
    }  # fmt: skip
    assert scores["BLEU-4"].metric_args == {"signature": CARD["bleu_signature"]}
    assert scores["chrF"].metric_args == {"signature": CARD["chrf_signature"]}
    assert {(r.task_type, r.dataset_type, r.dataset_split) for r in results} == {
        ("image-to-text", "user/shapes", "validation")
    }
    ModelCardData(**meta)  # the hub's own parser accepts the metadata

    text = (folder / "README.md").read_text()
    assert NOT_RECORDED not in text
    assert (
        "Xu et al. 2015" in text
        and "16 annotation vectors, one per cell of a 4×4 grid" in text
        and f"{model.num_parameters():,}" in text
    )
    assert "λ = 0.0 (off)" in text  # make_model turns the doubly stochastic penalty off
    assert "41.23" in text and "37.50" in text and "1.235" in text and "24 images, 48 reference" in text
    assert CARD["bleu_signature"].replace("|", "\\|") in text  # escaped inside the Markdown table
    assert "0:01:15" in text and "321" in text and "`learning_rate` | `0.003`" in text
    for image in ("attention.png", "learning_curve.png", "example.png"):
        assert (folder / image).is_file(), image
    assert "](attention.png)" in text and "](learning_curve.png)" in text and "`example.png`" in text
    loading = 'AutoModelForImageTextToText.from_pretrained("user/tiny-captioner", trust_remote_code=True)'
    assert loading in text and 'pipeline("image-captioning", model="user/tiny-captioner"' in text

    bare = save_captioning_folder(model, tokenizer, proc, tmp_path / "bare")
    meta = metadata_load(bare / "README.md")
    assert meta["pipeline_tag"] == "image-to-text" and "model-index" not in meta
    text = (bare / "README.md").read_text()
    assert text.count(NOT_RECORDED) >= 5 and "![" not in text


# ------------------------------------------------------------------------------------------------ data
def _objects_from_pixels(image: Image.Image) -> list[tuple[str, str, float, float]]:
    """Read the scene back from the pixels: per colour, its shape (fill ratio of the bounding box) and centre."""
    pixels = np.asarray(image).astype(int)
    found = []
    for name, rgb in COLORS.items():
        ys, xs = np.nonzero(np.abs(pixels - np.array(rgb)).sum(-1) == 0)
        if len(xs) == 0:
            continue
        fill = len(xs) / ((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
        shape = "square" if fill > 0.9 else "circle" if fill > 0.66 else "triangle"
        found.append((name, shape, float(xs.mean()), float(ys.mean())))
    return found


def test_shapes_generator_is_deterministic_and_captions_match_pixels():
    a, b = render_scene(5, 17, 48), render_scene(5, 17, 48)
    assert a["caption"] == b["caption"] and np.array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
    assert render_scene(5, 18, 48)["caption"] != a["caption"] or not np.array_equal(
        np.asarray(render_scene(5, 18, 48)["image"]), np.asarray(a["image"])
    )
    captions, checked = set(), 0
    for i in range(60):
        scene = render_scene(11, i, 48)
        captions.add(scene["caption"])
        words = scene["caption"].split()
        (c1, s1), (c2, s2) = zip(scene["colors"], scene["shapes"])
        assert scene["caption"] == f"a {c1} {s1} {scene['relation']} a {c2} {s2}"
        assert words[1] in COLORS and words[2] in SHAPES
        if c1 == c2:
            continue  # one colour mask holds both objects; positions are checked through the boxes below
        found = {colour: (shape, x, y) for colour, shape, x, y in _objects_from_pixels(scene["image"])}
        assert set(found) == {c1, c2}
        assert found[c1][0] == s1 and found[c2][0] == s2
        (_, x1, y1), (_, x2, y2) = found[c1], found[c2]
        if scene["relation"] == "left of":
            assert x1 < x2 - 4 and abs(y1 - y2) < 8
        else:
            assert y1 < y2 - 4 and abs(x1 - x2) < 8
        checked += 1
    assert checked > 40 and len(captions) > 40  # a varied task, not a handful of captions
    data = shapes_dataset(4, seed=11, image_size=48)
    assert data.column_names == ["image", "caption", "colors", "shapes", "relation", "boxes"]
    assert data[2]["caption"] == render_scene(11, 2, 48)["caption"]
    assert np.array_equal(np.asarray(data[2]["image"]), np.asarray(render_scene(11, 2, 48)["image"]))


def _write_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        render_scene(0, k, 32)["image"].save(folder / name)


def test_folder_reader_flickr8k_and_coco(tmp_path):
    images_dir = tmp_path / "Flicker8k_Dataset"
    _write_images(images_dir, ["1000_a.jpg", "1001_b.jpg"])
    token = tmp_path / "Flickr8k.token.txt"
    token.write_text("1000_a.jpg#0\tA dog runs .\n1000_a.jpg#1\tA brown dog .\n\n1001_b.jpg#0\tTwo cats .\n")
    data = load_caption_folder(images_dir, token)
    assert data.column_names == ["image_path", "caption", "image_id"] and len(data) == 3
    assert data[1]["caption"] == "A brown dog ." and data[2]["image_path"] == str(images_dir / "1001_b.jpg")

    coco = tmp_path / "captions_train2014.json"
    coco.write_text(
        json.dumps(
            {
                "images": [{"id": 7, "file_name": "1000_a.jpg"}, {"id": 8, "file_name": "1001_b.jpg"}],
                "annotations": [
                    {"image_id": 8, "caption": " Two cats. "},
                    {"image_id": 7, "caption": "A dog."},
                ],
            }
        )
    )
    data = load_caption_folder(images_dir, coco)
    assert data["caption"] == ["Two cats.", "A dog."] and data["image_id"] == ["8", "7"]

    bad = tmp_path / "bad.txt"
    bad.write_text("1000_a.jpg#0\tfine\nno tab here\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: malformed"):
        load_caption_folder(images_dir, bad)
    bad.write_text("missing.jpg#0\tA caption\n")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        load_caption_folder(images_dir, bad)
    assert len(load_caption_folder(images_dir, bad, check_images=False)) == 1
    bad.write_text("1000_a.jpg#0\t  \n")
    with pytest.raises(ValueError, match="empty caption"):
        load_caption_folder(images_dir, bad)
    with pytest.raises(FileNotFoundError, match="captions file not found"):
        load_caption_folder(images_dir, tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="images folder not found"):
        load_caption_folder(tmp_path / "nope", token)
    coco.write_text(
        json.dumps(
            {
                "images": [{"id": 7, "file_name": "1000_a.jpg"}],
                "annotations": [{"image_id": 9, "caption": "x"}],
            }
        )
    )
    with pytest.raises(ValueError, match=r"annotations\[0\]: image_id 9"):
        load_caption_folder(images_dir, coco)
    coco.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_caption_folder(images_dir, coco)


def test_collator_builds_pixel_values_and_labels(tmp_path, tokenizer):
    proc = ImageCaptioningImageProcessor.for_image_size(SIZE)
    _write_images(tmp_path, ["x.png"])
    collate = CaptioningCollator(proc, tokenizer)
    batch = collate(
        [
            {"image": render_scene(0, 1)["image"], "caption": "a red circle above a blue square"},
            {"image_path": str(tmp_path / "x.png"), "caption": "a red circle"},
        ]
    )
    assert batch["pixel_values"].shape == (2, 3, SIZE, SIZE)
    labels = batch["labels"]
    assert labels[0, -1] == 2 and labels[1].tolist().count(-100) == labels.shape[1] - 4
    assert tokenizer.decode(labels[1][labels[1] >= 0], skip_special_tokens=True).strip() == "a red circle"
    with pytest.raises(FileNotFoundError, match="gone.png"):
        collate([{"image_path": str(tmp_path / "gone.png"), "caption": "a"}])


# ------------------------------------------------------------------------------------------------ learning
def _word_index(tokens: list[str], vocabulary, occurrence: int) -> int:
    return [i for i, token in enumerate(tokens) if token.lstrip("▁") in vocabulary][occurrence]


def _box_cells(box, grid: int, image_size: int) -> torch.Tensor:
    """(G, G) bool: the grid cells that overlap the inclusive pixel box."""
    x0, y0, x1, y1 = box
    cell = image_size / grid
    edges = torch.arange(grid) * cell
    cols = (edges <= x1) & (edges + cell > x0)
    rows = (edges <= y1) & (edges + cell > y0)
    return rows[:, None] & cols[None, :]


@pytest.mark.slow
def test_learns_shapes_task_and_attends_to_named_object(tmp_path):
    size, steps = 32, 600
    train = [render_scene(0, i, size) for i in range(3000)]
    test = [render_scene(1, i, size) for i in range(200)]
    tok = train_tokenizer([e["caption"] for e in train], vocab_size=100)
    assert tok.tokenize("a yellow triangle left of a red circle") == [
        "▁a", "▁yellow", "▁triangle", "▁left", "▁of", "▁a", "▁red", "▁circle",
    ]  # fmt: skip
    proc = ImageCaptioningImageProcessor.for_image_size(size)
    collate = CaptioningCollator(proc, tok)
    train_batch, test_batch = collate(train), collate(test)
    config = ImageCaptioningConfig(
        image_size=size,
        encoder_channels=[8, 16],
        vocab_size=len(tok),
        embedding_size=32,
        hidden_size=64,
        dropout=0.0,
        doubly_stochastic_weight=0.0,
    )
    torch.manual_seed(0)
    model = ImageCaptioningForConditionalGeneration(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(train), (32,), generator=order)
        loss = model(pixel_values=train_batch["pixel_values"][idx], labels=train_batch["labels"][idx]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"trained {steps} steps in {time.perf_counter() - start:.1f}s, last loss {loss.item():.3f}")

    model.eval()
    with torch.no_grad():
        generated = model.generate(pixel_values=test_batch["pixel_values"], max_new_tokens=12)
        teacher = model(
            pixel_values=test_batch["pixel_values"], labels=test_batch["labels"], output_attentions=True
        )
    predictions = [text.strip() for text in tok.batch_decode(generated, skip_special_tokens=True)]
    exact = np.mean([p == e["caption"] for p, e in zip(predictions, test)])
    print(f"exact-match caption accuracy on 200 unseen scenes: {exact:.3f}")
    assert exact >= 0.6, list(zip(predictions[:5], [e["caption"] for e in test[:5]]))

    maps = model.attention_maps(teacher.cross_attentions)  # (B, T, G, G), the step that predicts token t
    grid = config.grid_size
    for obj in (0, 1):
        hits, masses = [], []
        for b, scene in enumerate(test):
            label = test_batch["labels"][b]
            tokens = tok.convert_ids_to_tokens(label[label >= 0].tolist())
            amap = maps[b, _word_index(tokens, COLORS, obj)]
            cells = _box_cells(scene["boxes"][obj], grid, size)
            hits.append(bool(cells.flatten()[amap.flatten().argmax()]))
            masses.append(float(amap[cells].sum()))
        print(
            f"object {obj + 1} colour word: argmax in box {np.mean(hits):.3f}, mass in box {np.mean(masses):.3f}"
        )
        assert np.mean(hits) >= 0.7 and np.mean(masses) >= 0.5

    # the figure of Xu et al.: one attention map per generated word, over the image
    words = tok.convert_ids_to_tokens(generated[0, 1:].tolist())
    words = words[: words.index("</s>") + 1] if "</s>" in words else words
    with torch.no_grad():
        out = model(pixel_values=test_batch["pixel_values"][:1], decoder_input_ids=generated[:1, : len(words)],
                    output_attentions=True)  # fmt: skip
    path = plot_attention_over_image(
        test[0]["image"], model.attention_maps(out.cross_attentions)[0], words, tmp_path / "attention.png"
    )
    assert path.stat().st_size > 1000 and Image.open(path).size[0] > 100
    with pytest.raises(ValueError, match="words"):
        plot_attention_over_image(test[0]["image"], maps[0, :3], ["a"], tmp_path / "bad.png")
