"""The synthetic-data stage's configuration: the teacher, D2 and D3 (the recipe key ``synth``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hare.core.config import EXECUTION, Config, input_path
from hare.core.teacher import TeacherConfig


class D2Config(Config):
    """Topic-seeded synthetic text (the paper's D2): seed documents per topic, prompts per source category,
    style and audience."""

    docs_per_topic: int = Field(4, ge=0, description="Generations per topic: the same for every topic, so rare "
                                "topics are covered as well as common ones.")
    nearest_seeds: int = Field(2, ge=0, description="Seeds per topic from the documents nearest its centroid.")
    sampled_seeds: int = Field(2, ge=0, description="Seeds per topic drawn (seeded) from its other members.")
    seed_chars: int = Field(1500, ge=100, description="Characters of a seed document put into the prompt.")
    categories: dict[str, str] = Field(
        default_factory=dict, description="Source name -> category (web, wiki, news, academic, books, law, code, "
        "math): the prompt family of its seeds. Unnamed sources are web."
    )
    styles: list[str] = Field(
        default_factory=lambda: ["textbook_unit", "textbook_narrative", "blog_post", "how_to", "story"],
        description="Styles drawn from per generation (template files templates/d2/<style>.txt).")
    audiences: list[str] = Field(
        default_factory=lambda: ["young_children", "high_school", "college", "researchers"],
        description="Audiences drawn from per generation.")
    max_tokens: int = Field(2048, ge=16, description="Cap of each generation in tokens (the paper: about 2k).")
    temperature: float = Field(0.8, ge=0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling.")
    frequency_penalty: float = Field(0.0, ge=-2, le=2, description="OpenAI's frequency penalty of topic "
                                     "generations: a token's logit lowered this much per time the answer already "
                                     "holds it (its prompt's tokens are free).")
    presence_penalty: float = Field(0.0, ge=-2, le=2, description="OpenAI's presence penalty of topic "
                                    "generations: a token's logit lowered this much once the answer holds it.")
    min_words: int = Field(50, ge=0, description="Generations with fewer words are rejected (cleaning's rule).")
    decontam_ngram: int = Field(13, ge=1, description="n of the decontamination of D2 (the paper: 10-15 for long "
                                "synthetic text).")
    decontam_threshold: float = Field(0.5, ge=0, le=1, description="Drop a generation with more of its n-grams "
                                      "in evaluation data than this (the paper: 50 %).")
    rephrase_per_topic: int = Field(0, ge=0, description="Rephrases per topic: seed documents rewritten in a style "
                                    "drawn from rephrase_styles, keeping their content (WRAP, Maini et al. 2024). "
                                    "0: none.")
    rephrase_styles: list[str] = Field(
        default_factory=lambda: ["encyclopedic", "simple", "qa", "textbook"], min_length=1,
        description="Styles drawn from per rephrase (template files templates/d2/rephrase/<style>.txt).")
    rephrase_chars: int = Field(1500, ge=100, description="Characters of the source document given to the teacher "
                                "to rephrase (and compared with its rephrase in curation).")
    rephrase_max_tokens: int = Field(512, ge=16, description="Cap of each rephrase in tokens: room for a rewrite "
                                     "of the ~350 tokens of a 1500-character English source.")
    rephrase_temperature: float = Field(0.3, ge=0, description="Sampling temperature of rephrases: low, since a "
                                        "rephrase should keep to its source (topic generations: temperature).")
    rephrase_frequency_penalty: float = Field(0.0, ge=-2, le=2, description="frequency_penalty of rephrases.")
    rephrase_presence_penalty: float = Field(0.0, ge=-2, le=2, description="presence_penalty of rephrases.")
    min_fidelity: float = Field(0.55, ge=-1, le=1, description="Curation drops a rephrase whose embedding cosine "
                                "with its source (all-MiniLM-L6-v2) is below this (rephrase_drift); measured: "
                                "docs/synthetic-data.md.")


class LabelledDataset(Config):
    """A labelled dataset of the user's, converted into natural-language samples (no teacher)."""

    name: str = Field(description="Short name, recorded on every sample.")
    path: str = Field(description="A JSONL, JSON or Parquet file (or a glob).",
                      json_schema_extra=input_path("any", glob=True))
    format: Literal["auto", "qa", "instruction", "messages"] = Field(
        "auto", description="qa: question/answer fields; instruction: instruction[/input|context]/response "
        "(or output); messages: a list of {role, content}; auto: by the fields of each record.")
    limit: int | None = Field(None, ge=1, description="Convert at most this many records.")


class D3Config(Config):
    """NLP tasks in natural-language form (the paper's D3): teacher-written tasks and converted datasets."""

    tasks: list[Literal["qa", "mc", "cloze", "summary"]] = Field(
        default_factory=lambda: ["qa", "mc", "cloze", "summary"], description="Teacher-written task types.")
    seeds_from_d2: int = Field(8, ge=0, description="Passages taken from the D2 generations as task seeds.")
    seeds_from_d1: int = Field(8, ge=0, description="Passages taken (seeded) from the D1 documents as task seeds.")
    passage_chars: int = Field(1200, ge=100, description="Characters of a seed passage put into the prompt.")
    max_tokens: int = Field(384, ge=16, description="Cap of each teacher answer in tokens.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling.")
    constrain: bool = Field(True, description="Decode the qa, mc and cloze answers under their JSON Schema: "
                            "a grammar engine (llguidance) with a local teacher, response_format with endpoints "
                            "(a server that ignores it is caught by the validation and re-asks).")
    mc_distractors: Literal["teacher", "passage"] = Field(
        "teacher", description="Who writes a multiple-choice item's three wrong answers. teacher: the teacher, "
        "with the question and the right answer; passage: the teacher writes the question and picks its answer "
        "among the passage's terms, and hare picks three other terms of the passage (of the answer's kind "
        "first) as the wrong ones, which are then different by construction (for small teachers, which repeat "
        "their wrong answers).")
    max_reasks: int = Field(2, ge=0, description="Times an answer that fails its JSON schema or the meaning "
                            "checks is asked again before it is quarantined with its raw text.")
    max_sample_tokens: int = Field(512, ge=16, description="Samples longer than this (teacher tokenizer, or an "
                                   "estimate for endpoints) are dropped (the paper: 512).")
    datasets: list[LabelledDataset] = Field(default_factory=list, description="Labelled datasets to convert.")
    decontam_ngram: int = Field(8, ge=1, description="n of the decontamination of D3 (the paper: 4-8 for short "
                                "task samples).")
    decontam_threshold: float = Field(0.5, ge=0, le=1, description="Drop a sample with more of its n-grams in "
                                      "evaluation data than this (the paper: 50 %).")


class SynthConfig(Config):
    """Synthetic data from a teacher: D2 (topic-seeded text) and D3 (tasks), each a data part."""

    enabled: bool = Field(False, description="Generate D2 and D3 (data parts d2 and d3 for train.stages).")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="The teacher model.")
    templates_dir: str | None = Field(
        None, description="A folder of prompt templates laid out like hare/synth/templates/ (d2/, d3/); a file "
        "found there replaces the packaged one of the same name.", json_schema_extra=input_path("dir"))
    cache_dir: str | None = Field(
        None, description="Folder of the request caches (default: <run>/synth-cache). It outlives a step's "
        "folder, so a changed budget or template re-sends only the requests it changes.",
        json_schema_extra=EXECUTION)
    d2: D2Config = Field(default_factory=D2Config, description="D2: topic-seeded synthetic text.")
    d3: D3Config = Field(default_factory=D3Config, description="D3: NLP tasks in natural-language form.")
