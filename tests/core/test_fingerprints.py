"""Input fingerprints: small files hashed whole, large ones by size, time and sampled blocks, so
that a command reads about a megabyte of a large input to decide whether steps can be reused."""

from __future__ import annotations

import os

import hare.core.io as hio
from hare.core.io import FULL_HASH_BYTES, SAMPLE_BLOCKS, SAMPLE_BYTES, fingerprint_path
from tests.conftest import shared_or_skip


def _big(tmp_path):
    """A 20 MB input made of a real corpus file repeated."""
    block = shared_or_skip("gsm8k", "train.jsonl").read_bytes()
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as f:
        while f.tell() < 20 << 20:
            f.write(block)
    return path


def test_large_files_are_sampled_and_changes_are_seen(tmp_path, monkeypatch):
    path = _big(tmp_path)
    read = []
    real_open = open

    def counting_open(p, mode="r", *a, **k):
        f = real_open(p, mode, *a, **k)
        raw_read = f.read

        def read_and_count(n=-1):
            out = raw_read(n)
            read.append(len(out))
            return out

        f.read = read_and_count
        return f

    monkeypatch.setattr(hio, "open", counting_open, raising=False)
    before = fingerprint_path(path)
    monkeypatch.undo()
    assert sum(read) <= SAMPLE_BLOCKS * SAMPLE_BYTES < path.stat().st_size // 10
    st = path.stat()
    # a byte changed inside a sampled block (the eighth) is seen even with the time put back
    at = (st.st_size - SAMPLE_BYTES) * 7 // (SAMPLE_BLOCKS - 1) + 1000
    with open(path, "r+b") as f:
        f.seek(at)
        old = f.read(1)
        f.seek(at)
        f.write(b"#" if old != b"#" else b"$")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint_path(path) != before
    # a touched file (same bytes, new time) is fingerprinted anew too
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(old)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint_path(path) == before
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert fingerprint_path(path) != before


def test_small_files_are_hashed_whole(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_bytes(shared_or_skip("gsm8k", "test.jsonl").read_bytes())
    assert path.stat().st_size <= FULL_HASH_BYTES
    st = path.stat()
    before = fingerprint_path(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 1  # one bit, anywhere
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint_path(tmp_path) != before
