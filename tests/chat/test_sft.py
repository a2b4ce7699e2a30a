"""Fine-tuning on real Dolly records: packing leaks nothing, a killed run resumes to the same weights,
the export is a chat model folder."""

from __future__ import annotations

import json

import pytest
import torch

from hare.chat.sft import build_trainer, load_base, sft
from hare.chat.template import prepare
from hare.core.io import read_jsonl
from hare.chat.config import SftConfig


def per_token_loss(model, input_ids, position_ids, labels):
    logits = model(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits[0, :-1]
    target = labels[0, 1:]
    loss = torch.nn.functional.cross_entropy(logits.float(), target.clamp(min=0), reduction="none")
    return loss[target != -100]


def two_conversations(tiny_base, owls_question: str):
    """The tiny base with the hare template, in eval mode, and two conversations of unequal length."""
    model, tok = load_base(tiny_base)
    prepare(tok, model, "hare")
    model.eval()
    return model, tok, [[{"role": "user", "content": owls_question},
                         {"role": "assistant", "content": "Owls can turn their heads about 270 degrees."}],
                        [{"role": "user", "content": "What is two plus three?"},
                         {"role": "assistant", "content": "Five."}]]


def test_packed_samples_have_the_loss_each_has_alone(tiny_base, tmp_path):
    model, tok, convs = two_conversations(tiny_base, "Tell me a fact about owls.")
    cfg = SftConfig(packing=True, max_length=256, batch_size=2, device="cpu", max_steps=1)
    trainer = build_trainer(model, tok, convs, [], cfg, tmp_path, seed=0, total_steps=1)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # one padding-free row
    pos = batch["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(pos) if p == 0]
    assert len(starts) == 2  # both conversations in one row, positions restarting
    with torch.no_grad():
        packed = per_token_loss(model, batch["input_ids"], batch["position_ids"], batch["labels"])
        alone = []
        for a, b in zip(starts, starts[1:] + [len(pos)]):
            ids, lab = batch["input_ids"][:, a:b], batch["labels"][:, a:b]
            alone.append(per_token_loss(model, ids, torch.arange(b - a)[None], lab))
    torch.testing.assert_close(packed, torch.cat(alone), rtol=1e-5, atol=1e-5)
    # and without the restart, the second conversation would see the first: the check can fail
    with torch.no_grad():
        leaky = per_token_loss(model, batch["input_ids"], torch.arange(len(pos))[None], batch["labels"])
    assert not torch.allclose(leaky, torch.cat(alone), atol=1e-4)


def test_unpacked_batches_are_flattened_with_the_padded_loss(tiny_base, tmp_path):
    """Unpacked, padding-free: a batch's conversations become one row (no padding computed) whose
    loss is the padded batch's; conversations over max_length are cut, and those left with no
    target token are dropped, as TRL does when it pads."""
    model, tok, convs = two_conversations(tiny_base, "Tell me a fact about owls, please, and keep it short.")
    losses, rows = {}, {}
    for free in (True, False):
        cfg = SftConfig(packing=False, padding_free=free, max_length=256, batch_size=2, device="cpu", max_steps=1)
        trainer = build_trainer(model, tok, convs, [], cfg, tmp_path / str(free), seed=0, total_steps=1)
        batch = next(iter(trainer.get_train_dataloader()))
        rows[free] = batch["input_ids"].shape
        with torch.no_grad():
            losses[free] = model(**batch, use_cache=False).loss
    assert rows[True][0] == 1 and rows[False][0] == 2
    assert rows[True][1] < 2 * rows[False][1]  # the shorter conversation's padding is gone
    torch.testing.assert_close(losses[True], losses[False], rtol=1e-5, atol=1e-5)

    lengths = [len(r["input_ids"]) for r in build_trainer(
        model, tok, convs, [], SftConfig(packing=False, max_length=256, device="cpu", max_steps=1),
        tmp_path / "full", seed=0, total_steps=1).train_dataset]
    cut = min(lengths) + 2  # the short conversation whole, the long one cut before its answer
    trainer = build_trainer(model, tok, convs, [], SftConfig(packing=False, max_length=cut, device="cpu",
                                                             max_steps=1), tmp_path / "cut", seed=0, total_steps=1)
    kept = [len(r["input_ids"]) for r in trainer.train_dataset]
    assert kept == [min(lengths)] and max(lengths) > cut


def test_neftune_puts_noise_of_its_magnitude_on_the_embeddings_while_training(tiny_base, tmp_path):
    """NEFTune (``neftune_noise_alpha``) reaches TRL: while training, the input embeddings carry
    uniform noise of at most alpha / sqrt(length x hidden size), and none without it."""
    from transformers import TrainerCallback

    seen = []

    class Watch(TrainerCallback):  # registered after NEFTune's hook, so it sees the noised embeddings
        def on_train_begin(self, args, state, control, model=None, **kw):
            emb = model.get_input_embeddings()

            def hook(module, inputs, out):
                clean = torch.nn.functional.embedding(inputs[0], module.weight)
                seen.append(((out - clean).abs().max().item(), out.size(1) * out.size(2)))
            emb.register_forward_hook(hook)

    for alpha in (None, 5.0):
        seen.clear()
        model, tok, convs = two_conversations(tiny_base, "Tell me a fact about owls.")
        cfg = SftConfig(packing=False, max_length=256, batch_size=2, device="cpu", max_steps=1,
                        neftune_noise_alpha=alpha)
        build_trainer(model, tok, convs, [], cfg, tmp_path / str(alpha), seed=0, total_steps=1,
                      callbacks=[Watch()]).train()
        (noise, dims), = seen
        if alpha is None:
            assert noise == 0
        else:
            assert 0.5 * alpha / dims ** 0.5 < noise <= alpha / dims ** 0.5 + 1e-7


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory, dolly):
    """120 Dolly records, one malformed line and one record without an answer."""
    path = tmp_path_factory.mktemp("chat") / "dolly.jsonl"
    lines = dolly.read_text(encoding="utf-8").splitlines()[:120]
    lines.insert(7, '{"instruction": "broken", ')
    lines.insert(30, json.dumps({"instruction": "No answer here"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cfg(**kw):
    base = dict(max_steps=6, batch_size=2, max_length=256, lr=1e-3, eval_every=3, checkpoint_every=2,
                keep_checkpoints=3, log_every=1, threads=1, device="cpu", eval_fraction=0.05)
    return SftConfig(**{**base, **kw})


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_killed_run_resumes_to_the_uninterrupted_weights(tiny_base, chat_file, tmp_path):
    full = sft(tiny_base, [chat_file], cfg(), tmp_path / "full", seed=3)
    assert full["step"] == 6 and full["quarantined"] == 2 and full["records"] == 122
    q = list(read_jsonl(tmp_path / "full" / "quarantine.jsonl"))
    assert [r["line"] for r in q] == [8, 31] and all(r["path"] == str(chat_file) for r in q)
    assert "bad JSON" in q[0]["reason"] and "response" in q[1]["reason"]

    part = sft(tiny_base, [chat_file], cfg(), tmp_path / "part", seed=3, stop_after=5)
    assert part["interrupted"] and part["step"] == 5
    resumed = sft(tiny_base, [chat_file], cfg(), tmp_path / "part", seed=3, resume=True)
    assert resumed["step"] == 6
    a, b = weights(tmp_path / "full" / "model"), weights(tmp_path / "part" / "model")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # the resumed run's log has each step once, in the pretraining layout, the held-out loss included
    m_full = list(read_jsonl(tmp_path / "full" / "metrics.jsonl"))
    m_part = list(read_jsonl(tmp_path / "part" / "metrics.jsonl"))
    assert [m["step"] for m in m_part] == [1, 2, 3, 4, 5, 6] == [m["step"] for m in m_full]
    assert [m["loss"] for m in m_part] == [m["loss"] for m in m_full]
    assert {"step", "stage", "loss", "lr", "grad_norm", "tokens", "tokens_per_s"} <= set(m_full[0])
    assert "eval_loss" in m_full[2] and "eval_loss" in m_full[5] and full["eval_loss"] == m_full[5]["eval_loss"]
    assert m_part[-1]["tokens"] == m_full[-1]["tokens"]


def test_export_is_a_chat_model(tiny_base, chat_file, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    res = sft(tiny_base, [chat_file], cfg(max_steps=2, eval_every=2), tmp_path / "run", seed=0)
    folder = tmp_path / "run" / "model"
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert res["eval_loss"] is not None and res["heldout"] >= 1
    msgs = [{"role": "user", "content": "Hello"}]
    prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert prompt == ("<round_start>system\nYou are a helpful assistant.<round_end>\n"
                      "<round_start>user\nHello<round_end>\n<round_start>assistant\n")
    assert "{%- generation" not in tok.chat_template  # training markers are not exported
    end = tok.convert_tokens_to_ids("<round_end>")
    assert tok.eos_token == "<round_end>" and model.generation_config.eos_token_id[0] == end
    assert model.get_input_embeddings().num_embeddings == len(tok)
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]


def test_soup_is_the_average_of_its_runs_and_resumes_run_by_run(tiny_base, chat_file, tmp_path):
    """``soup: 2``: two runs from the same start with training seeds 3 and 4, the export their
    uniform average; a run killed in the first run resumes to the same soup, and a finished soup
    resumed trains nothing again."""
    c = cfg(max_steps=4, soup=2, eval_every=4)
    full = sft(tiny_base, [chat_file], c, tmp_path / "full", seed=3)
    runs = [weights(tmp_path / "full" / f"run-{k}" / "model") for k in range(2)]
    soup = weights(tmp_path / "full" / "model")
    assert any(not torch.equal(runs[0][k], runs[1][k]) for k in soup)  # the seeds trained apart
    for k in soup:
        mean = (runs[0][k].double() * 0.5 + runs[1][k].double() * 0.5).to(soup[k].dtype)
        torch.testing.assert_close(soup[k], mean, rtol=0, atol=0, msg=k)
    assert [r["seed"] for r in full["runs"]] == [3, 4] and full["step"] == 4
    assert full["final_loss"] == round((full["runs"][0]["final_loss"] + full["runs"][1]["final_loss"]) / 2, 5)
    assert full["eval_loss"] > 0 and full["eval_loss"] not in {r["eval_loss"] for r in full["runs"]}
    record = json.loads((tmp_path / "full" / "model" / "soup.json").read_text())
    assert [i["path"] for i in record["ingredients"]] == [str(tmp_path / "full" / f"run-{k}" / "model")
                                                          for k in range(2)]
    from hare.chat.sft import sft_metrics

    metrics = sft_metrics(tmp_path / "full")
    assert [(m["seed"], m["step"]) for m in metrics] == [(s, i) for s in (3, 4) for i in range(1, 5)]

    part = sft(tiny_base, [chat_file], c, tmp_path / "part", seed=3, stop_after=3)
    assert part["interrupted"] and not (tmp_path / "part" / "model").exists()
    resumed = sft(tiny_base, [chat_file], c, tmp_path / "part", seed=3, resume=True)
    assert resumed["runs"] == full["runs"]
    b = weights(tmp_path / "part" / "model")
    for k in soup:
        torch.testing.assert_close(b[k], soup[k], rtol=0, atol=0, msg=k)

    trained = [(tmp_path / "part" / f"run-{k}" / "model" / "model.safetensors").stat().st_mtime_ns for k in range(2)]
    again = sft(tiny_base, [chat_file], c, tmp_path / "part", seed=3, resume=True)
    assert again["runs"] == full["runs"] and again["eval_loss"] == full["eval_loss"]
    assert [(tmp_path / "part" / f"run-{k}" / "model" / "model.safetensors").stat().st_mtime_ns
            for k in range(2)] == trained

    single = sft(tiny_base, [chat_file], cfg(max_steps=4, eval_every=4), tmp_path / "part", seed=3)
    assert not list((tmp_path / "part").glob("run-*")) and "runs" not in single  # a fresh start clears the soup
    assert not (tmp_path / "part" / "model" / "soup.json").exists()
    assert single["final_loss"] == full["runs"][0]["final_loss"]  # the soup's first run is this run
