"""Crawl-like noise made deterministically from clean documents: the raw arm of the study.

Real web crawls carry, beside their useful documents (the HARE paper, Section 2; FineWeb and
Gopher's filter statistics), exact copies of pages, near-copies (the same page with a changed
date, a counter or a few words), navigation and boilerplate lines around the text, lines or whole
pages in other languages, keyword spam, and now and then a benchmark item quoted somewhere. The
study's raw input is the clean training documents with each of these added at the rates of
``Noise``, chosen by a seeded generator so that the same documents and seed give the same raw
input byte for byte. Every noisy document records its kind in ``noise`` (the counts go to the
study's report; no arm reads the field).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Iterable

from pydantic import BaseModel, Field

# Lines that surround the text of crawled pages: menus, cookie banners, share buttons, footers.
NAVIGATION = [
    "Home | About us | Contact | Privacy policy | Terms of use",
    "Skip to main content",
    "Menu  Search  Log in  Sign up",
    "Share this: Facebook Twitter Email Print",
    "This website uses cookies to ensure you get the best experience on our website. Accept cookies",
    "Copyright 2024. All rights reserved.",
    "Click here to subscribe to our newsletter",
    "Previous post | Next post",
    "Posted in Uncategorized | Leave a comment",
    "Related articles",
    "Read more >>",
    "Back to top",
    "Sponsored links",
    "Please enable JavaScript to view the comments.",
]

# Short sentences in other languages (written for this module), for pages and lines a language
# filter must find.
FOREIGN = {
    "de": ["Die Stadt liegt am Ufer eines breiten Flusses und hat viele alte Brücken.",
           "Wir haben am Wochenende einen langen Spaziergang durch den Wald gemacht.",
           "Das Wetter war kalt, aber die Sonne schien den ganzen Tag.",
           "Bitte schicken Sie mir die Unterlagen bis morgen Nachmittag.",
           "In der Bibliothek gibt es mehr als zehntausend Bücher über Geschichte."],
    "fr": ["La ville se trouve au bord d'une grande rivière et possède de vieux ponts.",
           "Nous avons fait une longue promenade dans la forêt pendant le week-end.",
           "Il faisait froid, mais le soleil a brillé toute la journée.",
           "Merci de m'envoyer les documents avant demain après-midi.",
           "La bibliothèque contient plus de dix mille livres d'histoire."],
    "es": ["La ciudad está a orillas de un río ancho y tiene muchos puentes antiguos.",
           "El fin de semana dimos un largo paseo por el bosque.",
           "Hacía frío, pero el sol brilló durante todo el día.",
           "Por favor, envíeme los documentos antes de mañana por la tarde.",
           "La biblioteca tiene más de diez mil libros de historia."],
    "it": ["La città si trova sulla riva di un grande fiume e ha molti ponti antichi.",
           "Durante il fine settimana abbiamo fatto una lunga passeggiata nel bosco.",
           "Faceva freddo, ma il sole è splenduto per tutto il giorno.",
           "Per favore, mi mandi i documenti entro domani pomeriggio.",
           "La biblioteca possiede più di diecimila libri di storia."],
    "nl": ["De stad ligt aan de oever van een brede rivier en heeft veel oude bruggen.",
           "In het weekend hebben we een lange wandeling door het bos gemaakt.",
           "Het was koud, maar de zon scheen de hele dag.",
           "Stuur me de documenten alstublieft voor morgenmiddag.",
           "De bibliotheek heeft meer dan tienduizend boeken over geschiedenis."],
}

SPAM = ["Best {w} deals online, cheap {w} at the lowest price!",
        "Buy {w} now and get free shipping on every {w} order.",
        "{w} {w} {w} discount sale today only, click to buy {w}.",
        "Top 10 {w} offers you will not believe, limited {w} stock."]


class Noise(BaseModel):
    """Rates of each kind of noise, as shares of the clean training documents."""

    exact_duplicates: float = Field(0.2, ge=0, le=1, description="Documents copied verbatim (1-4 extra copies).")
    near_duplicates: float = Field(0.2, ge=0, le=1, description="Documents copied with about 1 word in 40 changed "
                                   "and a different navigation line (1-3 copies).")
    boilerplate: float = Field(0.3, ge=0, le=1, description="Documents wrapped in navigation and boilerplate lines.")
    foreign_lines: float = Field(0.1, ge=0, le=1, description="Documents with a paragraph in another language.")
    foreign_pages: float = Field(0.05, ge=0, le=1, description="Extra whole pages in other languages.")
    spam: float = Field(0.05, ge=0, le=1, description="Extra keyword-spam pages built from the corpus's words.")
    benchmark_items: int = Field(40, ge=0, description="Benchmark items (question and answer) planted in documents, "
                                 "when benchmark files are given.")


def _words(texts: list[str], rng: random.Random, n: int = 200) -> list[str]:
    counts = Counter(w for t in texts[:500] for w in t.split() if w.isalpha() and len(w) > 4)
    common = sorted(w.lower() for w, _ in counts.most_common(n))
    rng.shuffle(common)
    return common or ["product"]


def _near_copy(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    for i in range(len(words)):
        if rng.random() < 1 / 40 and words[i].isalpha():
            words[i] = words[rng.randrange(len(words))]
    return " ".join(words)


def _wrap(text: str, rng: random.Random) -> str:
    head = rng.sample(NAVIGATION, 3)
    foot = rng.sample(NAVIGATION, 3)
    return "\n".join(head) + "\n\n" + text + "\n\n" + "\n".join(foot)


def _foreign(rng: random.Random, sentences: int) -> str:
    lang = rng.choice(sorted(FOREIGN))
    return " ".join(rng.choice(FOREIGN[lang]) for _ in range(sentences))


def _spam(words: list[str], rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(8, 20)):
        lines.append(rng.choice(SPAM).format(w=rng.choice(words[:20])))
    return "\n".join(lines)


def add_noise(docs: Iterable[dict], noise: Noise, seed: int, items: list[str] = ()) -> tuple[list[dict], dict]:
    """The raw input: ``docs`` (records with ``id`` and ``text``) with noise added, and its counts.

    Records keep their order; copies and extra pages are inserted at seeded positions. Each record
    gets ``noise``: the kinds applied to it (empty for an untouched document)."""
    rng = random.Random(f"hare-study-noise-{seed}")
    docs = [dict(d) for d in docs]
    words = _words([d["text"] for d in docs], rng)
    counts: Counter[str] = Counter()
    out: list[dict] = []
    for d in docs:
        d["noise"] = []
        if rng.random() < noise.boilerplate:
            d["text"] = _wrap(d["text"], rng)
            d["noise"].append("boilerplate")
        if rng.random() < noise.foreign_lines:
            paras = d["text"].split("\n\n")
            paras.insert(rng.randrange(len(paras) + 1), _foreign(rng, rng.randint(2, 4)))
            d["text"] = "\n\n".join(paras)
            d["noise"].append("foreign_lines")
        out.append(d)
    extra: list[dict] = []
    for d in out:
        if rng.random() < noise.exact_duplicates:
            for c in range(rng.randint(1, 4)):
                extra.append({"id": f"{d['id']}#copy{c}", "text": d["text"], "noise": ["exact_duplicate"]})
        if rng.random() < noise.near_duplicates:
            for c in range(rng.randint(1, 3)):
                text = _near_copy(d["text"], rng) + "\n" + rng.choice(NAVIGATION)
                extra.append({"id": f"{d['id']}#near{c}", "text": text, "noise": ["near_duplicate"]})
    n = len(out)
    for i in range(round(noise.foreign_pages * n)):
        extra.append({"id": f"foreign-{i}", "text": "\n\n".join(_foreign(rng, rng.randint(4, 8)) for _ in range(4)),
                      "noise": ["foreign_page"]})
    for i in range(round(noise.spam * n)):
        extra.append({"id": f"spam-{i}", "text": _spam(words, rng), "noise": ["spam"]})
    if items and out:
        for i, item in enumerate(rng.sample(list(items), min(noise.benchmark_items, len(items)))):
            d = out[rng.randrange(len(out))]
            paras = d["text"].split("\n\n")
            paras.insert(rng.randrange(len(paras) + 1), item)
            d["text"] = "\n\n".join(paras)
            d["noise"].append("benchmark_item")
    for e in extra:  # insert every extra page at a seeded position
        out.insert(rng.randrange(len(out) + 1), e)
    for d in out:
        counts.update(d["noise"])
    return out, {"clean_docs": n, "raw_docs": len(out), **dict(sorted(counts.items()))}
