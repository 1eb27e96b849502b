"""Attention heatmaps (the alignment figure of Bahdanau et al. 2015, fig. 3), learning curves, and the figures of
``hf-seq2seq analyze`` (quality by source length, heatmaps of several models side by side).

Figures are drawn with matplotlib's Agg backend (no display needed) into PNG or SVG files chosen by the suffix.
Pixel sizes are deterministic: ``figsize`` inches × ``dpi`` (no tight bounding box), so callers and tests know
the size of what they get.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

FORMATS = (".png", ".svg")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _check_path(path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(
            f"plot path {str(path)!r}: unsupported suffix {path.suffix!r}; valid: {', '.join(FORMATS)}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def attention_figsize(num_source: int, num_target: int) -> tuple[float, float]:
    """Figure size in inches for a heatmap of ``num_target`` rows × ``num_source`` columns (room for labels)."""
    return (max(4.0, 0.45 * num_source + 2.0), max(3.0, 0.4 * num_target + 1.8))


# The most tokens per axis a model card's heatmap shows (an under-trained model may generate max_new_tokens of
# repetition: 128 rows made a 5300-pixel-tall image); the rest is cut, and the title says so.
CARD_ATTENTION_TOKENS = 40
# The most words a captioning card's attention figure draws (one 220 x 240 px panel each, five per row)
CARD_CAPTION_WORDS = 24


def _font_charmap() -> set[int]:
    """The code points matplotlib's default font can draw (a missing one is drawn as an empty box)."""
    global _CHARMAP
    if _CHARMAP is None:
        from matplotlib import font_manager, ft2font

        try:
            _CHARMAP = set(ft2font.FT2Font(font_manager.findfont("DejaVu Sans")).get_charmap())
        except (OSError, RuntimeError, ValueError):
            _CHARMAP = set()
    return _CHARMAP


_CHARMAP: set[int] | None = None


def _display_token(token: str) -> str:
    """A token as a label: SentencePiece/Metaspace word-start marker and GPT-2 byte-level space → a visible word
    start; a control character or one the font cannot draw → its code point (``U+0007``), never an empty box."""
    import unicodedata

    token = token.replace("\u2581", "_").replace("\u0120", "_")
    charmap = _font_charmap()
    return "".join(
        f"U+{ord(c):04X}"
        if unicodedata.category(c).startswith("C") or (charmap and ord(c) not in charmap)
        else c
        for c in token
    )


def shown_tokens(tokens: Sequence[str], max_tokens: int | None) -> tuple[int, str]:
    """How many of ``tokens`` a figure shows (all, or the first ``max_tokens``) and a note for its title saying what
    was cut (empty when nothing was)."""
    if max_tokens is None or len(tokens) <= max_tokens:
        return len(tokens), ""
    return max_tokens, f"first {max_tokens} of {len(tokens)}"


def plot_attention(
    matrix,
    source_tokens: Sequence[str],
    target_tokens: Sequence[str],
    path,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
    max_tokens: int | None = None,
) -> Path:
    """Draw the alignment heatmap: ``matrix[t, s]`` is the attention weight of target token t on source token s.

    Args:
        matrix: (T, S) array-like of attention weights (rows usually sum to 1).
        source_tokens: S labels for the x axis. target_tokens: T labels for the y axis.
        path: output file, ``.png`` or ``.svg``.
        figsize: inches (default from the token counts, `attention_figsize`); the image is figsize × dpi pixels.
        max_tokens: show at most this many tokens per axis (the first ones; the title says how many were cut), so
            the image's size is bounded (`CARD_ATTENTION_TOKENS` for a model card); None shows every token.
    Returns: the path written.
    """
    path = _check_path(path)
    matrix = np.asarray(matrix.detach().cpu() if isinstance(matrix, torch.Tensor) else matrix, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"attention matrix must be 2-D (target, source), got shape {matrix.shape}")
    rows, cols = matrix.shape
    if len(target_tokens) != rows or len(source_tokens) != cols:
        raise ValueError(
            f"attention matrix of shape {matrix.shape} needs {rows} target and {cols} source tokens, got "
            f"{len(target_tokens)} target and {len(source_tokens)} source tokens"
        )
    rows, row_note = shown_tokens(target_tokens, max_tokens)
    cols, col_note = shown_tokens(source_tokens, max_tokens)
    if row_note or col_note:
        notes = [f"{row_note} generated" if row_note else "", f"{col_note} source" if col_note else ""]
        title = f"{title or ''} ({'; '.join(n for n in notes if n)} tokens shown)".strip()
        matrix, source_tokens, target_tokens = (
            matrix[:rows, :cols],
            source_tokens[:cols],
            target_tokens[:rows],
        )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize or attention_figsize(cols, rows), dpi=dpi, layout="constrained")
    try:
        image = ax.imshow(
            matrix, cmap="Greys", vmin=0.0, vmax=max(1e-9, float(matrix.max(initial=0.0))), aspect="auto"
        )
        ax.set_xticks(range(cols), [_display_token(t) for t in source_tokens], rotation=90)
        ax.set_yticks(range(rows), [_display_token(t) for t in target_tokens])
        ax.set_xlabel("source")
        ax.set_ylabel("generated")
        ax.xaxis.set_label_position("top")
        ax.xaxis.tick_top()
        if title:
            ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.05)
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
    return path


