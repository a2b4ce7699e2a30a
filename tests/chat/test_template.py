"""The chat templates and the loss mask TRL builds from them, checked token by token."""

from __future__ import annotations

import re

import pytest

from hare.chat.sft import build_trainer, load_base
from hare.chat.template import HARE, prepare
from hare.chat.config import SftConfig

CONV = [
    [{"role": "system", "content": "Answer briefly."},
     {"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "Paris."},
     {"role": "user", "content": "And of Italy?"},
     {"role": "assistant", "content": "Rome, on the Tiber."}],
    [{"role": "user", "content": "Name a prime number."},
     {"role": "assistant", "content": "Seven is prime."}],
]


def expected_mask(tok, text: str, start: str, end: str) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` and 1 for each token inside an assistant turn's content or its end token,
    found from the rendered text alone (not from the template's markers)."""
    spans = [m.span(1) for m in re.finditer(re.escape(f"{start}assistant\n") + "(.*?" + re.escape(end) + ")",
                                            text, re.S)]
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    mask = [int(any(a <= s and e <= b for a, b in spans)) for s, e in enc["offset_mapping"]]
    return enc["input_ids"], mask


def labels_of(model, tok, tmp_path):
    cfg = SftConfig(packing=False, max_length=512, batch_size=1, device="cpu", max_steps=1)
    trainer = build_trainer(model, tok, CONV, [], cfg, tmp_path, seed=0, total_steps=1)
    return [(row["input_ids"], row["labels"]) for row in trainer.train_dataset]


def check(tok, rows, start, end):
    eot = tok.convert_tokens_to_ids(end)
    for conv, (ids, labels) in zip(CONV, rows):
        text = tok.apply_chat_template(conv, tokenize=False)
        want_ids, want = expected_mask(tok, text, start, end)
        assert ids == want_ids
        got = [int(l != -100) for l in labels]
        assert got == want, [(tok.convert_ids_to_tokens(i), g, w) for i, g, w in zip(ids, got, want) if g != w]
        assert [l for l in labels if l != -100] == [i for i, m in zip(ids, want) if m]
        # every assistant turn ends on the end-of-turn token, and it is trained
        n_assistant = sum(t["role"] == "assistant" for t in conv)
        ends = [i for i, (t, m) in enumerate(zip(ids, got)) if m and t == eot]
        assert len(ends) == n_assistant and all(i + 1 == len(ids) or not got[i + 1] for i in ends)


def test_hare_template_renders_the_papers_format(tiny_base):
    _, tok = load_base(tiny_base)
    assert prepare(tok, None, "hare") == "<round_end>"
    text = tok.apply_chat_template(CONV[1], tokenize=False, add_generation_prompt=False)
    assert text == ("<round_start>system\nYou are a helpful assistant.<round_end>\n"
                    "<round_start>user\nName a prime number.<round_end>\n"
                    "<round_start>assistant\nSeven is prime.<round_end>\n")
    prompt = tok.apply_chat_template(CONV[1][:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<round_start>user\nName a prime number.<round_end>\n<round_start>assistant\n")
    assert tok.eos_token == "<round_end>"
    for t in HARE.special_tokens:  # one token each, never split
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1


def test_loss_mask_is_the_assistant_tokens_and_end_of_turn_hare(tiny_base, tmp_path):
    model, tok = load_base(tiny_base)
    n = len(tok)
    prepare(tok, model, "hare")
    assert model.get_input_embeddings().num_embeddings == len(tok) == n + 2
    assert model.generation_config.eos_token_id[0] == tok.convert_tokens_to_ids("<round_end>")
    check(tok, labels_of(model, tok, tmp_path), "<round_start>", "<round_end>")


def test_loss_mask_chatml_on_smollm2(smollm2, tmp_path):
    """ChatML on the real SmolLM2 tokenizer, whose vocabulary already holds <|im_start|>/<|im_end|>."""
    model, tok = load_base(smollm2)
    n = len(tok)
    prepare(tok, model, "chatml")
    assert len(tok) == n  # nothing added: the tokens exist
    check(tok, labels_of(model, tok, tmp_path), "<|im_start|>", "<|im_end|>")


def test_tokenizer_template_without_one_is_refused(tiny_base):
    _, tok = load_base(tiny_base)
    with pytest.raises(ValueError, match="no chat template"):
        prepare(tok, None, "tokenizer")
