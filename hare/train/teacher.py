"""The teacher step: the teacher's next-token distribution over the packed tokens, computed once.

Distillation (``train.distill``, ``hare.model.distill``) trains the student on the teacher's
distribution at every position. A CPU cannot run a 135M-parameter teacher beside every training
step, and a study trains many students on the same tokens, so this step runs the teacher once over
every packed window (the same windows of ``seq_len`` tokens the student reads, so both models see
the same context) and stores, per position, its ``top_k`` most likely next tokens and their
log-probabilities at ``train.distill.temperature``; the rest of the mass is implied (one remainder
term). Training then reads them (sparse KD, as in Gemma 2's and MiniLLM's offline variants; the
``online`` source runs the teacher beside every micro-batch instead, the GPU option).

Outputs, per data part ``<part>/``:

- ``topk_ids.bin``: (windows x seq_len, top_k) token ids, uint16 when the vocabulary fits, else int32;
- ``topk_logp.bin``: the same shape of float16 log-probabilities, most likely first;
- ``window_loss.bin``: float32, the teacher's mean cross-entropy (nats per token, temperature 1) of
  every window, which DDK compares the student's with;
- ``teacher.json``: what was computed (teacher, k, temperature, shapes, seconds, bytes per token).

Disk: ``top_k x 4`` bytes a token (128 at k = 32). Memory: one block of ``batch_windows`` windows'
logits per worker. The files are filled block by block in place (under temporary names), and
``progress.json`` records how many windows are done only after their block is flushed; a step killed
at any point (``kill -9``) resumes at that count and rewrites the block it was in with the same bytes,
then renames the files into place. With ``workers`` > 1, blocks go to processes that each hold a copy
of the teacher (``hare.core.execution.process_pool``); the files do not depend on the count.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from hare.core.io import read_json, write_json
from hare.core.progress import Progress
from hare.train.pack import part_dirs
from hare.train.stats import TeacherPart, TeacherStats

log = logging.getLogger("hare.train.teacher")

IDS, LOGP, WINDOW_LOSS = "topk_ids.bin", "topk_logp.bin", "window_loss.bin"
INDEX, PROGRESS = "teacher.json", "progress.json"
VERSION = 1  # how the files are computed: a change makes them again


def teacher_folder(cfg) -> Path:
    """The model folder of ``train.distill``'s teacher (a local folder, or the packaged SmolLM2)."""
    if cfg.packaged == "smollm2":
        from hare.core.packaged import smollm2_folder

        return smollm2_folder()
    folder = Path(cfg.local)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"train.distill.local: {folder} is not a model folder (no config.json)")
    return folder


def teacher_name(cfg) -> str:
    return f"packaged:{cfg.packaged}" if cfg.packaged else str(cfg.local)


