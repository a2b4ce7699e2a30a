"""The packaged SmolLM2 becomes a Hugging Face folder that loads offline and answers."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from hare.core import packaged


def test_smollm2_folder_loads_and_answers(smollm2: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smollm2, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(smollm2, local_files_only=True)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert len(tok) == 49_152 and tok.chat_template
    batch = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                    add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, batch["input_ids"].shape[1]:])


def test_converted_folder_is_made_once_and_atomically(tmp_path: Path):
    calls = []

    def convert(out: Path) -> None:
        calls.append(out)
        (out / "weights").write_text("x")

    threads = [threading.Thread(target=packaged.converted_folder, args=("m", convert, tmp_path))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert (tmp_path / "m" / "weights").read_text() == "x"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".m.") and p.is_dir()]


def test_failed_conversion_leaves_nothing(tmp_path: Path):
    def convert(out: Path) -> None:
        (out / "half").write_text("x")
        raise OSError("disk full")

    with pytest.raises(OSError):
        packaged.converted_folder("m", convert, tmp_path)
    assert not (tmp_path / "m").exists()
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]


def test_missing_package_says_how_to_install():
    with pytest.raises(packaged.PackagedModelMissing, match="pip install"):
        packaged.package_file("hare_no_such_package", "x.gguf", "pip install it")
