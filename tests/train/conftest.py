import pytest

from hare.train.pack import pack_documents, train_tokenizer


@pytest.fixture
def packed(tmp_path, reviews):
    """200 real reviews packed with a freshly trained 512-token BPE, windows of 64 tokens."""
    tok = train_tokenizer(reviews, 512, tmp_path / "tokenizer")
    index = pack_documents(reviews, tok, tmp_path, seq_len=64, batch_docs=50)
    return tmp_path, tok, index
