"""``hare chat``: a terminal chat with a served model (``hare serve``'s, or any OpenAI-compatible one).

``hare chat MODEL`` starts ``hare serve``'s app for the local folder on a free port of 127.0.0.1 in
this process and talks to it over HTTP like any client; ``hare chat --endpoint URL`` talks to a
running server. The conversation (after the system prompt) is kept and sent with every question;
answers are streamed as they are generated. ``/reset`` forgets the conversation, ``/exit``, Ctrl-D
or Ctrl-C at the prompt end the chat; Ctrl-C during an answer stops that answer.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import IO, Callable, Iterator

HELP = "commands: /reset (forget the conversation), /system TEXT (new system prompt), /exit; Ctrl-D exits"


@dataclass
class Chat:
    """A conversation with an OpenAI-compatible endpoint: the history and one streamed turn at a time."""

    client: object
    model: str
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    history: list[dict] = field(default_factory=list)
    # Called with each complete answer; a line it returns is printed after the answer (the parsed
    # call of a functional-token model).
    on_answer: Callable[[str], str | None] | None = None

    def messages(self) -> list[dict]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.history

    def ask(self, text: str) -> Iterator[str]:
        """Stream the answer to ``text``; the turn joins the history once the answer is complete."""
        self.history.append({"role": "user", "content": text})
        kw = {k: v for k, v in (("max_tokens", self.max_tokens), ("temperature", self.temperature)) if v is not None}
        answer = []
        try:
            stream = self.client.chat.completions.create(model=self.model, messages=self.messages(), stream=True, **kw)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    piece = chunk.choices[0].delta.content
                    answer.append(piece)
                    yield piece
        except BaseException:
            self.history.pop()  # an answer that did not finish is not part of the conversation
            raise
        self.history.append({"role": "assistant", "content": "".join(answer)})

    def reset(self) -> None:
        self.history.clear()


def repl(chat: Chat, stdin: IO[str] = sys.stdin, out: IO[str] = sys.stdout) -> int:
    """Read questions until /exit, Ctrl-D or Ctrl-C; print streamed answers. Returns the exit status."""
    try:
        import readline  # noqa: F401 - line editing and history for input()
    except ImportError:
        pass
    import openai

    print(f"chatting with {chat.model}; {HELP}", file=out, flush=True)
    while True:
        try:
            text = input(">>> ")
        except (EOFError, KeyboardInterrupt):
            print(file=out, flush=True)
            return 0
        text = text.strip()
        if not text:
            continue
        if text in ("/exit", "/quit", "/bye"):
            return 0
        if text == "/reset":
            chat.reset()
            print("(conversation forgotten)", file=out, flush=True)
            continue
        if text.startswith("/system"):
            chat.system = text[len("/system"):].strip() or None
            chat.reset()
            print(f"(system prompt: {chat.system or 'none'}; conversation forgotten)", file=out, flush=True)
            continue
        if text.startswith("/"):
            print(HELP, file=out, flush=True)
            continue
        try:
            pieces = []
            for piece in chat.ask(text):
                pieces.append(piece)
                out.write(piece)
                out.flush()
            print(file=out, flush=True)
            note = chat.on_answer("".join(pieces)) if chat.on_answer else None
            if note:
                print(note, file=out, flush=True)
        except KeyboardInterrupt:
            print("\n(answer stopped)", file=out, flush=True)
        except openai.APIError as e:
            print(f"\nerror from the server: {e}", file=out, flush=True)
