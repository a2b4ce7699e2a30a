"""The quality annotator (``corpus.quality.mode: annotator``): the packaged teacher's grades, and the
classifier's agreement with them for ``features: embeddings`` against ``features: hashed``.

The input is real text from the NLTK data (the shared data folder): chunks of ``--chars`` characters
of ABC science and rural news, State of the Union speeches, movie reviews and web chat and forum
text (webtext). ``--annotations`` chunks, drawn evenly across the five and shuffled by the seed, are
graded 0-5 by the packaged SmolLM2-135M-Instruct on hare's rubric under the grade schema
(``hare.synth.annotate.grade``; answers cached in ``--cache``, so a second run asks nothing). Both
classifiers are fitted to the same grades with the same held-out split; the script prints, side by
side, their agreement with the teacher on the held-out grades (accuracy of the rounded prediction
against always answering the most common grade, Spearman, Pearson, F1 of grade >= 3), the seconds
to fit and the documents/s to score every chunk (the embedding model's start-up included), then per
source the teacher's grades and each classifier's predicted grades (rounded), and the share kept by
a band of min_score 0.6 (a predicted grade of at least 3, FineWeb-Edu's threshold). It does the
same for the chunks graded by their source (``BY_SOURCE``): a stand-in for a teacher whose grades
carry signal, which shows what each feature kind can learn of a grading that follows the kind of text.

    python benchmarks/quality_annotator.py --annotations 120

``--digit-probabilities`` also reads each sampled chunk's grade the G-Eval way (Liu et al. 2023): the
packaged teacher's answer prefilled up to ``{"score": ``, the softmax over the tokens ``0``-``5``, and
the expected value of that distribution in place of the argmax; it prints those grades per source
and their Spearman correlation with the grades by source.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from hare.core.teacher import TeacherConfig
from hare.filters.annotated import AnnotatedScorer, load_rubric
from hare.synth.annotate import grade, grade_requests

HERE = Path(__file__).resolve().parent
KINDS = ("embeddings", "hashed")
BY_SOURCE = {"science": 4, "rural": 3, "speeches": 2, "reviews": 1, "web": 0}
SOURCES = {"science": ("abc", "abc/science.txt"), "rural": ("abc", "abc/rural.txt"),
           "speeches": ("state_union", None), "reviews": ("movie_reviews", None), "web": ("webtext", None)}


def chunks(data: Path, corpus: str, member: str | None, chars: int, limit: int) -> list[str]:
    """Consecutive ``chars``-character chunks of a corpus's files (or of one member), at most ``limit``."""
    out: list[str] = []
    with zipfile.ZipFile(data / "nltk_corpora" / f"{corpus}.zip") as z:
        names = [member] if member else [n for n in z.namelist() if not n.endswith("/") and "README" not in n]
        for n in names:
            text = z.read(n).decode("utf-8", errors="replace")
            out += [text[i:i + chars] for i in range(0, len(text) - chars + 1, chars)]
            if len(out) >= 4 * limit:
                break
    return out


