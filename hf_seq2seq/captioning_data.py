"""Data for the captioning model: a rendered shapes task, a Flickr8k/COCO folder reader, a collator, saving.

- :func:`render_scene` / :func:`shapes_dataset`: images drawn with PIL — two coloured shapes (circle / square /
  triangle in red / green / blue / yellow) side by side or one above the other — captioned
  ``"a red circle left of a blue square"`` or ``"a green triangle above a yellow circle"``. The caption names the
  left (or upper) object first, so it is a function of the pixels: a model must see colour, shape *and* relative
  position. Deterministic per ``(seed, index)``.
- :func:`load_caption_folder`: the common layout of real data — a folder of images plus one captions file, either
  Flickr8k ``Flickr8k.token.txt`` (``1000268201_693b08cb0e.jpg#0<TAB>A child ...``) or COCO ``captions_*.json``
  (``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``) → ``datasets.Dataset`` of
  ``image_path``, ``caption``, ``image_id``.
- :class:`CaptioningCollator`: examples with an ``image`` (PIL) or ``image_path`` and a ``caption`` → ``pixel_values``
  and ``labels`` (ending in ``</s>``, padding ``-100``): what a trainer needs.
- :func:`save_captioning_folder`: a folder that loads without hf_seq2seq (remote code for config, model, image
  processor and the ``"image-captioning"`` pipeline).
- :func:`plot_attention_over_image`: the attention map of every generated word over the image (Xu et al. fig. 3).

Not shipped as Hub code: may import anything.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 40),
    "blue": (40, 70, 240),
    "yellow": (240, 220, 30),
}
SHAPES = ("circle", "square", "triangle")
RELATIONS = ("left of", "above")
BACKGROUND = (20, 20, 20)


# ---------------------------------------------------------------------------------------------------- shapes task
def _draw(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:  # an upward triangle filling the box
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)


def render_scene(seed: int, index: int = 0, image_size: int = 48) -> dict:
    """Render one scene; the same ``(seed, index, image_size)`` gives the same image and caption.

    The image is split into 3×3 slots; two objects go into two slots of one row ("left of") or one column
    ("above"), with a few pixels of jitter. Returns ``{"image": PIL RGB, "caption": str, "colors": [c1, c2],
    "shapes": [s1, s2], "relation": str, "boxes": [[x0, y0, x1, y1] (inclusive pixels), ...]}`` with the object
    named first first.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 24:
        raise ValueError(f"render_scene: `image_size` must be an integer >= 24, got {image_size!r}")
    rng = random.Random(f"shapes-{seed}-{index}")
    relation = rng.choice(RELATIONS)
    line = rng.randrange(3)
    a, b = sorted(rng.sample(range(3), 2))
    slots = [(line, a), (line, b)] if relation == "left of" else [(a, line), (b, line)]  # (row, col)
    objects = [(rng.choice(list(COLORS)), rng.choice(SHAPES))]
    while True:  # two different objects, so the caption says which is where
        second = (rng.choice(list(COLORS)), rng.choice(SHAPES))
        if second != objects[0]:
            objects.append(second)
            break
    cell = image_size / 3
    half = max(3, int(cell * 0.3))
    jitter = max(0, int(cell / 2) - half - 1)
    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    boxes = []
    for (row, col), (color, shape) in zip(slots, objects):
        cx = int(col * cell + cell / 2) + rng.randint(-jitter, jitter)
        cy = int(row * cell + cell / 2) + rng.randint(-jitter, jitter)
        box = (cx - half, cy - half, cx + half, cy + half)
        _draw(draw, shape, box, COLORS[color])
        boxes.append(list(box))
    (c1, s1), (c2, s2) = objects
    return {
        "image": image,
        "caption": f"a {c1} {s1} {relation} a {c2} {s2}",
        "colors": [c1, c2],
        "shapes": [s1, s2],
        "relation": relation,
        "boxes": boxes,
    }


