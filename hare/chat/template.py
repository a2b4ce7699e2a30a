"""Chat templates: the HARE template, ChatML, or the tokenizer's own, stored in the tokenizer.

The HARE template (arXiv 2406.11410, "HARE-1.1B-Chat") wraps every turn in two new special tokens::

    <round_start>system\\n{system}<round_end>\\n<round_start>user\\n{q}<round_end>\\n<round_start>assistant\\n{a}<round_end>\\n

with the default system prompt "You are a helpful assistant." when a conversation has none, and
generation stops at ``<round_end>``. Each template is Jinja with ``{% generation %}`` markers around
what the assistant writes, its end-of-turn token included, so ``apply_chat_template(...,
return_assistant_tokens_mask=True)`` (TRL's ``assistant_only_loss``) trains the model on exactly
the tokens it must produce, and on when to stop.

A template is a ``ChatTemplate``: its Jinja source, the special tokens it needs and its end-of-turn
token. ``prepare`` adds the tokens to a tokenizer (resizing the model's embeddings), stores the
template and makes the end-of-turn token the one generation stops at. Features that need more
tokens (one per tool, say) pass them as ``extra_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SYSTEM = "You are a helpful assistant."


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    jinja: str
    special_tokens: tuple[str, ...]  # added to the tokenizer when missing
    end_of_turn: str  # generation stops here


def _wrapped(start: str, end: str, default_system: str | None) -> str:
    """A Jinja template whose turns are ``{start}{role}\\n{content}{end}\\n``, the assistant's content
    and ``end`` inside the generation markers. ``default_system`` is rendered when the conversation
    opens without a system message (None: no system turn then)."""
    system = "" if default_system is None else (
        "{%- if messages and messages[0]['role'] != 'system' -%}"
        f"{{{{- '{start}system\\n' + {default_system!r} + '{end}\\n' -}}}}"
        "{%- endif -%}")
    return (
        system +
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'assistant' -%}"
        f"{{{{- '{start}assistant\\n' -}}}}"
        "{%- generation -%}"
        f"{{{{- message['content'] + '{end}' -}}}}"
        "{%- endgeneration -%}"
        "{{- '\\n' -}}"
        "{%- else -%}"
        f"{{{{- '{start}' + message['role'] + '\\n' + message['content'] + '{end}\\n' -}}}}"
        "{%- endif -%}"
        "{%- endfor -%}"
        f"{{%- if add_generation_prompt -%}}{{{{- '{start}assistant\\n' -}}}}{{%- endif -%}}"
    )


HARE = ChatTemplate("hare", _wrapped("<round_start>", "<round_end>", DEFAULT_SYSTEM),
                    ("<round_start>", "<round_end>"), "<round_end>")
# ChatML (OpenAI; SmolLM2, Qwen): the format many open chat models already know.
CHATML = ChatTemplate("chatml", _wrapped("<|im_start|>", "<|im_end|>", DEFAULT_SYSTEM),
                      ("<|im_start|>", "<|im_end|>"), "<|im_end|>")
TEMPLATES: dict[str, ChatTemplate] = {t.name: t for t in (HARE, CHATML)}


_MARKER = r"\{%-?\s*(end)?generation\s*-?%\}"


def has_generation_markers(template: str | None) -> bool:
    import re

    return bool(template) and re.search(_MARKER, template) is not None


def without_generation_markers(template: str) -> str:
    """The template as inference engines read it: ``{% generation %}`` is a transformers extension
    of Jinja that only training needs (other runtimes' Jinja engines reject the unknown tag)."""
    import re

    return re.sub(_MARKER, "", template)


def prepare(tokenizer, model=None, template: str = "hare", extra_tokens: tuple[str, ...] = ()) -> str:
    """Store chat template ``template`` (a name of ``TEMPLATES``, or ``"tokenizer"`` for the
    tokenizer's own) in ``tokenizer``, add its special tokens and ``extra_tokens``, resize ``model``'s
    embeddings to the new vocabulary and make the end-of-turn token the tokenizer's ``eos_token``
    and the first of the model's generation stop tokens. Returns the end-of-turn token.

    ``"tokenizer"`` keeps the template the tokenizer carries; it must mark the assistant's part with
    ``{% generation %}`` (or be one TRL knows how to patch) for assistant-only loss, which the
    caller checks; its end-of-turn token is the tokenizer's ``eos_token``."""
    if template == "tokenizer":
        if not tokenizer.chat_template:
            raise ValueError("sft.template 'tokenizer': this tokenizer has no chat template; use 'hare' or 'chatml'")
        eot = tokenizer.eos_token
        new = list(extra_tokens)
    else:
        if template not in TEMPLATES:
            raise ValueError(f"unknown chat template '{template}'; known: {', '.join(TEMPLATES)}, tokenizer")
        t = TEMPLATES[template]
        tokenizer.chat_template = t.jinja
        eot = t.end_of_turn
        new = [*t.special_tokens, *extra_tokens]
    vocab = tokenizer.get_vocab()
    missing = [tok for tok in new if tok not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:
        # Padding is masked out of the loss and the attention; the old eos serves (the model never
        # sees it as a target once eos becomes the end-of-turn token).
        tokenizer.pad_token = tokenizer.eos_token
    old_eos = tokenizer.eos_token_id
    tokenizer.eos_token = eot
    if model is not None:
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        stop = [tokenizer.convert_tokens_to_ids(eot)]
        if old_eos is not None and old_eos not in stop:
            stop.append(old_eos)
        model.config.eos_token_id = stop[0]
        model.generation_config.eos_token_id = stop
        model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id
    return eot
