"""Tokenizing (the tokenize step's work): train (or load) a tokenizer, then pack the mix into one flat token file.

Packing (as nanoGPT and litgpt do): every document's tokens followed by EOS, concatenated into one
memory-mapped array (uint16 when the vocabulary fits, else uint32). Sequence ``i`` is the window
``tokens[i*L : i*L + L + 1]`` (inputs are its first L tokens, targets its last L), so there is no
padding and no token is wasted except the tail that does not fill a window.

Outputs: tokenizer/ (a Hugging Face tokenizer folder) and, for each data part, <part>/tokens.bin,
<part>/doc_offsets.npy (start of each document in tokens.bin) and <part>/index.json; index.json and
stats.json (``TokenizeStats``) describe every part.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np

from hare.core.documents import read_shards, shard_paths
from hare.core.io import atomic_path, read_json, write_json
from hare.core.progress import Progress
from hare.core.tokenizer import load_tokenizer
from hare.train.stats import PartIndex, TokenizeStats

log = logging.getLogger("hare.train.pack")

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2 as in Mistral's tokenizer


def train_tokenizer(texts, vocab_size: int, out_dir: Path):
    """Byte-level BPE (GPT-2 style pre-tokenization) trained on ``texts``; saved as a HF tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                 model_max_length=1 << 30)
    hf.save_pretrained(out_dir)
    return hf


def token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32


def encode_into(backend, texts, f, eos: int, dtype, batch_docs: int = 512, on_batch=None) -> list[int]:
    """Write the tokens of ``texts`` to ``f``, EOS after each; returns each document's length in tokens.

    Texts are encoded a batch at a time (the Rust tokenizer spreads a batch over its threads).
    """
    lens: list[int] = []
    batch: list[str] = []
    for t in itertools.chain(texts, [None]):
        if t is not None:
            batch.append(t)
        if batch and (t is None or len(batch) >= batch_docs):
            for enc in backend.encode_batch(batch, add_special_tokens=False):
                np.asarray(enc.ids + [eos], dtype=dtype).tofile(f)
                lens.append(len(enc.ids) + 1)
            if on_batch is not None:
                on_batch(len(batch))
            batch = []
    return lens


def _save_offsets(path: Path, lens) -> np.ndarray:
    offsets = np.concatenate([[0], np.cumsum(np.asarray(lens, dtype=np.int64))]).astype(np.int64)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, offsets)
    return offsets


def pack_documents(texts, tokenizer, out_dir: Path, seq_len: int, batch_docs: int = 512,
                   total_docs: int | None = None) -> dict:
    """Tokenize ``texts`` in this process into tokens.bin (``pack_shards`` spreads shards over processes)."""
    eos = tokenizer.eos_token_id
    dtype = token_dtype(len(tokenizer))
    bar = Progress(total=total_docs, desc="tokenize and pack", unit="doc")
    with atomic_path(out_dir / "tokens.bin") as tmp, open(tmp, "wb") as f:
        lens = encode_into(tokenizer.backend_tokenizer, texts, f, eos, dtype, batch_docs, bar.update)
    bar.close()
    offsets = _save_offsets(out_dir / "doc_offsets.npy", lens)
    return _write_index(out_dir, dtype, int(offsets[-1]), len(offsets) - 1, seq_len, eos, len(tokenizer))


