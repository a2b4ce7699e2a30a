"""``hare chat``: a terminal chat with a served model (``hare serve``'s, or any OpenAI-compatible one).

``hare chat MODEL`` starts ``hare serve``'s app for the local folder on a free port of 127.0.0.1 in
this process and talks to it over HTTP like any client; ``hare chat --endpoint URL`` talks to a
running server. The conversation (after the system prompt) is kept and sent with every question;
answers are streamed as they are generated. ``/reset`` forgets the conversation, ``/exit``, Ctrl-D
or Ctrl-C at the prompt end the chat; Ctrl-C during an answer stops that answer.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
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


@contextmanager
def interrupts_reach_the_prompt(delays: tuple[float, ...] = (0.05, 0.25, 1.0)):
    """Make every Ctrl-C reach ``input()``.

    readline waits for a key in ``select()`` on stdin. Python's SIGINT handler only sets a flag, which is
    read when that ``select()`` returns interrupted. A Ctrl-C that arrives while the main thread is between
    drawing the prompt and entering ``select()`` (a loaded machine), or that the kernel hands to another
    thread (the server's, torch's), interrupts nothing, and the chat waited for a key. Here a watcher
    thread reads the signal numbers Python writes to its wakeup fd and, after each SIGINT, pokes the main
    thread with a no-op SIGUSR1 a few times: ``select()`` returns, and the pending KeyboardInterrupt is
    raised. A poke after the interrupt was already handled does nothing.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_kill"):
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    lock, done = threading.Lock(), threading.Event()
    main = threading.main_thread().ident
    old_usr1 = signal.signal(signal.SIGUSR1, lambda *_: None)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def watch() -> None:
        while not done.is_set():
            data = os.read(read_fd, 64)
            if not data:  # the write end was closed: the chat is over
                return
            if signal.SIGINT not in data:
                continue
            for delay in delays:
                if done.wait(delay):
                    return
                with lock:
                    if done.is_set():
                        return
                    signal.pthread_kill(main, signal.SIGUSR1)

    watcher = threading.Thread(target=watch, daemon=True, name="hare-chat-interrupts")
    watcher.start()
    try:
        yield
    finally:
        with lock:  # no poke after SIGUSR1 has its old meaning again
            done.set()
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGUSR1, old_usr1)
        os.close(write_fd)
        watcher.join(timeout=5)
        os.close(read_fd)


def repl(chat: Chat, out: IO[str] | None = None) -> int:
    """Read questions (``input()``) until /exit, Ctrl-D or Ctrl-C; print streamed answers to ``out``
    (stdout). Returns the exit status."""
    out = out or sys.stdout
    if sys.stdin.isatty():
        with interrupts_reach_the_prompt():
            return _repl(chat, out)
    return _repl(chat, out)


def _repl(chat: Chat, out: IO[str]) -> int:
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
