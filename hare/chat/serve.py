"""``hare serve MODEL``: an OpenAI-compatible HTTP server for a local causal LM, on ``transformers serve``.

The engine is transformers' own server (``transformers.cli.serving``): its handlers apply the
model's chat template, generate (one request at a time, or with continuous batching and a paged KV
cache), stream server-sent events and count ``usage``. hare builds that FastAPI app in-process,
pinned to one local model folder (the model on an inference thread of this process before
transformers 5.25, in a process of its own from 5.25), and puts an ASGI layer in front of it
(``Guard``) that makes it safe to expose:

- only ``GET /v1/models``, ``GET /health``, ``POST /v1/completions`` and ``POST /v1/chat/completions``
  are routed (transformers' model loading and reset routes are not);
- an optional API key (``Authorization: Bearer KEY``, compared in constant time; ``/health`` stays open);
- bounded requests: body size, ``max_tokens`` (a default when absent), number of messages, prompt
  characters, and the prompt in tokens as the model will read it (the chat template rendered, off
  the event loop); a request for another model is a 404;
- ``chat_template_kwargs`` may set only the variables the served template reads (never the
  template itself, nor the arguments hare passes), with plain values;
- every error is a JSON body ``{"error": {"message", "type", "code"}}`` with a 4xx status (the
  shape OpenAI's clients read), and the server goes on serving. A model without a chat template
  answers chat requests with a 400 that says so (``/v1/completions`` serves it; ``--chat-template``
  gives it one).

Extension: ``Guard.request_hooks`` are called with ``(path, body)`` after validation and may raise
``ApiError`` or change the body; ``Guard.response_hooks`` are called with ``(path, answer)`` on every
non-streamed JSON answer and return it; ``Guard.stream_hooks`` are called with ``path`` for every
streamed answer and may return an editor, called with each server-sent chunk (a dict) and returning
the chunks to send in its place (``hare.chat.toolcall.openai`` turns functional tokens into ``tool_calls``
in both).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("hare.chat")

ROUTES = {("GET", "/v1/models"), ("GET", "/health"), ("POST", "/v1/completions"), ("POST", "/v1/chat/completions")}
ROLES = ("system", "user", "assistant")
# Request fields passed on; anything else is refused (``generation_config`` would lift the caps).
COMMON_FIELDS = {"model", "max_tokens", "temperature", "top_p", "stream", "stop", "seed", "frequency_penalty",
                 "stream_options", "user", "n"}
CHAT_FIELDS = COMMON_FIELDS | {"messages", "max_completion_tokens", "chat_template_kwargs", "tools", "tool_choice"}
COMPLETION_FIELDS = COMMON_FIELDS | {"prompt"}


@dataclass
class Limits:
    max_body_bytes: int = 1 << 20
    max_tokens: int = 1024  # the cap on max_tokens, and its value when a request leaves it out
    max_messages: int = 256
    max_prompt_chars: int = 200_000
    max_prompt_tokens: int | None = None  # None: the model's context length (build_app sets it)


# Arguments the engine passes to ``apply_chat_template`` itself, and variables a template reads that
# are the conversation or the tokenizer's: never set by ``chat_template_kwargs``.
RESERVED_TEMPLATE_VARS = frozenset({
    "chat_template", "messages", "conversation", "tools", "documents", "add_generation_prompt",
    "continue_final_message", "tokenize", "return_dict", "return_tensors", "padding", "truncation",
    "max_length", "return_assistant_tokens_mask", "tokenizer_kwargs", "processor_kwargs",
    "load_audio_from_video", "raise_exception", "strftime_now", "range", "namespace"})
MAX_TEMPLATE_VALUE_CHARS = 256


def template_variables(template: str | None) -> frozenset[str]:
    """The variables a chat template reads that a request may set through ``chat_template_kwargs``
    (``enable_thinking``, say): the template's free variables, less the reserved ones and the
    tokenizer's special tokens (``bos_token``...). As vLLM does, a key the template does not read is
    refused rather than passed on."""
    if not template:
        return frozenset()
    import jinja2
    import jinja2.meta

    from hare.chat.template import without_generation_markers

    try:
        names = jinja2.meta.find_undeclared_variables(
            jinja2.Environment(extensions=["jinja2.ext.loopcontrols"]).parse(without_generation_markers(template)))
    except jinja2.TemplateSyntaxError:
        return frozenset()
    return frozenset(n for n in names if n not in RESERVED_TEMPLATE_VARS and not n.endswith("_token"))


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code

    def body(self) -> bytes:
        return json.dumps({"error": {"message": self.message, "type": self.type, "code": self.code}}).encode()


def _number(body: dict, key: str, lo: float, hi: float) -> None:
    v = body.get(key)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ApiError(400, f"'{key}' must be a number, got {type(v).__name__}", code="invalid_type")
    if not lo <= v <= hi:
        raise ApiError(400, f"'{key}' must be between {lo} and {hi}, got {v}", code="invalid_value")


def validate(path: str, body: Any, model: str, limits: Limits, template_vars: frozenset[str] = frozenset()) -> dict:
    """The request body checked and completed (``model`` resolved, ``max_tokens`` set); raises ApiError.

    ``template_vars``: the variables ``chat_template_kwargs`` may set (``template_variables``)."""
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    chat = path == "/v1/chat/completions"
    unknown = sorted(set(body) - (CHAT_FIELDS if chat else COMPLETION_FIELDS))
    if unknown:
        raise ApiError(400, f"unsupported fields: {', '.join(unknown)}", code="unsupported_field")
    if body.get("model") not in (None, model):
        raise ApiError(404, f"the model '{body['model']}' does not exist; this server serves '{model}'",
                       "invalid_request_error", "model_not_found")
    body["model"] = model
    key = "max_completion_tokens" if chat and "max_completion_tokens" in body else "max_tokens"
    mt = body.get(key)
    if mt is None:
        body["max_tokens"] = limits.max_tokens
    elif isinstance(mt, bool) or not isinstance(mt, int):
        raise ApiError(400, f"'{key}' must be an integer, got {type(mt).__name__}", code="invalid_type")
    elif not 1 <= mt <= limits.max_tokens:
        raise ApiError(400, f"'{key}' must be between 1 and {limits.max_tokens} (this server's cap), got {mt}",
                       code="invalid_value")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "frequency_penalty", -2, 2)
    if "stream" in body and not isinstance(body["stream"], bool):
        raise ApiError(400, "'stream' must be true or false", code="invalid_type")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not -(1 << 63) <= seed < (1 << 64)):
        raise ApiError(400, f"'seed' must be an integer (a 64-bit one), got {seed!r}"[:200], code="invalid_type")
    if body.get("n") not in (None, 1):
        raise ApiError(400, "'n' must be 1: one choice per request", code="invalid_value")
    body.pop("n", None)
    body.pop("user", None)
    body.pop("stream_options", None)
    if body.get("stream"):  # usage is in every answer: the last chunk of a stream (transformers 5.25 on asks so)
        body["stream_options"] = {"include_usage": True}
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= 4
                                                           and all(isinstance(s, str) for s in stop))):
        raise ApiError(400, "'stop' must be a string or a list of up to 4 strings", code="invalid_type")
    if chat:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise ApiError(400, "'messages' must be a non-empty list", code="invalid_type")
        if len(msgs) > limits.max_messages:
            raise ApiError(400, f"{len(msgs)} messages; this server takes at most {limits.max_messages}",
                           code="too_many_messages")
        chars = 0
        for i, m in enumerate(msgs):
            if not isinstance(m, dict):
                raise ApiError(400, f"messages[{i}] must be an object", code="invalid_type")
            if m.get("role") not in ROLES:
                raise ApiError(400, f"messages[{i}].role must be one of {', '.join(ROLES)}, got {m.get('role')!r}",
                               code="invalid_value")
            c = m.get("content")
            if isinstance(c, list):  # content parts: text only
                if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                           for p in c):
                    raise ApiError(400, f"messages[{i}].content: only text parts are supported", code="invalid_type")
                chars += sum(len(p["text"]) for p in c)
            elif isinstance(c, str):
                chars += len(c)
            else:
                raise ApiError(400, f"messages[{i}].content must be a string, got {type(c).__name__}",
                               code="invalid_type")
        if "tools" in body and not (isinstance(body["tools"], list) and all(isinstance(t, dict) for t in body["tools"])):
            raise ApiError(400, "'tools' must be a list of tool objects", code="invalid_type")
        _template_kwargs(body, template_vars)
    else:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise ApiError(400, f"'prompt' must be a string, got {type(prompt).__name__}", code="invalid_type")
        chars = len(prompt)
    if chars > limits.max_prompt_chars:
        raise ApiError(413, f"the prompt has {chars} characters; this server takes at most {limits.max_prompt_chars}",
                       code="prompt_too_long")
    return body


def _template_kwargs(body: dict, allowed: frozenset[str]) -> None:
    """``chat_template_kwargs`` checked: only variables the served template reads, with plain values
    (a template, or an argument the engine passes itself, would lift the bounds or fail inside it)."""
    kwargs = body.get("chat_template_kwargs")
    if kwargs is None:
        body.pop("chat_template_kwargs", None)
        return
    if not isinstance(kwargs, dict):
        raise ApiError(400, "'chat_template_kwargs' must be an object", code="invalid_type")
    for key, value in kwargs.items():
        if key not in allowed:
            known = f"it reads {', '.join(sorted(allowed))}" if allowed else "it reads none"
            raise ApiError(400, f"chat_template_kwargs: '{key}' is not a variable of this model's chat template "
                                f"that a request may set ({known})", code="invalid_value")
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise ApiError(400, f"chat_template_kwargs.{key} must be a string, number, boolean or null",
                           code="invalid_type")
        if isinstance(value, str) and len(value) > MAX_TEMPLATE_VALUE_CHARS:
            raise ApiError(400, f"chat_template_kwargs.{key} is longer than {MAX_TEMPLATE_VALUE_CHARS} characters",
                           code="invalid_value")


def authorized(headers: dict, api_key: str) -> bool:
    """Whether the ``Authorization`` header carries ``Bearer api_key`` (the scheme in any case, the
    key compared in constant time)."""
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("utf-8", "replace"),
                                                              api_key.encode("utf-8"))


class Guard:
    """The ASGI layer in front of transformers' app (module docstring)."""

    def __init__(self, app, model: str, limits: Limits | None = None, api_key: str | None = None, tokenizer=None):
        """``tokenizer``: the served model's, to bound prompts in tokens and check chat requests
        against its chat template (without one, only the character bounds hold)."""
        self.app, self.model, self.limits, self.api_key = app, model, limits or Limits(), api_key
        self.tokenizer = tokenizer
        self.template_vars = template_variables(getattr(tokenizer, "chat_template", None))
        self.request_hooks: list[Callable[[str, dict], None]] = []
        self.response_hooks: list[Callable[[str, dict], dict]] = []
        self.stream_hooks: list[Callable[[str], Callable[[dict], list[dict]] | None]] = []
        self.stop_engine: Callable[[], None] | None = None  # build_app sets it; Server.stop calls it

    @property
    def has_chat_template(self) -> bool:
        return self.tokenizer is None or bool(getattr(self.tokenizer, "chat_template", None))

    def prompt_tokens(self, path: str, body: dict) -> int:
        """The prompt's length in tokens as the engine will build it (the chat template rendered)."""
        tok = self.tokenizer
        if path != "/v1/chat/completions":
            return len(tok(body["prompt"])["input_ids"])
        msgs = [dict(m, content="".join(p["text"] for p in m["content"])) if isinstance(m.get("content"), list)
                else m for m in body["messages"]]
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tools=body.get("tools"), tokenize=True,
                                      return_dict=True, **body.get("chat_template_kwargs", {}))["input_ids"]
        return len(ids)

    async def _check_prompt_tokens(self, path: str, body: dict) -> None:
        cap = self.limits.max_prompt_tokens
        if self.tokenizer is None or cap is None:
            return
        try:  # off the event loop: a template is a program, and other requests go on meanwhile
            n = await asyncio.to_thread(self.prompt_tokens, path, body)
        except Exception as e:  # noqa: BLE001 - a template that refuses the conversation is the client's error
            raise ApiError(400, f"the chat template cannot render these messages: {e}"[:1000],
                           code="invalid_messages") from None
        if n > cap:
            raise ApiError(413, f"the prompt has {n} tokens; this server takes at most {cap}",
                           code="prompt_too_long")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # lifespan events go through
            return await self.app(scope, receive, send)
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        try:
            if (method, path) not in ROUTES:
                known = {p for _, p in ROUTES}
                raise ApiError(405 if path in known else 404,
                               f"{method} {path} is not served" + ("" if path in known else "; routes: " +
                                                                   ", ".join(sorted(known))), code="not_found")
            if self.api_key and path != "/health" and not authorized(dict(scope.get("headers") or []), self.api_key):
                raise ApiError(401, "a valid API key is needed (Authorization: Bearer KEY)",
                               "authentication_error", "invalid_api_key")
            if path == "/v1/models":
                return await _json(send, 200, {"object": "list", "data": [
                    {"id": self.model, "object": "model", "created": 0, "owned_by": "hare"}]})
            if method == "POST":
                if path == "/v1/chat/completions" and not self.has_chat_template:
                    raise ApiError(400, f"the model '{self.model}' has no chat template, so it cannot serve chat "
                                        "completions: /v1/completions serves it (or `hare serve --chat-template NAME` "
                                        "gives it one)", code="no_chat_template")
                body = validate(path, await self._body(scope, receive), self.model, self.limits, self.template_vars)
                for hook in self.request_hooks:
                    hook(path, body)
                await self._check_prompt_tokens(path, body)
                raw = json.dumps(body).encode()
                stream = bool(body.get("stream"))
                return await self.app(dict(scope, headers=_with_length(scope, len(raw))),
                                      _replay(raw, receive), self._answer(send, path, stream))
            return await self.app(scope, receive, send)
        except ApiError as e:
            return await _raw(send, e.status, e.body())

    async def _body(self, scope, receive) -> Any:
        headers = dict(scope.get("headers") or [])
        size = headers.get(b"content-length")
        if size is not None and size.isdigit() and int(size) > self.limits.max_body_bytes:
            raise ApiError(413, f"the request body has {int(size)} bytes; this server takes at most "
                                f"{self.limits.max_body_bytes}", code="body_too_large")
        chunks, n = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise ApiError(400, "the client went away")
            chunk = msg.get("body", b"")
            n += len(chunk)
            if n > self.limits.max_body_bytes:
                raise ApiError(413, f"the request body is over {self.limits.max_body_bytes} bytes",
                               code="body_too_large")
            chunks.append(chunk)
            if not msg.get("more_body"):
                break
        try:
            return json.loads(b"".join(chunks))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None

    def _answer(self, send, path: str, stream: bool):
        """``send`` that rewrites the engine's errors into the OpenAI shape and runs the response hooks
        on non-streamed JSON answers (both need the whole body: it is held until complete)."""
        state: dict[str, Any] = {"start": None, "chunks": [], "events": None}
        editors = [e for e in (hook(path) for hook in self.stream_hooks) if e is not None] if stream else []

        async def wrapped(msg):
            if msg["type"] == "http.response.start":
                status = msg["status"]
                if status < 400 and (stream or not self.response_hooks):
                    if editors:
                        state["events"] = SseEditor(editors)
                    return await send(msg)
                state["start"] = msg
                return None
            if state["events"] is not None and msg["type"] == "http.response.body":
                return await send(dict(msg, body=state["events"].feed(msg.get("body", b""),
                                                                      final=not msg.get("more_body"))))
            if state["start"] is None:
                return await send(msg)
            state["chunks"].append(msg.get("body", b""))
            if msg.get("more_body"):
                return None
            status, raw = state["start"]["status"], b"".join(state["chunks"])
            if status >= 400:
                try:
                    detail = json.loads(raw)
                    detail = detail.get("detail") or detail.get("error") or detail
                except (json.JSONDecodeError, AttributeError):
                    detail = raw.decode("utf-8", "replace")
                code = 400 if status == 422 else status
                return await _raw(send, code, ApiError(code, detail if isinstance(detail, str) else json.dumps(detail),
                                                       "server_error" if code >= 500 else "invalid_request_error").body())
            answer = json.loads(raw)
            for hook in self.response_hooks:
                answer = hook(path, answer)
            return await _raw(send, status, json.dumps(answer).encode())

        return wrapped