def _write_index(out_dir: Path, dtype, n_tokens: int, n_docs: int, seq_len: int, eos: int, vocab: int) -> dict:
    n_seq = max(0, (n_tokens - 1) // seq_len)
    index = {"dtype": np.dtype(dtype).name, "num_tokens": n_tokens, "num_docs": n_docs, "seq_len": seq_len,
             "num_sequences": n_seq, "eos_id": eos, "vocab_size": vocab,
             "unused_tail_tokens": n_tokens - n_seq * seq_len - (1 if n_seq else 0)}
    write_json(out_dir / "index.json", index)
    return index


def _tokenize_shard(job: tuple[str, str, str, int, int]) -> tuple[int, int]:
    """Worker: tokenize one shard of documents into ``<work>/<i>.bin`` and ``<i>.len.npy``.

    Both files are written atomically and an existing pair is reused, so a killed tokenize step
    picks up at the first unfinished shard.
    """
    from tokenizers import Tokenizer

    from hare.core.io import read_jsonl

    shard, tok_file, work, i, eos = job
    work_dir = Path(work)
    bin_path, len_path = work_dir / f"{i:05d}.bin", work_dir / f"{i:05d}.len.npy"
    if bin_path.exists() and len_path.exists():
        lens = np.load(len_path)
        return len(lens), int(lens.sum())
    tok = Tokenizer.from_file(tok_file)
    dtype = token_dtype(tok.get_vocab_size(with_added_tokens=True))
    with atomic_path(bin_path) as tmp, open(tmp, "wb") as f:
        lens = encode_into(tok, (rec["text"] for rec in read_jsonl(shard)), f, eos, dtype)
    with atomic_path(len_path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(lens, dtype=np.int64))
    return len(lens), int(sum(lens))


def pack_shards(shards: list[Path], tokenizer, tokenizer_dir: Path, out_dir: Path, seq_len: int,
                num_proc: int = 0) -> dict:
    """Tokenize document shards in worker processes, then join them in shard order into tokens.bin.

    The result is byte for byte what ``pack_documents`` writes for the same documents in the same
    order; the work is spread over ``num_proc`` processes (0: one per core) and resumes per shard.
    """
    import os
    import shutil

    from hare.core.execution import ordered_map, process_pool

    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / ".shards"
    work.mkdir(exist_ok=True)
    eos = tokenizer.eos_token_id
    dtype = token_dtype(len(tokenizer))
    jobs = [(str(p), str(tokenizer_dir / "tokenizer.json"), str(work), i, eos) for i, p in enumerate(shards)]
    procs = min(len(jobs), num_proc or os.cpu_count() or 1)
    bar = Progress(total=len(jobs), desc=f"tokenize {out_dir.name}", unit="shard")
    if procs > 1:
        # Each worker tokenizes on one thread: the processes are the parallelism. Spawned, not forked,
        # because the Rust tokenizer's thread pool does not survive a fork.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        with process_pool(procs, f"tokenizing {out_dir.name}", start="spawn") as pool:
            for _ in ordered_map(pool, _tokenize_shard, jobs, 2 * procs):
                bar.update(1)
        os.environ.pop("TOKENIZERS_PARALLELISM", None)
    else:
        for job in jobs:
            _tokenize_shard(job)
            bar.update(1)
    bar.close()
    lens = [np.load(work / f"{i:05d}.len.npy") for i in range(len(jobs))]
    with atomic_path(out_dir / "tokens.bin") as tmp, open(tmp, "wb") as f:
        for i in range(len(jobs)):
            with open(work / f"{i:05d}.bin", "rb") as part:
                shutil.copyfileobj(part, f, 1 << 24)
    offsets = _save_offsets(out_dir / "doc_offsets.npy", np.concatenate(lens) if lens else [])
    index = _write_index(out_dir, dtype, int(offsets[-1]), len(offsets) - 1, seq_len, eos, len(tokenizer))
    shutil.rmtree(work)
    return index


class PackedTokens:
    """Read side of a packed token file: fixed windows, ordered by a seeded permutation per epoch."""

    def __init__(self, folder: str | Path, seed: int | list[int] = 0, holdout: int = 0):
        self.folder = Path(folder)
        self.index = read_json(self.folder / "index.json")
        self.seq_len = self.index["seq_len"]
        total = self.index["num_sequences"]
        if total == 0:
            raise ValueError(f"{self.folder}: fewer than {self.seq_len + 1} tokens, no training sequence")
        if holdout and total <= holdout:
            raise ValueError(f"{self.folder}: {total} sequences, not more than the {holdout} held out "
                             f"(train.distill.ddk.heldout_windows)")
        self.holdout = holdout
        self.n = total - holdout  # the last ``holdout`` windows are never sampled
        self.seed = seed
        self._perm: tuple[int, np.ndarray] | None = None

    def tokens(self) -> np.memmap:
        # A fresh memmap per call: a long-lived one keeps every touched page resident (nanoGPT's note).
        return np.memmap(self.folder / "tokens.bin", dtype=self.index["dtype"], mode="r")

    def sequence_id(self, g: int) -> int:
        """The window read at global sample position ``g`` (epoch g // n, shuffled within the epoch)."""
        epoch, pos = divmod(g, self.n)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return int(self._perm[1][pos])

    def heldout(self) -> np.ndarray:
        """The held-out windows (the last ``holdout`` of the part), (holdout, L + 1) tokens."""
        data, L = self.tokens(), self.seq_len
        return np.stack([np.asarray(data[i * L: i * L + L + 1], dtype=np.int64)
                         for i in range(self.n, self.n + self.holdout)]) if self.holdout else \
            np.zeros((0, L + 1), dtype=np.int64)

    def batch(self, start: int, size: int) -> tuple[np.ndarray, list[int]]:
        """``size`` windows of L+1 tokens for global positions start..start+size-1, and their ids."""
        data = self.tokens()
        ids = [self.sequence_id(g) for g in range(start, start + size)]
        L = self.seq_len
        out = np.stack([np.asarray(data[i * L: i * L + L + 1], dtype=np.int64) for i in ids])
        return out, ids


def part_dirs(folder: str | Path) -> dict[str, Path]:
    """The packed data parts of a tokenize step's folder: part name -> folder."""
    return {p.parent.name: p.parent for p in sorted(Path(folder).glob("*/index.json"))}


def tokenizer_path(cfg) -> str | None:
    """The folder of the tokenizer ``cfg`` (the recipe's ``tokenizer``) loads: ``path``, or the packaged
    model's (``packaged``); None when one is trained."""
    if cfg.path and cfg.packaged:
        raise ValueError("tokenizer: set path or packaged, not both")
    if cfg.packaged == "smollm2":
        from hare.core.packaged import smollm2_folder

        return str(smollm2_folder())
    return cfg.path


def tokenize_mix(mix: Path, out: Path, tokenizer_cfg, pack_cfg, workers: int = 0) -> TokenizeStats:
    """Train (or load) the tokenizer and pack every data part of the mix (``mix/<part>/``) into
    ``out/<part>/`` (the tokenize step's work) with ``workers`` processes (0: one per core; the
    token files do not depend on it); ``tokenizer_cfg`` and ``pack_cfg``: the recipe's ``tokenizer``
    and ``pack``."""
    tok_dir = out / "tokenizer"
    source = tokenizer_path(tokenizer_cfg)
    if source:
        tokenizer = load_tokenizer(source)
        tokenizer.save_pretrained(tok_dir)
    else:
        def sample():
            for i, d in enumerate(read_shards(mix)):
                if i >= tokenizer_cfg.train_docs:
                    return
                yield d.text

        log.info("training a byte-level BPE tokenizer (vocab %d)", tokenizer_cfg.vocab_size)
        tokenizer = train_tokenizer(sample(), tokenizer_cfg.vocab_size, tok_dir)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer {source or tok_dir} has no EOS token; packing needs one")
    parts: dict[str, PartIndex] = {}
    for part_dir in sorted(p for p in mix.iterdir() if p.is_dir()):
        index = PartIndex(**pack_shards(shard_paths(part_dir), tokenizer, tok_dir, out / part_dir.name,
                                        pack_cfg.seq_len, num_proc=workers))
        log.info("part %s: %d documents, %d tokens (%d sequences of %d)", part_dir.name, index.num_docs,
                 index.num_tokens, index.num_sequences, index.seq_len)
        parts[part_dir.name] = index
    stats = TokenizeStats(parts=parts, num_tokens=sum(i.num_tokens for i in parts.values()),
                          num_docs=sum(i.num_docs for i in parts.values()), vocab_size=len(tokenizer))
    write_json(out / "index.json", stats.dump())
    return stats
