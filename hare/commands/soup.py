"""``hare soup OUT MODEL MODEL ...``: average fine-tuned models' weights (``hare.model.soup``)."""

from __future__ import annotations

import argparse

HELP = ("average the weights of models fine-tuned from one base (a model soup: e.g. the same SFT run "
        "with several seeds) into one model folder")


def run(args: argparse.Namespace) -> int:
    from hare.model.soup import soup

    record = soup(args.models, args.out, args.weights)
    shares = ", ".join(f"{i['path']} {i['weight']:.3g}" for i in record["ingredients"])
    print(f"written: {args.out} ({record['tensors']} tensors averaged: {shares})")
    return 0


def _weights(text: str) -> list[float]:
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("out", help="the soup's model folder (replaced only if it is an earlier soup)")
    sp.add_argument("models", nargs="+", help="two model folders or more: the same architecture, tokenizer "
                    "and tool library, fine-tuned from the same base")
    sp.add_argument("--weights", type=_weights, default=None,
                    help="comma-separated weights, one per model, normalised to sum to 1 (default: equal)")
