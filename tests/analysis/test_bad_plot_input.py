"""Plots a user would misread: the captioning overlay has a colour bar.

Part of the bad-input catalogue (issues 8 and 16: one test per case, each asserting a clear message that
names the problem and the file / line / option, nothing overwritten); docs/reliability.md lists the cases."""

from __future__ import annotations


def test_captioning_overlay_has_a_colour_bar(tmp_path):
    import numpy as np
    from PIL import Image

    from hf_seq2seq.plotting import plot_attention_over_image

    maps = np.random.default_rng(0).random((2, 4, 4))
    path = plot_attention_over_image(Image.new("RGB", (32, 32)), maps, ["a", "square"], tmp_path / "att.svg")
    assert "attention weight" in path.read_text(encoding="utf-8")  # the colour bar's label