def shapes_dataset(num_examples: int, seed: int = 0, image_size: int = 48, start: int = 0):
    """``num_examples`` rendered scenes (indices ``start ...``) as a ``datasets.Dataset`` with columns ``image``
    (``datasets.Image``), ``caption``, ``colors``, ``shapes``, ``relation``, ``boxes``. Use different seeds (or
    disjoint index ranges) for train and test splits."""
    import datasets

    if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 1:
        raise ValueError(f"shapes_dataset: `num_examples` must be an integer >= 1, got {num_examples!r}")
    rows = [render_scene(seed, start + i, image_size) for i in range(num_examples)]
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "colors": datasets.Sequence(datasets.Value("string")),
            "shapes": datasets.Sequence(datasets.Value("string")),
            "relation": datasets.Value("string"),
            "boxes": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
        }
    )
    return datasets.Dataset.from_list(rows, features=features)


# ---------------------------------------------------------------------------------------------------- folder reader
def _image_file(images_dir: Path, name: str, where: str, check: bool) -> str:
    path = images_dir / name
    if check and not path.is_file():
        raise FileNotFoundError(f"{where}: image {name!r} not found in {images_dir}")
    return str(path)


def read_flickr8k_captions(images_dir, captions_file, check_images: bool = True) -> list[dict]:
    """Flickr8k ``Flickr8k.token.txt``: one ``<image file>#<n><TAB><caption>`` per line (blank lines skipped)."""
    images_dir, captions_file = Path(images_dir), Path(captions_file)
    rows = []
    with captions_file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            where = f"{captions_file}:{number}"
            key, tab, caption = line.partition("\t")
            name, hash_, _ = key.partition("#")
            if not tab or not hash_ or not name.strip():
                raise ValueError(
                    f"{where}: malformed line (expected '<image file>#<n><TAB><caption>'): {line[:80]!r}"
                )
            if not caption.strip():
                raise ValueError(f"{where}: empty caption for {name!r}")
            name = name.strip()
            rows.append(
                {
                    "image_path": _image_file(images_dir, name, where, check_images),
                    "caption": caption.strip(),
                    "image_id": name,
                }
            )
    return rows


def read_coco_captions(images_dir, captions_file, check_images: bool = True) -> list[dict]:
    """COCO ``captions_*.json``: ``images`` (``id``, ``file_name``) and ``annotations`` (``image_id``,
    ``caption``)."""
    images_dir, captions_file = Path(images_dir), Path(captions_file)
    try:
        data = json.loads(captions_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{captions_file}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{captions_file}: expected a COCO captions object with an 'images' list")
    if not isinstance(data.get("annotations"), list):
        raise ValueError(f"{captions_file}: expected a COCO captions object with an 'annotations' list")
    files = {}
    for i, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            raise ValueError(f"{captions_file}: images[{i}] needs 'id' and 'file_name', got {entry!r}"[:200])
        files[entry["id"]] = entry["file_name"]
    rows = []
    for i, ann in enumerate(data["annotations"]):
        where = f"{captions_file}: annotations[{i}]"
        if not isinstance(ann, dict) or "image_id" not in ann or "caption" not in ann:
            raise ValueError(f"{where} needs 'image_id' and 'caption', got {ann!r}"[:200])
        if ann["image_id"] not in files:
            raise ValueError(f"{where}: image_id {ann['image_id']!r} is not in 'images'")
        caption = str(ann["caption"]).strip()
        if not caption:
            raise ValueError(f"{where}: empty caption")
        name = files[ann["image_id"]]
        rows.append(
            {
                "image_path": _image_file(images_dir, name, where, check_images),
                "caption": caption,
                "image_id": str(ann["image_id"]),
            }
        )
    return rows


def load_caption_folder(images_dir, captions_file, check_images: bool = True):
    """Read a folder of images + a captions file (COCO if it ends in ``.json``, else Flickr8k token format) into a
    ``datasets.Dataset`` with ``image_path``, ``caption``, ``image_id`` (one row per caption).

    Errors name the problem: a missing folder or captions file, a malformed line (file:line), an image file the
    captions mention that is not in the folder (``check_images=True``), an empty file.
    """
    import datasets

    images_dir, captions_file = Path(images_dir), Path(captions_file)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"images folder not found: {images_dir}")
    if not captions_file.is_file():
        raise FileNotFoundError(f"captions file not found: {captions_file}")
    reader = read_coco_captions if captions_file.suffix.lower() == ".json" else read_flickr8k_captions
    rows = reader(images_dir, captions_file, check_images=check_images)
    if not rows:
        raise ValueError(f"{captions_file}: no captions found")
    return datasets.Dataset.from_list(rows)