def hist(values) -> list[int]:
    c = Counter(int(v) for v in values)
    return [c.get(g, 0) for g in range(6)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--annotations", type=int, default=120)
    ap.add_argument("--chars", type=int, default=1000, help="characters of a chunk (all of it is graded)")
    ap.add_argument("--pool", type=int, default=200, help="chunks per source the sample and the scoring use")
    ap.add_argument("--holdout", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "hare-quality-annotator")
    ap.add_argument("--digit-probabilities", action="store_true",
                    help="also print the teacher's expected grades from its score-digit probabilities (G-Eval)")
    args = ap.parse_args()

    pools = {}
    for name, (corpus, member) in SOURCES.items():
        docs = chunks(args.data, corpus, member, args.chars, args.pool)
        random.Random(f"{args.seed}:{name}").shuffle(docs)
        pools[name] = docs[:args.pool]
    per = args.annotations // len(pools)
    sample = [(name, d) for name, docs in pools.items() for d in docs[:per]]
    teacher = TeacherConfig(packaged="smollm2", batch_size=8, threads=args.threads)
    t0 = time.perf_counter()
    grades, usage = grade([d for _, d in sample], load_rubric(), teacher, args.cache / "annotations.jsonl",
                          args.chars, 8, args.seed)
    seconds = time.perf_counter() - t0
    graded = [(name, d, g) for (name, d), g in zip(sample, grades) if g is not None]
    print(f"teacher: packaged SmolLM2-135M-Instruct, {len(sample)} chunks of {args.chars} characters, "
          f"{len(graded)} graded; {usage['sent']} requests sent, {usage['cached']} cached, {seconds:.1f} s")
    print("teacher's grades 0..5:", hist(g for _, _, g in graded))
    names = [n for n, _, _ in graded]
    texts, ys = [d for _, d, _ in graded], [g for _, _, g in graded]
    compare("the teacher's grades", names, texts, ys, pools, args)
    # The same documents graded by their source: a stand-in for a teacher whose grades carry signal,
    # to compare what each feature kind can learn of a grading that follows the kind of text.
    compare("grades by source " + json.dumps(BY_SOURCE), names, texts, [BY_SOURCE[n] for n in names], pools, args)
    if args.digit_probabilities:
        expected_grades(sample, teacher, args)


def expected_grades(sample: list[tuple[str, str]], teacher: TeacherConfig, args) -> None:
    """The packaged teacher's expected grade of each chunk from its probabilities of the digits 0-5 at
    the grade's place (the prompt the annotator sends, ``grade_requests``), per source, and their
    Spearman correlation with the grades by source."""
    import torch
    from scipy.stats import spearmanr
    from tqdm import tqdm

    from hare.synth.teacher import make_backend

    backend = make_backend(teacher.model_copy(update={"dtype": "float32"}))
    if args.threads:
        torch.set_num_threads(args.threads)
    tok, model = backend.tok, backend.model
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(6)]
    reqs = grade_requests([d for _, d in sample], load_rubric(), teacher, args.chars, 8, args.seed)
    expected: list[float] = []
    argmax: list[int] = []
    for req in tqdm(reqs, desc="expected grades", unit="doc"):
        ids = tok(backend.prompt_text(req) + '{"score": ', add_special_tokens=False, return_tensors="pt").input_ids
        with torch.inference_mode():
            p = torch.softmax(model(ids).logits[0, -1, digits].float(), dim=-1)
        expected.append(float((p * torch.arange(6)).sum()))
        argmax.append(int(p.argmax()))
    names = [n for n, _ in sample]
    print("\n== the teacher's expected grades (softmax over the digits 0-5 at the grade's place)")
    for name in SOURCES:
        e = [x for n, x in zip(names, expected) if n == name]
        print(f"{name:10} mean {np.mean(e):.3f}  min {min(e):.3f}  max {max(e):.3f}  argmax "
              f"{hist(a for n, a in zip(names, argmax) if n == name)}")
    rho = spearmanr(expected, [BY_SOURCE[n] for n in names])
    print(f"Spearman with the grades by source: {rho.statistic:.3f} (p = {rho.pvalue:.3f}, {len(expected)} chunks)")


def compare(title: str, names: list[str], texts: list[str], ys: list[int], pools: dict[str, list[str]],
            args) -> None:
    """Fit both feature kinds to ``ys`` (same split) and print their agreement side by side."""
    print(f"\n== {title}: {hist(ys)} (counts of 0..5)")
    everything = [d for docs in pools.values() for d in docs]
    results, predicted = {}, {}
    for kind in KINDS:
        scorer = AnnotatedScorer(kind, max_chars=args.chars, seed=args.seed, threads=args.threads)
        t0 = time.perf_counter()
        fit = scorer.fit(texts, ys, args.holdout, threshold=3)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        predicted[kind] = scorer.predict(everything)
        results[kind] = (fit, t_fit, len(everything) / (time.perf_counter() - t0))
    h = {k: r[0]["heldout"] for k, r in results.items()}
    rows = [("held-out grades", "n", "{}"), ("accuracy (rounded)", "accuracy", "{:.3f}"), ("MAE", "mae", "{:.3f}"),
            ("Spearman", "spearman", "{}"), ("Pearson", "pearson", "{}"), ("F1 of grade >= 3", "f1", "{:.3f}")]
    print(f"{'':28}" + "".join(f"{k:>14}" for k in KINDS))
    for label, key, fmt in rows:
        print(f"{label:28}" + "".join(f"{fmt.format(h[k][key]):>14}" for k in KINDS))
    print(f"{'most common grade accuracy':28}" + "".join(f"{results[k][0]['baseline_accuracy']:>14.3f}" for k in KINDS))
    print(f"{'fit seconds':28}" + "".join(f"{results[k][1]:>14.1f}" for k in KINDS))
    print(f"{'scoring documents/s':28}" + "".join(f"{results[k][2]:>14.1f}" for k in KINDS))
    print(f"per source: grades of its sample; predicted grades (rounded) of its {args.pool} chunks; share kept by "
          "min_score 0.6")
    at = 0
    for name, docs in pools.items():
        line = f"{name:10} graded {hist(y for n, y in zip(names, ys) if n == name)}"
        for kind in KINDS:
            p = predicted[kind][at:at + len(docs)]
            line += f"  {kind} {hist(np.rint(p))} kept {np.mean(p >= 3):.2f}"
        print(line)
        at += len(docs)


if __name__ == "__main__":
    main()
