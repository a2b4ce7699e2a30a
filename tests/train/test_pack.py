import numpy as np

from hare.core.tokenizer import load_tokenizer
from hare.train.pack import PackedTokens


def test_every_token_of_every_document_exactly_once_with_eos_and_no_pad(packed, reviews):
    folder, tok, index = packed
    tokens = np.fromfile(folder / "tokens.bin", dtype=index["dtype"])
    offsets = np.load(folder / "doc_offsets.npy")
    assert index["dtype"] == "uint16" and index["num_docs"] == len(reviews) == len(offsets) - 1
    expected = []
    for text in reviews:
        expected += tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert tokens.tolist() == expected  # the stream is exactly the documents, in order, EOS after each
    for i, text in enumerate(reviews):
        doc = tokens[offsets[i]:offsets[i + 1]]
        assert doc[-1] == tok.eos_token_id and tok.eos_token_id not in doc[:-1]
        assert tok.decode(doc[:-1].tolist()) == text
    assert (tokens == tok.eos_token_id).sum() == len(reviews)  # no padding, no extra separators


def test_windows_cover_the_stream_once_per_epoch(packed):
    folder, _, index = packed
    data = PackedTokens(folder, seed=7)
    n, L = data.n, data.seq_len
    assert n == (index["num_tokens"] - 1) // L
    seen, ids = data.batch(0, n)
    assert sorted(ids) == list(range(n))  # a permutation: each window once in epoch 0
    tokens = np.fromfile(folder / "tokens.bin", dtype=index["dtype"])
    targets = np.concatenate([seen[k, 1:] for k in np.argsort(ids)])
    assert targets.tolist() == tokens[1:n * L + 1].tolist()  # every token is a target exactly once
    _, ids2 = data.batch(n, n)
    assert sorted(ids2) == list(range(n)) and ids2 != ids  # epoch 1 is reshuffled
    assert PackedTokens(folder, seed=7).batch(3, 5)[1] == ids[3:8]  # deterministic by seed and position


def test_tokenizer_folder_loads_with_transformers(packed):
    folder, tok, _ = packed
    again = load_tokenizer(folder / "tokenizer")
    assert again.eos_token == "</s>" and again.bos_token_id == 1 and len(again) == 512
    assert again("hello world")["input_ids"] == tok("hello world")["input_ids"]


def test_multiprocess_shards_equal_single_process_and_resume(packed, reviews, tmp_path):
    import os

    from hare.core.documents import Document, shard_paths, write_shards
    from hare.train.pack import _tokenize_shard, pack_shards

    folder, tok, index = packed
    write_shards([Document(t, str(i)) for i, t in enumerate(reviews)], tmp_path / "docs", shard_docs=40)
    shards = shard_paths(tmp_path / "docs")
    assert len(shards) == 5
    # a run that died after its first shard left that shard's files behind: they are reused
    work = tmp_path / "out" / ".shards"
    work.mkdir(parents=True)
    job = (str(shards[0]), str(folder / "tokenizer" / "tokenizer.json"), str(work), 0, tok.eos_token_id)
    first = _tokenize_shard(job)
    stamp = os.stat(work / "00000.bin").st_mtime_ns
    assert _tokenize_shard(job) == first and os.stat(work / "00000.bin").st_mtime_ns == stamp
    idx = pack_shards(shards, tok, folder / "tokenizer", tmp_path / "out", seq_len=64, num_proc=2)
    assert idx == index
    assert (tmp_path / "out" / "tokens.bin").read_bytes() == (folder / "tokens.bin").read_bytes()
    assert (np.load(tmp_path / "out" / "doc_offsets.npy") == np.load(folder / "doc_offsets.npy")).all()
    assert not work.exists()  # the per-shard files are gone once joined