# ---------------------------------------------------------------------------------------------------- training
class CaptioningCollator:
    """Batch examples ``{"image": PIL | "image_path": str, "caption": str}`` into ``pixel_values`` (B, C, P, P) and
    ``labels`` (B, T) — the caption's token ids ending in ``</s>``, padding ``-100`` (the models shift them right
    into ``decoder_input_ids``). Examples that already hold ``pixel_values`` / ``labels`` are used as they are."""

    def __init__(self, image_processor, tokenizer, max_length: int | None = None):
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.max_length = max_length

    def _image(self, example: Mapping):
        if "image" in example and example["image"] is not None:
            image = example["image"]
            return Image.open(image) if isinstance(image, (str, Path)) else image
        if "image_path" in example:
            path = Path(example["image_path"])
            if not path.is_file():
                raise FileNotFoundError(f"CaptioningCollator: image file not found: {path}")
            with Image.open(path) as img:
                return img.convert("RGB")
        raise KeyError("CaptioningCollator: every example needs 'image', 'image_path' or 'pixel_values'")

    def __call__(self, examples: Sequence[Mapping]) -> dict:
        import torch

        if all("pixel_values" in e for e in examples):
            pixel_values = torch.stack([torch.as_tensor(np.asarray(e["pixel_values"])) for e in examples])
        else:
            images = [self._image(e) for e in examples]
            pixel_values = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        if all("labels" in e for e in examples):
            ids = [list(e["labels"]) for e in examples]
        else:
            ids = self.tokenizer(
                [e["caption"] for e in examples],
                truncation=self.max_length is not None,
                max_length=self.max_length,
            )["input_ids"]
        width = max(len(x) for x in ids)
        labels = torch.full((len(ids), width), -100, dtype=torch.long)
        for row, x in enumerate(ids):
            labels[row, : len(x)] = torch.as_tensor(x, dtype=torch.long)
        return {"pixel_values": pixel_values, "labels": labels}


# ---------------------------------------------------------------------------------------------------- saving
def save_captioning_folder(
    model, tokenizer, image_processor, output_dir, card: Mapping | None = None, images: Mapping | None = None
) -> Path:
    """Write config (``auto_map``, ``custom_pipelines``), code files, weights, generation config, tokenizer, image
    processor and the ``README.md`` model card, so that ``AutoModelForImageTextToText`` / ``AutoImageProcessor`` /
    ``AutoTokenizer`` / ``pipeline(model=folder)`` load it with ``trust_remote_code=True`` where hf_seq2seq is not
    installed.

    Args:
        card: what the trainer knows, rendered into ``model_cards/rnn_captioning.md`` by
            :func:`hf_seq2seq.hub.render_model_card` (every key optional, missing facts render as "not recorded"):
            the text cards' keys (``model_name``, ``repo_id``, ``license``, ``dataset``/``dataset_name``, ``tags``,
            ``languages``, ``bleu``, ``chrf`` and their ``*_signature``, ``eval_split``, ``num_eval_sentences``
            (images here), ``recipe``, ``training_args``, ``steps``, ``epochs``, ``train_time``, ``hardware``,
            ``history``) plus ``exact_match``, ``cider``, ``num_references``; ``example`` is an *image* (PIL or a
            path): it is stored as ``example.png``, captioned, and the attention over it drawn as ``attention.png``.
        images: ``{"kind": path}`` image files to copy in and embed (they win over the drawn ones).
    """
    from transformers.dynamic_module_utils import custom_object_save

    from .hub import _write_images, render_model_card
    from .pipeline_image_captioning import TASK, ImageCaptioningPipeline

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    card = dict(card or {})
    type(model.config).register_for_auto_class()
    type(model).register_for_auto_class("AutoModelForImageTextToText")
    type(image_processor).register_for_auto_class("AutoImageProcessor")
    model.config.custom_pipelines = {
        TASK: {
            "impl": f"{ImageCaptioningPipeline.__module__.split('.')[-1]}.{ImageCaptioningPipeline.__name__}",
            "pt": ["AutoModelForImageTextToText"],
            "type": "image",
        }
    }
    custom_object_save(ImageCaptioningPipeline, output_dir)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    image_processor.save_pretrained(output_dir)
    image_names = _write_images(model, tokenizer, output_dir, card, images, image_processor=image_processor)
    render_model_card(model, card, image_names).save(output_dir / "README.md")
    return output_dir


