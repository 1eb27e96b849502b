"""AER of Pharaoh alignment files against the gold alignment of a generated task (docs/results.md, "Word alignments").

    python scripts/alignment_aer.py --task numbers --source test.de --target test.en \
        align=align.txt eflomal_gdfa=eflomal.gdfa.txt [--reverse eflomal=fwd.txt,rev.txt]

Each ``LABEL=FILE`` is a Pharaoh file (``i-j``: source word i, target word j, 0-based whitespace words, one line per
pair of ``--source`` / ``--target``), e.g. from ``hf-seq2seq align`` or ``translate --alignments`` (then
``--target`` is the hypotheses file: only pairs the task could have generated are scored, the rest are counted).
``--symmetrize LABEL=FWD,REV`` adds the intersection, union and grow-diag-final-and (Koehn et al. 2005) of a forward
and a reverse alignment, both written as source-target links, as ``eflomal-align -f -r`` and ``fast_align [-r]``
write them.

The gold links of :func:`hf_seq2seq.tasks.gold_alignment` are over ``\\w+`` words and single punctuation marks;
they are projected onto whitespace words (``twenty-three`` holds ``twenty``, ``-``, ``three``): a whitespace pair is
a sure (possible) link when one of the word pairs inside it is. AER (Och & Ney 2003) over the corpus:
``1 - (|A ∩ S| + |A ∩ P|) / (|A| + |S|)``, with every link of ``A`` counted, and again with only the links of target
words that have a gold link (``hf-seq2seq analyze``'s convention: English "and" and the comma have no counterpart).
"""

from __future__ import annotations

import argparse
import sys

from hf_seq2seq.inference.alignment import read_pharaoh, whitespace_spans
from hf_seq2seq.tasks import gold_alignment, task_languages
from hf_seq2seq.tokenization import read_text_lines


def _containing(spans, inner) -> list[int]:
    """For each inner span, the index of the whitespace span that contains it."""
    return [next(k for k, (a, b) in enumerate(spans) if a <= s and e <= b) for s, e in inner]


def projected_gold(task: str, source: str, target: str) -> tuple[set, set] | None:
    """``(sure, possible)`` whitespace-word links of a pair, or None for a pair the task could not have made."""
    src, tgt = task_languages(task)
    try:
        gold = gold_alignment(task, {src: source, tgt: target})
    except ValueError:
        return None
    s_of = _containing(whitespace_spans(source), gold.source_spans)
    t_of = _containing(whitespace_spans(target), gold.target_spans)
    sure = {(s_of[i], t_of[j]) for i, j in gold.sure}
    return sure, sure | {(s_of[i], t_of[j]) for i, j in gold.possible}


def aer(hypotheses, golds, linked_only: bool = False) -> float:
    """Corpus AER; ``linked_only``: only the links of target words that have a gold link count in ``A`` (the
    convention of ``hf-seq2seq analyze``, which scores no attention of a word without a counterpart)."""
    a = s = a_s = a_p = 0
    for links, (sure, possible) in zip(hypotheses, golds, strict=True):
        links = set(links)
        if linked_only:
            linked = {j for _, j in possible}
            links = {(i, j) for i, j in links if j in linked}
        a, s = a + len(links), s + len(sure)
        a_s, a_p = a_s + len(links & sure), a_p + len(links & possible)
    return 1.0 - (a_s + a_p) / (a + s) if a + s else float("nan")


def grow_diag_final_and(fwd: set, rev: set) -> set:
    """Koehn et al.'s (2005) symmetrization of two directional alignments of one pair (``(source, target)`` links)."""
    links, union = fwd & rev, fwd | rev
    neighbours = [(-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]
    grew = True
    while grew:
        grew = False
        for i, j in sorted(links):
            for di, dj in neighbours:
                cand = (i + di, j + dj)
                if cand in union and cand not in links:
                    src_free = all(c[0] != cand[0] for c in links)
                    tgt_free = all(c[1] != cand[1] for c in links)
                    if src_free or tgt_free:
                        links.add(cand)
                        grew = True
    for direction in (fwd, rev):  # final-and: unaligned on both sides
        for cand in sorted(direction):
            if all(c[0] != cand[0] for c in links) and all(c[1] != cand[1] for c in links):
                links.add(cand)
    return links


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="numbers")
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--symmetrize", action="append", default=[], metavar="LABEL=FWD,REV")
    parser.add_argument("files", nargs="*", metavar="LABEL=FILE")
    args = parser.parse_args(argv)
    sources, targets = read_text_lines(args.source), read_text_lines(args.target)
    golds = [projected_gold(args.task, s, t) for s, t in zip(sources, targets, strict=True)]
    keep = [k for k, g in enumerate(golds) if g is not None]
    systems = {}
    for item in args.files:
        label, path = item.split("=", 1)
        systems[label] = read_pharaoh(path, sources, targets)
    for item in args.symmetrize:
        label, paths = item.split("=", 1)
        fwd_path, rev_path = paths.split(",")
        fwd = [set(x) for x in read_pharaoh(fwd_path, sources, targets)]
        rev = [set(x) for x in read_pharaoh(rev_path, sources, targets)]
        systems[f"{label} fwd"], systems[f"{label} rev"] = fwd, rev
        systems[f"{label} intersection"] = [f & r for f, r in zip(fwd, rev, strict=True)]
        systems[f"{label} union"] = [f | r for f, r in zip(fwd, rev, strict=True)]
        systems[f"{label} gdfa"] = [grow_diag_final_and(f, r) for f, r in zip(fwd, rev, strict=True)]
    print(f"{len(keep)} of {len(sources)} pairs scored (the others are not pairs of --task {args.task})")
    print("| alignment | AER | AER, gold-linked target words |\n|---|---:|---:|")
    for label, links in systems.items():
        hyp, gold = [links[k] for k in keep], [golds[k] for k in keep]
        print(f"| {label} | {aer(hyp, gold):.3f} | {aer(hyp, gold, linked_only=True):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
