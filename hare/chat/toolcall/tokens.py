"""Adding a library's functional tokens to a model and its tokenizer.

The new rows of the input embedding (and of the LM head, when it is not tied) start from the mean
of the embeddings of the function's description tokens, as Octopus v2 initialises its functional
tokens (§3.2: "initialize the new token embeddings ... from the description"), so the model begins
with a token that already means roughly what the function does; the refusal and end tokens start
from the mean embedding of all tokens (the usual resize initialisation, Hewitt 2021).
"""

from __future__ import annotations

import torch

from hare.chat.toolcall.library import END, NONE, Library


def add_functional_tokens(model, tokenizer, library: Library) -> dict[str, int]:
    """Add the library's tokens to the tokenizer, resize the model and initialise the new rows;
    returns token -> id. Tokens already in the tokenizer keep their rows."""
    from tokenizers import AddedToken

    new = [t for t in library.tokens if t not in tokenizer.get_vocab()]
    if new:
        # Added, not special: decoders that skip special tokens (servers do) keep them in the text,
        # where the call is read from.
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False, single_word=False) for t in new])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in library.tokens}
    if not new:
        return ids
    old_rows = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is None or head.weight.data_ptr() == emb.data_ptr()
    with torch.no_grad():
        mean_in = emb[:old_rows].mean(0)
        mean_out = head.weight[:old_rows].mean(0) if not tied else mean_in
        for tok in new:
            i = ids[tok]
            fn = library.by_token.get(tok)
            if fn is not None:
                desc = tokenizer(fn.description + " " + fn.name.replace("_", " "), add_special_tokens=False)["input_ids"]
                desc = [d for d in desc if d < old_rows]
                emb[i] = emb[desc].mean(0) if desc else mean_in
                if not tied:
                    head.weight[i] = head.weight[desc].mean(0) if desc else mean_out
            else:  # refusal and end tokens
                emb[i] = mean_in
                if not tied:
                    head.weight[i] = mean_out
    return ids


def functional_token_ids(tokenizer, library: Library) -> list[int]:
    """Ids of the tokens a call may start with: every function's and the refusal's."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in library.tokens if t not in vocab]
    if missing:
        raise ValueError(f"the tokenizer has none of {missing}: not a model trained on this library "
                         f"({library.path})")
    return [vocab[f.token] for f in library.functions] + [vocab[NONE]]


def end_token_id(tokenizer) -> int:
    return tokenizer.convert_tokens_to_ids(END)


def prepare_tool_base(base, library: Library, out):
    """A copy of the model folder ``base`` with the library's functional tokens added and initialised
    (``add_functional_tokens``) and the library saved beside it: the base ``hare sft --tools`` trains."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hare.chat.toolcall.openai import save_library

    base, out = Path(base), Path(out)
    tok = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(base), local_files_only=True, dtype=torch.float32)
    add_functional_tokens(model, tok, library)
    tmp = out.with_name(f".{out.name}.tmp")
    import shutil

    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    save_library(library, tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
