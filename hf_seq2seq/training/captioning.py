"""The captioning side of ``scripts/train.py --model_type captioning``: data, model, batches, loss, validation, saving.

:mod:`hf_seq2seq.training` runs one loop for every model type; what differs between translation and captioning is
gathered in one *task* chosen once from ``--model_type`` (:class:`hf_seq2seq.training.task.TextTask` for text,
:class:`CaptioningTask` here). The loop asks the adapter for the data, the tokenizer, the model, the batches of an
epoch, a micro-batch's summed loss, the validation scores and how to save a model folder.

Captioning specifics:

- Data: the rendered shapes task (``--task shapes``: :func:`hf_seq2seq.captioning_data.shapes_dataset`, train and
  validation from different seeds, ``--task_num_train/--task_num_validation``, ``--image_size``) or a folder of
  images and a Flickr8k / COCO captions file (``--image_folder`` + ``--captions_file``, validation from
  ``--validation_captions_file`` or the last ``--validation_fraction`` of the images). One training example per
  (image, caption) pair.
- Batches: ``--batch_size`` images per micro-batch and process (a token budget means little when every example
  carries a whole image). Every rank builds the same shuffled list of batches (seed + epoch) and the step's label
  tokens ``G`` are known from the caption lengths, so the step semantics of the text path hold unchanged.
- Loss: the model's own loss (cross-entropy with ``label_smoothing`` + the doubly stochastic attention penalty,
  Xu et al. eq. 14), turned into a sum by multiplying with the micro-batch's label tokens; the loop divides by ``G``.
  With one process and no accumulation the step loss is exactly ``model(pixel_values, labels).loss``.
- Validation: every validation *image* exactly once (batch ``i`` on rank ``i % world``, gathered by index), greedy or
  beam search, scored against *all* its reference captions: sacreBLEU corpus BLEU-4 and chrF (multi-reference),
  exact match (the caption equals one of the references) and CIDEr-D when ``pycocoevalcap`` is installed.
  The validation loss is the label-smoothed cross-entropy over every (image, reference) pair.
- Saving: :func:`hf_seq2seq.hub.save_captioning_folder` (remote code, image processor, pipeline).
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from .checkpointing import plain_model
from .evaluation import ValidationBatch, validation_loop

SHAPES_TASK = "shapes"
# train and validation scenes come from different seeds: no validation scene is a training scene
SHAPES_VALIDATION_SEED_OFFSET = 1_000_003
DEFAULT_IMAGE_SIZE = {"shapes": 48, "folder": 224}


# ---------------------------------------------------------------------------------------------------- metrics
def _cider_tokens(text: str) -> str:
    # pycocoevalcap's PTBTokenizer needs Java + Stanford CoreNLP; lower-casing and keeping word characters is the
    # same for captions without punctuation subtleties (a stated deviation, see docs/captioning.md).
    return " ".join(re.findall(r"[\w']+", text.lower()))


def cider_score(hypotheses: list[str], references: list[list[str]]) -> float | None:
    """CIDEr-D (Vedantam et al. 2015) ×1 (the COCO scale, often reported ×100) from ``pycocoevalcap``, or
    ``None`` when that optional package is not installed (``pip install hf_seq2seq[cider]``)."""
    try:
        from pycocoevalcap.cider.cider import Cider
    except ImportError:
        return None
    gts = {i: [_cider_tokens(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [_cider_tokens(h)] for i, h in enumerate(hypotheses)}
    score, _ = Cider().compute_score(gts, res)
    return float(score)


def caption_scores(hypotheses: list[str], references: list[list[str]]) -> dict:
    """Multi-reference corpus scores of one caption per image: sacreBLEU BLEU-4 and chrF (references of one image
    grouped; images with fewer references get ``None`` in the extra streams, which sacreBLEU skips), exact match
    (% of captions equal to one of their references, whitespace-normalised) and CIDEr when available."""
    from ..metrics import corpus_scores

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} captions for {len(references)} images")
    if any(not refs for refs in references):
        raise ValueError("every image needs at least one reference caption")

    def norm(s: str) -> str:
        return " ".join(s.split())

    exact = sum(norm(h) in {norm(r) for r in refs} for h, refs in zip(hypotheses, references))
    result = {
        **corpus_scores(hypotheses, [list(refs) for refs in references], with_lengths=True),
        "exact_match": 100.0 * exact / max(1, len(hypotheses)),
        "num_images": len(hypotheses),
        "num_references": sum(len(refs) for refs in references),
    }
    cider = cider_score(list(hypotheses), [list(r) for r in references])
    if cider is not None:
        result["cider"] = cider
    return result


# ---------------------------------------------------------------------------------------------------- data
def load_captioning_datasets(data_args, seed: int):
    """``DatasetDict(train, validation)``: rows with ``image`` (PIL, shapes) or ``image_path`` (folder), ``caption``
    and ``image_id`` (validation references are grouped by it)."""
    from datasets import DatasetDict

    from ..captioning_data import load_caption_folder, shapes_dataset

    if data_args.task == SHAPES_TASK:
        size = data_args.image_size or DEFAULT_IMAGE_SIZE["shapes"]
        splits = {}
        for split, n, split_seed in (
            ("train", data_args.task_num_train, seed),
            ("validation", data_args.task_num_validation, seed + SHAPES_VALIDATION_SEED_OFFSET),
        ):
            ds = shapes_dataset(n, seed=split_seed, image_size=size)
            ds = ds.select_columns(["image", "caption"])
            splits[split] = ds.add_column("image_id", [f"{split}-{i}" for i in range(n)])
        raw = DatasetDict(splits)
    else:
        train = load_caption_folder(data_args.image_folder, data_args.captions_file)
        if data_args.validation_captions_file is not None:
            raw = DatasetDict(
                train=train,
                validation=load_caption_folder(data_args.image_folder, data_args.validation_captions_file),
            )
        else:  # hold out the last images (all their captions): no validation image is seen in training
            ids = list(dict.fromkeys(train["image_id"]))
            n_val = max(1, round(len(ids) * data_args.validation_fraction))
            if n_val >= len(ids):
                raise ValueError(
                    f"{data_args.captions_file}: {len(ids)} image(s) cannot be split into training and "
                    f"--validation_fraction={data_args.validation_fraction} validation; give more images or "
                    "--validation_captions_file"
                )
            held = set(ids[-n_val:])
            is_val = [i in held for i in train["image_id"]]
            raw = DatasetDict(
                train=train.select([k for k, v in enumerate(is_val) if not v]),
                validation=train.select([k for k, v in enumerate(is_val) if v]),
            )
    if data_args.max_train_examples is not None:
        raw["train"] = raw["train"].select(range(min(data_args.max_train_examples, len(raw["train"]))))
    if data_args.max_validation_examples is not None:  # counted in images, all captions of each kept
        keep = set(list(dict.fromkeys(raw["validation"]["image_id"]))[: data_args.max_validation_examples])
        raw["validation"] = raw["validation"].select(
            [k for k, i in enumerate(raw["validation"]["image_id"]) if i in keep]
        )
    return raw


def _open(row: dict):
    from PIL import Image

    if row.get("image") is not None:
        return row["image"].convert("RGB")
    path = Path(row["image_path"])
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    with Image.open(path) as img:
        return img.convert("RGB")


# ---------------------------------------------------------------------------------------------------- the adapter
class CaptioningTask:
    """What :func:`hf_seq2seq.training.run_training` needs for ``--model_type captioning`` (see the module doc)."""

    name = "captioning"
    batch_option = "--batch_size"

    def __init__(self, data_args, model_args, train_args):
        self.data_args, self.model_args, self.train_args = data_args, model_args, train_args
        self.image_processor = None

    # -- data and tokenizer
    def load(self, seed: int) -> None:
        self.raw = load_captioning_datasets(self.data_args, seed)

    def build_tokenizer(self):
        from transformers import AutoTokenizer

        if self.model_args.model_name_or_path is not None:
            return AutoTokenizer.from_pretrained(self.model_args.model_name_or_path)
        if self.data_args.tokenizer_name_or_path is not None:
            return AutoTokenizer.from_pretrained(self.data_args.tokenizer_name_or_path)
        from ..tokenization import train_tokenizer

        return train_tokenizer(
            list(self.raw["train"]["caption"]),
            vocab_size=self.data_args.vocab_size,
            model=self.data_args.tokenizer_model,
        )

    def prepare(self, tokenizer) -> None:
        """Tokenize the training captions (over-long ones dropped, as the text path drops over-long pairs) and group
        the validation references by image."""
        limit = self.data_args.max_target_length
        train = self.raw["train"]
        ids = tokenizer(list(train["caption"]))["input_ids"]
        keep = [k for k, x in enumerate(ids) if len(x) <= limit]
        if not keep:
            raise ValueError(
                f"no training caption is left after dropping those over --max_target_length={limit}"
            )
        image_column = "image" if "image" in train.column_names else "image_path"
        self.train_dataset = (
            train.select(keep).select_columns([image_column]).add_column("labels", [ids[k] for k in keep])
        )
        self.label_lengths = [len(ids[k]) for k in keep]
        val = self.raw["validation"]
        first, refs = {}, {}
        for k, (image_id, caption) in enumerate(zip(val["image_id"], val["caption"])):
            first.setdefault(image_id, k)
            refs.setdefault(image_id, []).append(caption)
        self.val_rows = list(first.values())  # one row (its image) per validation image, first-seen order
        self.references = [refs[i] for i in first]
        self.val_labels = [
            tokenizer(r, truncation=True, max_length=limit)["input_ids"] for r in self.references
        ]
        self.tokenizer = tokenizer

    def epoch_batches(self, seed: int, epoch: int) -> list[np.ndarray]:
        """``--batch_size`` shuffled examples per batch, the same on every rank (seeded by ``seed + epoch``), as
        int index arrays (views of one shuffled order)."""
        order = list(range(len(self.train_dataset)))
        random.Random(seed + epoch).shuffle(order)
        order = np.asarray(order, dtype=np.int64)
        bs = self.data_args.batch_size
        return [order[i : i + bs] for i in range(0, len(order), bs)]

    # -- model
    def build_model(self, tokenizer):
        from transformers import AutoModelForImageTextToText

        import hf_seq2seq  # noqa: F401  (registers the Auto classes)

        from ..models.configuration_rnn_captioning import ImageCaptioningConfig
        from ..models.image_processing_rnn_captioning import ImageCaptioningImageProcessor
        from ..models.modeling_rnn_captioning import ImageCaptioningForConditionalGeneration

        overrides = self.model_args.config_overrides()
        if self.model_args.label_smoothing is not None:
            overrides["label_smoothing"] = self.model_args.label_smoothing
        if self.model_args.model_name_or_path is not None:
            from ..tokenization import check_tokenizer_fits_model

            model = AutoModelForImageTextToText.from_pretrained(
                self.model_args.model_name_or_path, dtype=torch.float32, use_safetensors=True
            )
            if not isinstance(model, ImageCaptioningForConditionalGeneration):
                raise ValueError(
                    f"--model_name_or_path {self.model_args.model_name_or_path}: a {type(model).__name__}, not "
                    "a captioning model (--model_type captioning)"
                )
            check_tokenizer_fits_model(tokenizer, model.config, self.model_args.model_name_or_path)
            for key, value in overrides.items():
                if not hasattr(model.config, key):
                    raise ValueError(f"--model_config: {key!r} is not an option of ImageCaptioningConfig")
                setattr(model.config, key, value)
        else:
            size = self.data_args.image_size or overrides.get("image_size")
            if size is None:
                size = DEFAULT_IMAGE_SIZE["shapes" if self.data_args.task == SHAPES_TASK else "folder"]
            if overrides.get("image_size", size) != size:
                raise ValueError(
                    f"--model_config image_size={overrides['image_size']} contradicts --image_size={size}"
                )
            overrides["image_size"] = size
            overrides.setdefault("vocab_size", len(tokenizer))
            for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
                overrides.setdefault(name, getattr(tokenizer, name))
            model = ImageCaptioningForConditionalGeneration(ImageCaptioningConfig(**overrides))
        if self.data_args.image_size is not None and model.config.image_size != self.data_args.image_size:
            raise ValueError(
                f"--image_size={self.data_args.image_size} but the model takes {model.config.image_size}-pixel "
                "images"
            )
        self.image_processor = ImageCaptioningImageProcessor.for_image_size(model.config.image_size)
        return model

    def collator(self, tokenizer, model):
        from ..captioning_data import CaptioningCollator

        return CaptioningCollator(self.image_processor, tokenizer)

    # -- loss
    def model_inputs(self, batch: dict) -> dict:
        return {"pixel_values": batch["pixel_values"]}

    def loss_sum(self, model, inputs: dict, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
        """The model's mean loss (CE with its label smoothing + λ · doubly stochastic penalty) × label tokens."""
        loss = model(**inputs, labels=labels).loss
        return loss.float() * (labels != -100).sum()

    # -- validation
    def evaluate(self, accelerator, model, tokenizer, train_args) -> dict:
        """Validation loss over every (image, reference) pair + captions of every image exactly once
        (:func:`~hf_seq2seq.training.evaluation.validation_loop`, images in first-seen order), scored with
        :func:`caption_scores` on the main process (other ranks return only the loss)."""
        raw = plain_model(accelerator, model)  # under FSDP2 a full copy: ranks caption different batches
        val, device = self.raw["validation"], accelerator.device
        bs = self.data_args.validation_batch_size
        n = len(self.val_rows)

        def make_batch(idx: list[int]) -> ValidationBatch:
            images = [_open(val[self.val_rows[i]]) for i in idx]
            pixel_values = self.image_processor(images=images, return_tensors="pt")["pixel_values"].to(device)
            # one row per (image, reference): the loss is taken against every reference caption
            rows = [(k, ids) for k, i in enumerate(idx) for ids in self.val_labels[i]]
            labels = torch.full((len(rows), max(len(ids) for _, ids in rows)), -100, dtype=torch.long)
            for r, (_, ids) in enumerate(rows):
                labels[r, : len(ids)] = torch.as_tensor(ids)
            labels = labels.to(device)
            repeat = torch.as_tensor([k for k, _ in rows], device=device)
            return ValidationBatch(
                forward={"pixel_values": pixel_values[repeat], "labels": labels},
                labels=labels,
                generate={"pixel_values": pixel_values},
            )

        def decode(generated: torch.Tensor) -> list[str]:
            return [t.strip() for t in tokenizer.batch_decode(generated, skip_special_tokens=True)]

        batches = [list(range(i, min(i + bs, n))) for i in range(0, n, bs)]
        loss, hyps = validation_loop(
            accelerator, raw, batches, n, make_batch, decode, train_args, what="images"
        )
        result = {"loss": loss}
        if hyps is None:
            return result
        self.last_hypotheses = hyps
        result.update(caption_scores(hyps, self.references))
        result["num_sentences"] = n
        return result

    # -- saving and the model card
    def save(self, model, tokenizer, path: Path, card: dict | None = None) -> None:
        """The model folder with its card (``model_cards/rnn_captioning.md``): the loop's facts (metrics with their
        signatures, steps, time, history) and, in the final card, the first validation image as the example whose
        attention is drawn."""
        from ..hub import save_captioning_folder

        save_captioning_folder(model, tokenizer, self.image_processor, path, card=card)

    def card_facts(self) -> dict:
        d = self.data_args
        example = None
        if getattr(self, "val_rows", None):
            try:
                example = _open(self.raw["validation"][self.val_rows[0]])
            except OSError:  # an unreadable image must not cost the saved model; the card just has no figure
                example = None
        return {
            # a name, never a path: --dataset_display_name, else the image folder's base name
            "dataset_name": d.dataset_display_name
            or (
                f"rendered shapes task ({d.task_num_train} scenes)"
                if d.task == SHAPES_TASK
                else Path(os.path.abspath(d.image_folder)).name
            ),
            # the rendered captions are English; a folder's language is not known here
            "languages": ["en"] if d.task == SHAPES_TASK else None,
            "example": example,
        }

    def result_extras(self) -> dict:
        return {"raw_datasets": self.raw, "image_processor": self.image_processor}
