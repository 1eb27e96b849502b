"""scripts/alignment_aer.py (docs/results.md, "Word alignments"): the gold projected onto whitespace words, AER,
the symmetrizations, run end to end on Pharaoh files."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import alignment_aer  # noqa: E402

SOURCE, TARGET = "drei und zwanzig", "twenty-three"


def test_gold_is_projected_onto_whitespace_words_and_a_perfect_alignment_scores_zero():
    sure, possible = alignment_aer.projected_gold("numbers", SOURCE, TARGET)
    assert sure == {(0, 0), (2, 0)} and possible == sure | {(1, 0)}  # "und" ~ the hyphen inside twenty-three
    assert alignment_aer.aer([sure], [(sure, possible)]) == 0.0
    assert (
        alignment_aer.aer([{(1, 0)}], [(sure, possible)]) == 1 - 1 / 3
    )  # possible only: |A∩P| = 1, |A|+|S| = 3
    assert alignment_aer.projected_gold("numbers", SOURCE, "not a number") is None


def test_grow_diag_final_and_lies_between_intersection_and_union():
    fwd, rev = {(0, 0), (1, 1), (3, 2)}, {(0, 0), (1, 1), (2, 1), (3, 3)}
    links = alignment_aer.grow_diag_final_and(fwd, rev)
    assert fwd & rev <= links <= fwd | rev and (2, 1) in links


def test_the_script_scores_pharaoh_files(tmp_path, capsys):
    (tmp_path / "s").write_text(f"{SOURCE}\nneun\n", encoding="utf-8")
    (tmp_path / "t").write_text(f"{TARGET}\nnine\n", encoding="utf-8")
    (tmp_path / "a").write_text("0-0 2-0\n0-0\n", encoding="utf-8")
    (tmp_path / "r").write_text("2-0\n0-0\n", encoding="utf-8")
    files = [f"perfect={tmp_path / 'a'}", "--symmetrize", f"x={tmp_path / 'a'},{tmp_path / 'r'}"]
    assert alignment_aer.main(["--source", str(tmp_path / "s"), "--target", str(tmp_path / "t"), *files]) == 0
    out = capsys.readouterr().out
    assert (
        "2 of 2 pairs scored" in out and "| perfect | 0.000 | 0.000 |" in out and "| x union | 0.000 |" in out
    )
    # 0-0 is not next to 2-0, and final-and adds a link only when both its words are unaligned: gdfa = intersection
    assert "| x gdfa | 0.200 |" in out and "| x intersection | 0.200 |" in out