def load_teacher(folder: str | Path, device: Any = "cpu"):
    """The teacher in inference mode (float32 on a CPU, bfloat16 on a GPU), from local files only."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=dtype)
    model.to(device).eval()
    model.requires_grad_(False)
    return model


def check_shared_tokenizer(teacher_dir: str | Path, tokenizer) -> None:
    """Raise unless the student's ``tokenizer`` is the teacher's: the same vocabulary, token for token
    (distillation matches the two distributions id by id)."""
    from hare.core.tokenizer import load_tokenizer

    mine = tokenizer.get_vocab()
    theirs = load_tokenizer(teacher_dir).get_vocab()
    if mine != theirs:
        differ = sum(1 for k, v in mine.items() if theirs.get(k) != v) + len(set(theirs) - set(mine))
        raise ValueError(f"train.distill: the run's tokenizer is not the teacher's ({len(mine):,} against "
                         f"{len(theirs):,} tokens, {differ:,} that differ); distillation needs the teacher's: set "
                         f"tokenizer.path to {teacher_dir} (or tokenizer.packaged: smollm2 for the packaged teacher)")


def id_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 65536 else np.int32


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


_LOADED: dict[tuple[str, str], Any] = {}


def _model(folder: str, device: str):
    key = (folder, device)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_teacher(folder, device)
    return _LOADED[key]


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def _block(job: tuple) -> int:
    """Run the teacher over windows [start, end) of a part and write their rows into the part's
    (temporary) files, flushed before returning."""
    import torch

    from hare.model.distill import top_k_logprobs

    folder, device, part_dir, out_dir, start, end, k, temperature = job
    index = read_json(Path(part_dir) / "index.json")
    L, vocab = index["seq_len"], index["vocab_size"]
    n = index["num_sequences"]
    tokens = np.memmap(Path(part_dir) / "tokens.bin", dtype=index["dtype"], mode="r")
    x = torch.from_numpy(np.stack([np.asarray(tokens[i * L: i * L + L + 1], dtype=np.int64)
                                   for i in range(start, end)]))
    model = _model(folder, device)
    with torch.inference_mode():
        logits = model(input_ids=x[:, :-1].to(device), use_cache=False).logits.float()
        if logits.shape[-1] < vocab:  # a head narrower than the tokenizer: the missing ids are impossible
            raise ValueError(f"the teacher's head has {logits.shape[-1]} outputs, the tokenizer {vocab} tokens")
        logits = logits[..., :vocab].reshape(-1, vocab)
        y = x[:, 1:].reshape(-1).to(device)
        ce = torch.nn.functional.cross_entropy(logits, y, reduction="none").reshape(end - start, L).mean(1)
        idx, lp = top_k_logprobs(logits, k, temperature)
    rows = slice(start * L, end * L)
    ids = np.memmap(filling(out_dir, IDS), dtype=id_dtype(vocab), mode="r+", shape=(n * L, k))
    logp = np.memmap(filling(out_dir, LOGP), dtype=np.float16, mode="r+", shape=(n * L, k))
    loss = np.memmap(filling(out_dir, WINDOW_LOSS), dtype=np.float32, mode="r+", shape=(n,))
    ids[rows] = idx.cpu().numpy().astype(ids.dtype)
    logp[rows] = lp.cpu().numpy().astype(np.float16)
    loss[start:end] = ce.cpu().numpy()
    for m in (ids, logp, loss):
        m.flush()
    return end - start


def filling(folder: str | Path, name: str) -> Path:
    """The temporary name a file of the step is filled under, renamed to ``name`` when complete (not
    ``.*.tmp``: the runner deletes those, ``atomic_path``'s leftovers, when it resumes a step)."""
    return Path(folder) / f".{name}.tmp-filling"


def _settings(cfg, index: dict, teacher: str) -> dict:
    return {"version": VERSION, "teacher": teacher, "top_k": min(cfg.top_k, index["vocab_size"]),
            "temperature": cfg.temperature, "seq_len": index["seq_len"], "windows": index["num_sequences"],
            "vocab_size": index["vocab_size"], "num_tokens": index["num_tokens"]}


def teacher_part(part_dir: Path, out: Path, cfg, folder: Path, teacher: str) -> TeacherPart:
    """The teacher's top-k over one packed part, into ``out`` (resumed from ``progress.json``)."""
    index = read_json(part_dir / "index.json")
    want = _settings(cfg, index, teacher)
    n, L, k = index["num_sequences"], index["seq_len"], want["top_k"]
    out.mkdir(parents=True, exist_ok=True)
    done_file = out / INDEX
    if done_file.exists() and read_json(done_file).get("settings") == want:
        return TeacherPart(**{f: read_json(done_file)[f] for f in TeacherPart.model_fields})
    progress_file = out / PROGRESS
    done, seconds = 0, 0.0
    if progress_file.exists():
        state = read_json(progress_file)
        if state.get("settings") == want:
            done, seconds = state["windows_done"], state.get("seconds", 0.0)
    files = {IDS: n * L * k * np.dtype(id_dtype(index["vocab_size"])).itemsize, LOGP: n * L * k * 2,
             WINDOW_LOSS: n * 4}
    if done < n:
        if any(not filling(out, f).exists() or filling(out, f).stat().st_size != size for f, size in files.items()):
            done, seconds = 0, 0.0
        if done == 0:
            for f, size in files.items():
                tmp = filling(out, f)
                with open(tmp, "wb") as fh:
                    fh.truncate(size)
    if done:
        log.info("teacher %s: resuming at window %d of %d", part_dir.name, done, n)
    device = _resolve_device(cfg.device)
    B = cfg.batch_windows
    jobs = [(str(folder), device, str(part_dir), str(out), s, min(s + B, n), k, cfg.temperature)
            for s in range(done, n, B)]
    bar = Progress(total=n * L, initial=done * L, desc=f"teacher {part_dir.name}", unit="tok")
    t0 = time.perf_counter()

    def record(windows: int) -> None:
        nonlocal done
        done += windows
        bar.update(windows * L)
        write_json(progress_file, {"settings": want, "windows_done": done,
                                   "seconds": round(seconds + time.perf_counter() - t0, 3)})

    workers = min(cfg.workers, max(1, len(jobs)))
    if workers > 1 and device == "cpu":
        from hare.core.execution import ordered_map, process_pool

        threads = max(1, (os.cpu_count() or 1) // workers)
        with process_pool(workers, f"the teacher over {part_dir.name}", start="spawn", initializer=_init_worker,
                          initargs=(threads,)) as pool:
            for w in ordered_map(pool, _block, jobs, 2 * workers):
                record(w)
    else:
        for job in jobs:
            record(_block(job))
    bar.close()
    seconds = round(seconds + time.perf_counter() - t0, 3)
    for name in files:  # a step killed among the renames finds the rest still to do
        if filling(out, name).exists():
            os.replace(filling(out, name), out / name)
    raw = np.fromfile(out / WINDOW_LOSS, dtype=np.float32)
    size = sum((out / name).stat().st_size for name in (IDS, LOGP, WINDOW_LOSS))
    part = TeacherPart(windows=n, seq_len=L, top_k=k, bytes=size, bytes_per_token=round(size / max(1, n * L), 2),
                       seconds=seconds, mean_loss=round(float(raw.mean()) if n else 0.0, 6))
    write_json(done_file, {"settings": want, **part.model_dump()})
    progress_file.unlink(missing_ok=True)
    return part


def teacher_pass(tokenized: Path, out: Path, cfg) -> TeacherStats:
    """The teacher step's work: every packed part of ``tokenized`` (``cfg``: ``train.distill``)."""
    from hare.core.tokenizer import load_tokenizer

    folder = teacher_folder(cfg)
    tok = load_tokenizer(tokenized / "tokenizer")
    check_shared_tokenizer(folder, tok)
    name = teacher_name(cfg)
    try:
        parts = {p: teacher_part(d, out / p, cfg, folder, name) for p, d in part_dirs(tokenized).items()}
    finally:
        _LOADED.clear()  # the teacher in this process is not needed after the step
    for p, s in parts.items():
        log.info("teacher %s: %d windows of %d tokens, top %d, %.1f bytes a token, %.1f s", p, s.windows, s.seq_len,
                 s.top_k, s.bytes_per_token, s.seconds)
    return TeacherStats(teacher=name, parts=parts, tokens=sum(s.windows * s.seq_len for s in parts.values()),
                        bytes=sum(s.bytes for s in parts.values()),
                        seconds=round(sum(s.seconds for s in parts.values()), 3))


class TeacherTargets:
    """Read side: the teacher's top-k rows of packed windows, per part."""

    def __init__(self, folder: str | Path, temperature: float):
        self.folder = Path(folder)
        self.info: dict[str, dict] = {}
        for d in sorted(self.folder.glob(f"*/{INDEX}")):
            self.info[d.parent.name] = read_json(d)["settings"]
        if not self.info:
            raise FileNotFoundError(f"{self.folder}: no teacher outputs (<part>/{INDEX}); run the teacher step")
        for part, s in self.info.items():
            if s["temperature"] != temperature:
                raise ValueError(f"{self.folder}/{part}: computed at temperature {s['temperature']}, "
                                 f"train.distill.temperature is {temperature}")

    def _maps(self, part: str):
        s = self.info[part]
        shape = (s["windows"] * s["seq_len"], s["top_k"])
        d = self.folder / part
        return (np.memmap(d / IDS, dtype=id_dtype(s["vocab_size"]), mode="r", shape=shape),
                np.memmap(d / LOGP, dtype=np.float16, mode="r", shape=shape))

    def check(self, parts: dict) -> None:
        """Raise unless every packed part has teacher outputs of its shape."""
        for name, p in parts.items():
            s = self.info.get(name)
            if s is None or s["windows"] != p.index["num_sequences"] or s["seq_len"] != p.seq_len:
                raise ValueError(f"{self.folder}: no teacher outputs matching data part {name} "
                                 f"({p.index['num_sequences']} windows of {p.seq_len}); run the teacher step again")

    def rows(self, windows: list[tuple[str, int]]):
        """(ids int64 (B, L, k), log-probabilities float32 (B, L, k)) of the windows (part, sequence id)."""
        import torch

        maps: dict[str, tuple] = {}
        ids, lps = [], []
        for part, i in windows:
            if part not in maps:
                maps[part] = self._maps(part)
            L = self.info[part]["seq_len"]
            a, b = maps[part]
            ids.append(np.asarray(a[i * L: (i + 1) * L], dtype=np.int64))
            lps.append(np.asarray(b[i * L: (i + 1) * L], dtype=np.float32))
        return torch.from_numpy(np.stack(ids)), torch.from_numpy(np.stack(lps))

    def window_loss(self, part: str) -> np.ndarray:
        """The teacher's mean cross-entropy of every window of ``part`` (nats per token)."""
        return np.fromfile(self.folder / part / WINDOW_LOSS, dtype=np.float32)