def draw_example_attention(model, image_processor, tokenizer, example, output_dir) -> tuple[Path, Path, str]:
    """Store ``example`` (PIL image or path) as ``output_dir/example.png``, caption it with the model's generation
    config and draw every word's attention over it (:func:`plot_attention_over_image`) as ``attention.png``;
    returns ``(example path, attention path, caption)``."""
    from .commands import caption_attention

    output_dir = Path(output_dir)
    if isinstance(example, (str, Path)):
        if not Path(example).is_file():
            raise FileNotFoundError(f"card example image not found: {example}")
        with Image.open(example) as img:
            image = img.convert("RGB")
    else:
        image = example.convert("RGB")
    example_path = output_dir / "example.png"
    image.save(example_path)
    was_training = model.training
    model.eval()
    try:
        maps, words, caption = caption_attention(model, image_processor, tokenizer, image)
    finally:
        model.train(was_training)
    attention_path = plot_attention_over_image(image, maps, words, output_dir / "attention.png")
    return example_path, attention_path, caption


# ---------------------------------------------------------------------------------------------------- plotting
def plot_attention_over_image(
    image, attentions, words: Sequence[str], path, columns: int = 5, dpi: int = 100
):
    """Draw the attention map of each generated word over the image (Xu et al. 2015, fig. 3).

    Args:
        image: PIL image (shown resized to a square, as the model saw it).
        attentions: (T, G, G) array/tensor — e.g. ``model.attention_maps(out.cross_attentions)[0]`` — one map per
            word; the map is upsampled to the image and overlaid.
        words: the T words (tokens) the maps belong to.
        path: output image file (PNG/SVG/...); parent folders are created.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    maps = np.asarray(attentions.detach().cpu() if hasattr(attentions, "detach") else attentions, dtype=float)
    if maps.ndim != 3 or maps.shape[1] != maps.shape[2]:
        raise ValueError(f"plot_attention_over_image: `attentions` must be (T, G, G), got shape {maps.shape}")
    if len(words) != maps.shape[0]:
        raise ValueError(f"plot_attention_over_image: {len(words)} words for {maps.shape[0]} attention maps")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    side = max(image.size)
    shown = np.asarray(image.convert("RGB").resize((side, side)))
    panels = 1 + len(words)
    columns = max(1, min(columns, panels))
    rows = (panels + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(shown)
    axes.flat[0].set_title("image", fontsize=9)
    for k, (word, amap) in enumerate(zip(words, maps), start=1):
        ax = axes.flat[k]
        ax.imshow(shown)
        ax.imshow(amap, cmap="gray", alpha=0.6, extent=(0, side, side, 0), interpolation="bilinear")
        ax.set_title(word, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
