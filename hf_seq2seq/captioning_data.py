"""Data for the captioning model: a rendered shapes task, a Flickr8k/COCO folder reader, a collator.

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

Saving a captioning folder lives with the other savers (:func:`hf_seq2seq.hub.save_captioning_folder`), drawing the
attention over an image with the other plots (:func:`hf_seq2seq.plotting.plot_attention_over_image`): a data module
reads and batches data only. Not shipped as Hub code.
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
