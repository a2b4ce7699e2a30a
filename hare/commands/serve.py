"""``hare serve MODEL``: an OpenAI-compatible server for a local model folder (``hare.chat.serve``)."""

from __future__ import annotations

import argparse
import sys

import logging

log = logging.getLogger("hare")

HELP = ("an OpenAI-compatible server (/v1/models, /v1/completions, /v1/chat/completions, streaming) for a local "
        "model folder, on transformers serve")


def limits(args: argparse.Namespace):
    from hare.chat.serve import Limits

    return Limits(max_body_bytes=args.max_body_bytes, max_tokens=args.max_tokens or 1024,
                  max_messages=args.max_messages, max_prompt_tokens=args.max_prompt_tokens)


def run(args: argparse.Namespace) -> int:
    """``hare serve MODEL``: an OpenAI-compatible server for a local model folder (transformers serve)."""
    import os

    from hare.chat.serve import Server, build_app

    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not key:
        log.warning("serving on %s without an API key: anyone who can reach it can use it (set %s)",
                    args.host, args.api_key_env)
    try:
        app = build_app(args.model, limits(args), api_key=key, device=args.device,
                        continuous_batching=args.continuous_batching, chat_template=args.chat_template)
    except (FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from hare.chat.toolcall.openai import install, model_library

    library = model_library(args.model)
    if library is not None:  # a functional-token model: its answers become OpenAI tool_calls, streamed too
        install(app, library)
        log.info("serving %d functions of %s as tool_calls", len(library.functions), library.path)
    if not app.has_chat_template:
        log.warning("%s has no chat template: /v1/chat/completions answers 400; /v1/completions serves it "
                    "(hare serve --chat-template NAME gives it one: hare, chatml or a Jinja file)", args.model)
    log.info("prompts are bounded at %s tokens and %d characters", app.limits.max_prompt_tokens,
             app.limits.max_prompt_chars)
    server = Server(app, args.host, args.port).start()
    print(f"serving {args.model} at {server.url} (model name: {args.model}){'; API key required' if key else ''}; "
          "Ctrl-C stops", flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def serving_arguments(sp: argparse.ArgumentParser, chat: bool = False) -> None:
    if chat:
        sp.add_argument("--max-tokens", type=int, default=None,
                        help="most tokens of an answer (default: the server's; a local folder's server caps at 1024)")
    else:
        sp.add_argument("--max-tokens", type=int, default=1024,
                        help="cap on a request's max_tokens, and its value when a request leaves it out")
    sp.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body accepted")
    sp.add_argument("--max-messages", type=int, default=256, help="most messages in a chat request")
    sp.add_argument("--max-prompt-tokens", type=int, default=None,
                    help="most tokens of a prompt, chat template included (default: the model's context length)")
    sp.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    sp.add_argument("--continuous-batching", action="store_true",
                    help="transformers' continuous batching with a paged KV cache (for GPUs; on CPU one request at "
                         "a time is faster)")
    sp.add_argument("--api-key-env", default="HARE_API_KEY",
                    help="environment variable holding the API key; when it is set, requests need "
                         "'Authorization: Bearer KEY'" + (" (with --endpoint: the key sent)" if chat else ""))


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("model", help="a Hugging Face model folder (a hare export, or any local causal LM)")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    sp.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port, printed)")
    sp.add_argument("--chat-template", default=None,
                    help="a chat template for a model without one (or to replace its own): hare, chatml or a Jinja "
                         "file")
    serving_arguments(sp)
