"""Decoding a call: choose the functional token in one step, then write the arguments.

The first token is the most probable of the library's functional tokens and the refusal token
(every other token is masked out), which is Octopus v2's one-step function choice; the arguments
are then generated greedily under the function's JSON Schema (``hare.model.constrain``: only its
declared parameters, enums and patterns as written, then ``<nexa_end>``) and validated against it
by ``parse_call``. Output that is not a valid call (arguments cut at ``max_new_tokens``, or
``constrained=False``) comes back as ``NoCall`` with the reason, never as an exception.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from hare.chat.toolcall.check import Call, NoCall, Refusal, parse_call
from hare.chat.toolcall.library import Library
from hare.chat.toolcall.tokens import end_token_id, functional_token_ids
from hare.model.constrain import SchemaMask, schema_text


@dataclass
class Decoded:
    result: Call | Refusal | NoCall
    text: str
    seconds: float


def prompt_ids(tokenizer, query: str, system: str | None = None) -> list[int]:
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": query}]
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=False)
    return tokenizer(query + "\n", add_special_tokens=False)["input_ids"]


def arguments_schema(schema):
    """The schema a call's arguments are decoded under: the function's, with no undeclared
    parameter at any level (what ``parse_call`` refuses) unless the library allows them."""
    if isinstance(schema, list):
        return [arguments_schema(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: arguments_schema(v) for k, v in schema.items()}
    if out.get("type") == "object" and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


class ToolCaller:
    """A model trained with a library's functional tokens, turned into a function caller."""

    def __init__(self, model, tokenizer, library: Library, max_new_tokens: int = 96, system: str | None = None,
                 constrained: bool = True):
        self.model, self.tokenizer, self.library = model.eval(), tokenizer, library
        self.choices = torch.tensor(functional_token_ids(tokenizer, library))
        self.end = end_token_id(tokenizer)
        self.max_new_tokens = max_new_tokens
        self.system = system
        self.constrained = constrained

    @torch.no_grad()
    def __call__(self, query: str) -> Decoded:
        t0 = time.perf_counter()
        device = next(self.model.parameters()).device
        ids = torch.tensor([prompt_ids(self.tokenizer, query, self.system)], device=device)
        logits = self.model(input_ids=ids).logits[0, -1]
        first = int(self.choices[logits[self.choices.to(device)].argmax()])
        token = self.tokenizer.convert_ids_to_tokens(first)
        if first == self.choices[-1]:  # the refusal token
            return Decoded(Refusal(), token, time.perf_counter() - t0)
        ids = torch.cat([ids, torch.tensor([[first]], device=device)], dim=1)
        stop = [self.end] + ([self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else [])
        processors = []
        if self.constrained:
            fn = self.library.by_token[token]
            try:
                processors.append(SchemaMask(self.tokenizer, [schema_text(arguments_schema(fn.parameters))],
                                             self.model.config.vocab_size, end_ids=[self.end]))
            except ValueError as e:
                raise ValueError(f"{self.library.path}: function {fn.name}: parameters: {e}") from None
        out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                  max_new_tokens=self.max_new_tokens, eos_token_id=stop,
                                  pad_token_id=self.tokenizer.pad_token_id or stop[-1],
                                  logits_processor=processors or None)
        text = token + self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=False)
        return Decoded(parse_call(text, self.library), text, time.perf_counter() - t0)