class SseEditor:
    """Server-sent events passed through chunk editors: each ``data: {json}`` event is decoded, given
    to every editor in turn (each returns the chunks to send in its place) and encoded again; other
    events pass as they are. An event split across body messages is held until it is whole."""

    def __init__(self, editors: list[Callable[[dict], list[dict]]]):
        self.editors, self.pending = editors, b""

    def feed(self, data: bytes, final: bool) -> bytes:
        *events, self.pending = (self.pending + data).split(b"\n\n")
        if final and self.pending:
            events.append(self.pending)
            self.pending = b""
        out = []
        for event in events:
            chunks = None
            if event.startswith(b"data: "):
                try:
                    chunks = [json.loads(event[6:])]
                except json.JSONDecodeError:
                    chunks = None
            if not chunks or not isinstance(chunks[0], dict) or "choices" not in chunks[0]:
                out.append(event + b"\n\n")
                continue
            for edit in self.editors:
                chunks = [c for chunk in chunks for c in edit(chunk)]
            out.extend(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
        return b"".join(out)


def _with_length(scope, n: int) -> list:
    return [(k, v) for k, v in scope.get("headers") or [] if k != b"content-length"] + \
           [(b"content-length", str(n).encode())]


def _replay(raw: bytes, receive):
    """The body read (and rewritten) once more, then the client's own messages: a streamed answer
    listens for the client's disconnect on them."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return replay


async def _raw(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _json(send, status: int, obj: Any) -> None:
    await _raw(send, status, json.dumps(obj).encode())


def build_app(model: str | Path, limits: Limits | None = None, api_key: str | None = None, device: str = "auto",
              dtype: str = "auto", continuous_batching: bool = False, chat_template: str | None = None) -> Guard:
    """The guarded transformers app serving the local model folder ``model`` (loaded now).

    ``chat_template``: a template for a model that has none (or to replace its own): a name of
    ``hare.chat.template.TEMPLATES`` or a Jinja file. ``limits.max_prompt_tokens`` defaults to the
    model's context length."""
    import dataclasses

    model = str(model)
    if not (Path(model) / "config.json").exists():
        raise FileNotFoundError(f"{model}: not a Hugging Face model folder (no config.json)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs nothing from the hub
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger("transformers").setLevel(logging.ERROR)  # a line per request otherwise
    app, stop, tokenizer, config = _build_engine(model, device, dtype, continuous_batching)
    if chat_template is not None:  # this process renders the template, in both layouts
        tokenizer.chat_template = _template_source(chat_template)
    limits = limits or Limits()
    if limits.max_prompt_tokens is None:
        context = getattr(config.get_text_config(), "max_position_embeddings", None)
        limits = dataclasses.replace(limits, max_prompt_tokens=int(context) if context else None)
    guard = Guard(app, model, limits, api_key, tokenizer=tokenizer)
    guard.stop_engine = stop
    return guard


def _build_engine(model: str, device: str, dtype: str, continuous_batching: bool) -> tuple:
    """transformers' app for ``model``, the function that stops its engine, and the tokenizer and config
    this process keeps. Either layout ``transformers.cli.serving`` has had: before 5.25 the model runs
    in this process, on the generation state's thread; from 5.25 a ``ModelLoader`` runs it in a process
    of its own (started and loaded now; it also exits with this process), while this process renders
    the chat template and tokenizes, so the template override and the prompt bound apply here."""
    try:
        from transformers.cli.serving import model_manager
        from transformers.cli.serving.chat_completion import ChatCompletionHandler
        from transformers.cli.serving.completion import CompletionHandler
        from transformers.cli.serving.response import ResponseHandler
        from transformers.cli.serving.server import build_server
        from transformers.cli.serving.systemone import SystemOneHandler
        from transformers.cli.serving.transcription import TranscriptionHandler
        from transformers.cli.serving.utils import GenerationState
    except ImportError as e:
        raise ImportError(f"hare serve needs fastapi and uvicorn: pip install 'hare[serve]' ({e})") from None

    state = GenerationState(continuous_batching=continuous_batching, compile=False, cb_config=None)
    in_process = not hasattr(model_manager, "ModelLoader")
    if in_process:
        manager = model_manager.ModelManager(device=device, dtype=dtype, continuous_batching=continuous_batching,
                                             force_model=model)
        extra, transcription = {"generation_state": state}, TranscriptionHandler(manager, state)
    else:  # model_timeout -1: the one model served never stops for being idle
        loader = model_manager.ModelLoader(device=device, dtype=dtype, continuous_batching=continuous_batching)
        manager = model_manager.ModelManager(loader=loader, generation_state=state, model_timeout=-1,
                                             force_model=model)
        extra, transcription = {}, TranscriptionHandler(manager)
    app = build_server(manager, ChatCompletionHandler(manager, state, chat_template_kwargs={}),
                       completion_handler=CompletionHandler(manager, state),
                       response_handler=ResponseHandler(manager, state, chat_template_kwargs={}),
                       transcription_handler=transcription,
                       systemone_handler=SystemOneHandler(manager, state, chat_template_kwargs={}), **extra)
    if in_process:
        loaded, tokenizer = manager.load_model_and_processor(manager.process_model_name(model))
        return app, state.shutdown, tokenizer, loaded.config
    engine = manager.get_engine(model)
    return app, manager.shutdown, engine.processor, engine.model_config


def _template_source(name: str) -> str:
    """The Jinja source of ``--chat-template NAME``: a template hare knows, or a file."""
    from hare.chat.template import TEMPLATES, without_generation_markers

    if name in TEMPLATES:
        return without_generation_markers(TEMPLATES[name].jinja)
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"chat template '{name}': neither one of {', '.join(TEMPLATES)} nor a Jinja file")
    return path.read_text(encoding="utf-8")


@dataclass
class Server:
    """A uvicorn server running ``app`` on a thread; ``url`` is its OpenAI base URL."""

    app: Any
    host: str = "127.0.0.1"
    port: int = 0
    server: Any = field(default=None, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> "Server":
        import socket

        import uvicorn

        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
                                       name="hare-serve")
        self.thread.start()
        import time

        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the server on {self.host}:{self.port} did not start")
            time.sleep(0.02)
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        stop = getattr(self.app, "stop_engine", None)  # the generation thread or the model's process
        if stop is not None:
            stop()
