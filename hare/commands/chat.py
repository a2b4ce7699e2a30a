"""``hare chat MODEL`` or ``hare chat --endpoint URL``: a terminal chat (``hare.chat.client``)."""

from __future__ import annotations

import argparse
import sys

from hare.commands.serve import limits, serving_arguments

HELP = "chat with a model in the terminal: a local folder, or a server (--endpoint)"


def run(args: argparse.Namespace) -> int:
    """``hare chat MODEL`` or ``hare chat --endpoint URL``: a terminal chat."""
    import os

    import openai

    from hare.chat.client import Chat, repl

    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    server = None
    if args.endpoint:
        url, model = args.endpoint, args.model
    elif args.model:
        from hare.chat.serve import Server, build_app

        try:
            app = build_app(args.model, limits(args), device=args.device,
                            continuous_batching=args.continuous_batching)
        except (FileNotFoundError, ImportError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        server = Server(app).start()
        url, model, key = server.url, args.model, None
    else:
        print("error: name a model folder, or --endpoint URL", file=sys.stderr)
        return 2
    client = openai.OpenAI(base_url=url, api_key=key or "none", max_retries=0)
    try:
        if model is None:
            model = client.models.list().data[0].id
        on_answer = None
        library = None
        if args.tools:
            from hare.chat.toolcall.library import load_library

            library = load_library(args.tools)
        elif args.model and not args.endpoint:
            from hare.chat.toolcall.openai import model_library

            library = model_library(args.model)
        if library is not None:
            from hare.chat.toolcall.check import describe, parse_call

            on_answer = lambda text: describe(parse_call(text, library))  # noqa: E731
        return repl(Chat(client, model, system=args.system, max_tokens=args.max_tokens,
                         temperature=args.temperature, on_answer=on_answer))
    except openai.APIConnectionError as e:
        print(f"error: cannot reach {url}: {e}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.stop()


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("model", nargs="?", default=None,
                    help="a local model folder to chat with (served in this process), or with --endpoint the model "
                         "name to ask for (default: the endpoint's first)")
    sp.add_argument("--endpoint", default=None, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    sp.add_argument("--system", default=None, help="system prompt (default: the chat template's)")
    sp.add_argument("--temperature", type=float, default=None, help="sampling temperature (0: greedy)")
    sp.add_argument("--tools", default=None, metavar="LIBRARY",
                    help="function library of a functional-token model: print each answer's parsed call (a local "
                         "model trained with hare sft --tools carries its own)")
    serving_arguments(sp, chat=True)