@torch.no_grad()
def attention_matrix(
    model, tokenizer, text: str, layer: int = -1, head: int | str | None = None, **gen_kwargs
):
    """The alignment of ``text`` and the model's translation of it, from the model's ``cross_attentions``.

    The translation is generated with ``model.generate(**gen_kwargs)`` (the model's generation config otherwise);
    the matrix is then read from one teacher-forced forward pass over that output (``decoder_input_ids`` = the
    generated sequence without its last token), so row t is exactly ``cross_attentions[layer][0, head, t]``: the
    attention the decoder paid to each source token while predicting generated token t. This is the same for every
    decoding strategy (greedy, beam, sampling) and equals the weights of the decoding step that produced token t.

    Args:
        layer: index into the per-layer ``cross_attentions`` tuple (RNN models have one entry).
        head: an int selects one head; ``None`` or ``"mean"`` averages the heads (RNN attention has one head).
    Returns: ``(matrix (T, S) float numpy array, source_tokens, target_tokens)``.
    """
    model.eval()
    device = next(model.parameters()).device
    # verbose=False: transformers' "indexing errors" warning would come first; ours says what is drawn
    ids = tokenizer(text, truncation=False, verbose=False)["input_ids"]
    limit = getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length
    if limit and len(ids) > limit:
        logging.getLogger("hf_seq2seq.plotting").warning(
            "the text is %d tokens long; its first %d (the model's max_position_embeddings) are drawn",
            len(ids),
            limit,
        )
        ids = ids[: limit - 1] + ids[-1:]  # keep the final </s>, as the tokenizer's truncation does
    enc = {
        "input_ids": torch.tensor([ids], device=device),
        "attention_mask": torch.ones(1, len(ids), dtype=torch.long, device=device),
    }
    gen_kwargs = {"num_return_sequences": 1, **gen_kwargs}
    sequences = model.generate(**enc, **gen_kwargs)
    if hasattr(sequences, "sequences"):
        sequences = sequences.sequences
    sequence = sequences[:1]
    pad = model.config.pad_token_id
    # drop trailing padding (a shorter beam padded to the batch length), keep the first token (decoder start)
    keep = sequence.shape[1]
    while keep > 2 and pad is not None and int(sequence[0, keep - 1]) == pad:
        keep -= 1
    sequence = sequence[:, :keep]
    out = model(**enc, decoder_input_ids=sequence[:, :-1], output_attentions=True, return_dict=True)
    if not out.cross_attentions:
        raise ValueError(f"{type(model).__name__} returned no cross_attentions (a model without attention?)")
    num_layers = len(out.cross_attentions)
    if not -num_layers <= layer < num_layers:
        raise ValueError(
            f"layer={layer} is out of range: the model has {num_layers} cross-attention layer(s)"
        )
    weights = out.cross_attentions[layer][0]  # (heads, T, S)
    if head is None or head == "mean":
        matrix = weights.mean(dim=0)
    elif isinstance(head, int) and -weights.shape[0] <= head < weights.shape[0]:
        matrix = weights[head]
    else:
        raise ValueError(f"head={head!r} is invalid: use 'mean' or an int in [0, {weights.shape[0]})")
    source_tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    target_tokens = tokenizer.convert_ids_to_tokens(sequence[0, 1:].tolist())
    return matrix.float().cpu().numpy(), source_tokens, target_tokens


def example_attention(model, tokenizer, candidates: Sequence[str], **gen_kwargs):
    """The model card's example: the first of ``candidates`` whose generation ends (with ``</s>``, within the
    generation config's limit), else the one with the shortest generation (an under-trained model may repeat up to
    ``max_new_tokens`` for every sentence). Returns ``(text, matrix, source_tokens, target_tokens)`` as
    :func:`attention_matrix` gives them."""
    eos = model.generation_config.eos_token_id
    eos_ids = {eos} if isinstance(eos, int) else set(eos or ())
    eos_tokens = set(tokenizer.convert_ids_to_tokens(sorted(eos_ids)))
    best = None
    for text in dict.fromkeys(c for c in candidates if c and c.strip()):
        matrix, src, tgt = attention_matrix(model, tokenizer, text, **gen_kwargs)
        if tgt and tgt[-1] in eos_tokens:
            return text, matrix, src, tgt
        if best is None or len(tgt) < len(best[3]):
            best = (text, matrix, src, tgt)
    if best is None:
        raise ValueError("no example sentence to draw the attention of")
    return best


