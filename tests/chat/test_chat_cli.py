"""``hare chat`` in a pseudo-terminal (pexpect): against ``hare serve``'s app on 127.0.0.1, and with a
local model folder served in the chat's own process."""

from __future__ import annotations

import sys

import pexpect
import pytest

from tests.conftest import ROOT


def spawn(*args: str) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, ["-m", "hare", "chat", *args], cwd=str(ROOT), encoding="utf-8",
                         timeout=120, env={"PATH": "/usr/bin:/bin", "TERM": "dumb", "HARE_API_KEY": ""})


def test_chat_answers_keeps_history_resets_and_exits_on_ctrl_d(served):
    served.app.seen.clear()
    child = spawn("--endpoint", served.url, "--max-tokens", "3", "--system", "Be brief.")
    child.expect("chatting with")
    child.expect(">>> ")
    child.sendline("What is the capital of France?")
    child.expect(">>> ")
    child.sendline("And of Italy?")
    child.expect(">>> ")
    child.sendline("/reset")
    child.expect("forgotten")
    child.expect(">>> ")
    child.sendline("Hello again")
    child.expect(">>> ")
    child.sendeof()  # Ctrl-D
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    msgs = [body["messages"] for path, body in served.app.seen if path == "/v1/chat/completions"]
    assert len(msgs) == 3
    assert [m["role"] for m in msgs[0]] == ["system", "user"] and msgs[0][0]["content"] == "Be brief."
    # the second question carries the first exchange, the streamed answer included
    assert [m["role"] for m in msgs[1]] == ["system", "user", "assistant", "user"]
    assert msgs[1][1]["content"] == "What is the capital of France?" and msgs[1][3]["content"] == "And of Italy?"
    assert msgs[1][2]["content"]  # what the server streamed
    assert [m["content"] for m in msgs[2]] == ["Be brief.", "Hello again"]  # /reset forgot the rest
    assert all(body["stream"] is True for _, body in served.app.seen)


@pytest.mark.slow
def test_chat_with_a_local_folder_answers_and_exits_cleanly_on_ctrl_c(tiny_chat):
    child = spawn(str(tiny_chat), "--max-tokens", "3", "--device", "cpu")
    child.expect(">>> ")
    child.sendline("Hello")
    child.expect(r"Hello\r?\n(.+)\r?\n>>> ")
    assert child.match.group(1).strip() and "error" not in child.match.group(1)
    child.sendintr()  # Ctrl-C at the prompt
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and "Traceback" not in child.before


@pytest.mark.slow
def test_serve_command_binds_localhost_answers_and_stops_on_ctrl_c(tiny_chat):
    import openai

    child = pexpect.spawn(sys.executable, ["-m", "hare", "serve", str(tiny_chat), "--port", "0", "--device", "cpu",
                                           "--max-tokens", "4"], cwd=str(ROOT), encoding="utf-8", timeout=120,
                          env={"PATH": "/usr/bin:/bin", "TERM": "dumb", "HARE_API_KEY": "k3y"})
    child.expect(r"at (http://127\.0\.0\.1:\d+/v1) .*API key required")
    url = child.match.group(1)
    r = openai.OpenAI(base_url=url, api_key="k3y", max_retries=0).chat.completions.create(
        model=str(tiny_chat), messages=[{"role": "user", "content": "Hi"}])
    assert 1 <= r.usage.completion_tokens <= 4  # the server's cap is the default max_tokens
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and "Traceback" not in child.before


def _tgkill(pid: int, tid: int, sig: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "tgkill"):
        pytest.skip("this C library has no tgkill")
    if libc.tgkill(pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill({pid}, {tid}, {sig})")


def _blocks(pid: int, tid: int, sig: int) -> bool:
    """Whether thread ``tid`` of ``pid`` blocks ``sig`` (its SigBlk mask in /proc)."""
    for line in open(f"/proc/{pid}/task/{tid}/status", encoding="ascii"):
        if line.startswith("SigBlk:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


@pytest.mark.slow
def test_ctrl_c_at_the_prompt_ends_the_chat_even_when_another_thread_takes_the_signal(tiny_chat):
    """The prompt waits in readline's select(). A Ctrl-C that reaches the process while the main thread is not
    yet in that select (a loaded machine), or that the kernel hands to another of its threads, only sets
    Python's flag: select() is not interrupted, and the chat waited for a key that never came. A thread-directed
    SIGINT to a thread other than the main one reproduces that every time."""
    import os
    import signal

    child = spawn(str(tiny_chat), "--max-tokens", "3", "--device", "cpu")
    child.expect(">>> ")
    child.sendline("Hello")
    child.expect(r"Hello\r?\n(.+)\r?\n>>> ")
    # the kernel hands a Ctrl-C only to a thread that does not block SIGINT (transformers 5.25's threads may)
    others = sorted(int(t) for t in os.listdir(f"/proc/{child.pid}/task")
                    if int(t) != child.pid and not _blocks(child.pid, int(t), signal.SIGINT))
    assert others, "the chat serves its model on threads of its own"
    _tgkill(child.pid, others[-1], signal.SIGINT)
    child.expect(pexpect.EOF, timeout=20)
    child.close()
    assert child.exitstatus == 0 and "Traceback" not in child.before