def plot_learning_curve(history: Sequence[dict], path, title: str | None = None, dpi: int = 100) -> Path:
    """Training / validation loss against steps, with validation BLEU on a second axis when present.

    ``history`` is a list of dicts with ``step`` and any of ``train_loss``, ``valid_loss``, ``bleu`` (missing or
    ``None`` values are skipped).
    """
    path = _check_path(path)
    history = list(history)
    if not history:
        raise ValueError("plot_learning_curve: the history is empty")

    def series(key):
        points = [
            (h["step"], h[key]) for h in history if h.get(key) is not None and h.get("step") is not None
        ]
        return [p[0] for p in points], [p[1] for p in points]

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=dpi, layout="constrained")
    try:
        lines = []
        for key, style in (("train_loss", "-"), ("valid_loss", "o-")):
            x, y = series(key)
            if x:
                lines += ax.plot(x, y, style, label=key.replace("_", " "), markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        x, y = series("bleu")
        if x:
            ax2 = ax.twinx()
            lines += ax2.plot(x, y, "s--", color="tab:green", label="valid BLEU", markersize=3)
            ax2.set_ylabel("BLEU")
        if lines:
            ax.legend(lines, [line.get_label() for line in lines], loc="best")
        ax.grid(alpha=0.3)
        if title:
            ax.set_title(title)
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------- images
def caption_attention(model, image_processor, tokenizer, image, **generate_kwargs):
    """Caption ``image`` and return ``(maps (T, G, G) numpy, words (T), caption)``: the attention over the image
    grid while each word was predicted.

    As for text (:func:`hf_seq2seq.plotting.attention_matrix`), the caption is generated first (any decoding
    strategy) and the maps are read from one teacher-forced pass over it, so map ``t`` is the attention of the step
    that produced word ``t``. Steps that produce special tokens (``</s>``, padding) are left out.
    """
    import torch

    device = next(model.parameters()).device
    pixel_values = image_processor(images=[image], return_tensors="pt")["pixel_values"].to(device)
    with torch.no_grad():
        sequence = model.generate(pixel_values=pixel_values, num_return_sequences=1, **generate_kwargs)
        if hasattr(sequence, "sequences"):
            sequence = sequence.sequences
        sequence = sequence[:1]
        out = model(
            pixel_values=pixel_values,
            decoder_input_ids=sequence[:, :-1],
            output_attentions=True,
            return_dict=True,
        )
    maps = model.attention_maps(out.cross_attentions)[0]  # (T, G, G)
    special = set(tokenizer.all_special_ids)
    targets = sequence[0, 1:].tolist()
    keep = [t for t, tok in enumerate(targets) if tok not in special]
    words = [
        tokenizer.decode([targets[t]]).strip() or tokenizer.convert_ids_to_tokens(targets[t]) for t in keep
    ]
    caption = tokenizer.decode(sequence[0], skip_special_tokens=True).strip()
    return maps[keep].float().cpu().numpy(), words, caption


def plot_attention_over_image(
    image,
    attentions,
    words: Sequence[str],
    path,
    columns: int = 5,
    dpi: int = 100,
    max_words: int | None = None,
):
    """Draw the attention map of each generated word over the image (Xu et al. 2015, fig. 3).

    Args:
        image: PIL image (shown resized to a square, as the model saw it).
        attentions: (T, G, G) array/tensor — e.g. ``model.attention_maps(out.cross_attentions)[0]`` — one map per
            word; the map is upsampled to the image and overlaid.
        words: the T words (tokens) the maps belong to.
        path: output image file (PNG/SVG/...); parent folders are created.
        max_words: draw at most the first this many words (the figure says how many were cut); None draws all.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    maps = np.asarray(attentions.detach().cpu() if hasattr(attentions, "detach") else attentions, dtype=float)
    if maps.ndim != 3 or maps.shape[1] != maps.shape[2]:
        raise ValueError(f"plot_attention_over_image: `attentions` must be (T, G, G), got shape {maps.shape}")
    if len(words) != maps.shape[0]:
        raise ValueError(f"plot_attention_over_image: {len(words)} words for {maps.shape[0]} attention maps")
    shown_words, note = shown_tokens(words, max_words)
    maps, words = maps[:shown_words], list(words)[:shown_words]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    side = max(image.size)
    shown = np.asarray(image.convert("RGB").resize((side, side)))
    panels = 1 + len(words)
    columns = max(1, min(columns, panels))
    rows = (panels + columns - 1) // columns
    fig, axes = plt.subplots(
        rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(shown)
    axes.flat[0].set_title("image", fontsize=9)
    # one colour scale for every word (0 .. the largest weight of any map), so that brightness compares across
    # panels, and a colour bar that says what it means
    vmax = float(maps.max()) if maps.size and maps.max() > 0 else 1.0
    overlay = None
    for k, (word, amap) in enumerate(zip(words, maps), start=1):
        ax = axes.flat[k]
        ax.imshow(shown)
        overlay = ax.imshow(
            amap,
            cmap="gray",
            alpha=0.6,
            vmin=0.0,
            vmax=vmax,
            extent=(0, side, side, 0),
            interpolation="bilinear",
        )
        ax.set_title(word, fontsize=9)
    if overlay is not None:
        fig.colorbar(overlay, ax=axes, fraction=0.03, pad=0.02, label="attention weight")
    if note:
        fig.suptitle(f"{note} words shown", fontsize=9)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def draw_example_attention(model, image_processor, tokenizer, example, output_dir) -> tuple[Path, Path, str]:
    """Store ``example`` (PIL image or path) as ``output_dir/example.png``, caption it with the model's generation
    config and draw every word's attention over it (:func:`plot_attention_over_image`) as ``attention.png``;
    returns ``(example path, attention path, caption)``."""
    from PIL import Image

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
    attention_path = plot_attention_over_image(
        image, maps, words, output_dir / "attention.png", max_words=CARD_CAPTION_WORDS
    )
    return example_path, attention_path, caption


# ------------------------------------------------------------------------------------ hf-seq2seq analyze
def plot_length_curves(
    curves: Mapping[str, Sequence[dict]], path, caption: str | None = None, dpi: int = 100
) -> Path:
    """BLEU (left) and chrF (right) against source length, one line per model (Bahdanau et al. 2015, fig. 2).

    ``curves`` maps a model label to its buckets (:func:`hf_seq2seq.analysis.bucket_scores` rows: ``lo``, ``hi``,
    ``num_sentences``, ``mean_length``, ``bleu``, ``chrf``); a point sits at the bucket's mean source length.
    ``caption`` (e.g. the sacreBLEU signatures) is printed under the axes.
    """
    path = _check_path(path)
    if not curves:
        raise ValueError("plot_length_curves: no curves to draw")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.2), dpi=dpi, layout="constrained")
    try:
        for metric, ax in zip(("bleu", "chrf"), axes, strict=True):
            for label, rows in curves.items():
                rows = [r for r in rows if r["num_sentences"]]
                ax.plot([r["mean_length"] for r in rows], [r[metric] for r in rows], "o-", label=label, ms=3)
            ax.set_xlabel("source length (words), bucket mean")
            ax.set_ylabel("BLEU" if metric == "bleu" else "chrF")
            ax.grid(alpha=0.3)
        axes[0].legend(loc="best", fontsize=8)
        if caption:
            fig.supxlabel(textwrap.fill(caption, 150), fontsize=7)
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
    return path


def plot_alignment_grid(
    panels: Sequence[dict],
    source_words: Sequence[str],
    target_words: Sequence[str],
    path,
    gold: Sequence[tuple[int, int]] = (),
    dpi: int = 100,
) -> Path:
    """Word-level attention of the same sentence pair for several models, side by side.

    ``panels`` is a list of ``{"title": str, "matrix": (target words, source words) array}``; ``gold`` the sure
    ``(source, target)`` links, outlined in red on every panel so the eye can check each model against them.
    """
    path = _check_path(path)
    if not panels:
        raise ValueError("plot_alignment_grid: no panels to draw")
    rows, cols = len(target_words), len(source_words)
    for p in panels:
        if np.asarray(p["matrix"]).shape != (rows, cols):
            raise ValueError(
                f"panel {p['title']!r} has shape {np.asarray(p['matrix']).shape}, expected ({rows}, {cols})"
            )
    per_row = min(len(panels), 3)
    grid_rows = -(-len(panels) // per_row)
    cell = (max(3.0, 0.32 * cols + 1.6), max(2.5, 0.3 * rows + 1.6))
    plt = _pyplot()
    fig, axes = plt.subplots(
        grid_rows,
        per_row,
        figsize=(cell[0] * per_row, cell[1] * grid_rows),
        dpi=dpi,
        layout="constrained",
        squeeze=False,
    )
    try:
        for ax, panel in zip(axes.flat, panels, strict=False):
            matrix = np.asarray(panel["matrix"], dtype=float)
            ax.imshow(
                matrix, cmap="Greys", vmin=0.0, vmax=max(1e-9, float(matrix.max(initial=0.0))), aspect="auto"
            )
            for i, j in gold:
                ax.add_patch(plt.Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False, edgecolor="red", lw=0.8))
            ax.set_xticks(range(cols), source_words, rotation=90, fontsize=7)
            ax.set_yticks(range(rows), target_words, fontsize=7)
            ax.xaxis.tick_top()
            ax.set_title(panel["title"], fontsize=9)
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
    return path
