"""Chat fine-tuning's configuration (the recipe key ``sft``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hare.core.config import EXECUTION, Config, input_path


class LoraConfig(Config):
    """Low-rank adapters (peft) instead of full fine-tuning, for bases that do not fit; merged into the
    exported weights."""

    enabled: bool = Field(False, description="Train LoRA adapters only (needs the peft package).")
    r: int = Field(16, ge=1, description="Adapter rank.")
    alpha: int = Field(32, ge=1, description="Adapter scaling (lora_alpha; peft's examples: 2 x r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapters' input.")
    target_modules: list[str] | str = Field(
        "all-linear", description="Modules that get adapters: a list of names, or all-linear (QLoRA's choice).")


class SftConfig(Config):
    """Supervised fine-tuning on chat data (TRL's SFTTrainer), after the train step."""

    enabled: bool = Field(False, description="Fine-tune the trained model on sft.data after the train step.")
    data: list[str] = Field(default_factory=list, description="Chat files, folders or globs: OpenAI messages, "
                            "ShareGPT conversations or Alpaca/Dolly instruction records (JSONL, JSON, Parquet, CSV).",
                            json_schema_extra=input_path("any", glob=True))
    format: Literal["auto", "messages", "sharegpt", "alpaca"] = Field(
        "auto", description="Record format; auto picks it per record from its keys.")
    template: Literal["hare", "chatml", "tokenizer"] = Field(
        "hare", description="Chat template stored in the exported tokenizer: hare (<round_start>/<round_end>, the "
        "paper's), chatml, or the base tokenizer's own (it must mark the assistant's part with {% generation %}).")
    max_length: int = Field(1024, ge=16, description="Tokens per packed sequence (or per conversation, unpacked).")
    packing: bool = Field(True, description="Pack conversations best-fit into max_length sequences without "
                          "attention across them (position ids restart per conversation).")
    padding_free: bool = Field(True, description="Unpacked: flatten each batch's conversations into one row "
                               "(position ids restart per conversation, no attention across them), so no padding "
                               "is computed; false: pad each conversation to the longest of its batch.")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps; null: epochs over the data.")
    epochs: float = Field(3.0, gt=0, description="Passes over the data when max_steps is null.")
    batch_size: int = Field(8, ge=1, description="Sequences per forward pass (per process).")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    lr: float = Field(2e-5, gt=0, description="Peak learning rate (TRL's default; the paper used 1e-6 at 1024 "
                      "conversations a step for its 1.1B model).")
    schedule: Literal["cosine", "linear", "constant_with_warmup"] = Field("cosine", description="Learning-rate "
                                                                          "schedule after the warmup.")
    warmup_steps: int = Field(0, ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    neftune_noise_alpha: float | None = Field(
        None, gt=0, description="NEFTune (Jain et al. 2023; TRL's and transformers' neftune_noise_alpha): uniform "
        "noise of magnitude alpha / sqrt(sequence length x hidden size) added to the input embeddings while "
        "training (the paper: 5); null: none.")
    soup: int = Field(1, ge=1, description="Fine-tune this many times from the same start (training seeds seed, "
                      "seed+1, ...: the batches' order) and export the uniform model soup of the runs (Wortsman et al. "
                      "2022; hare soup): on the tool-calling benchmark a soup of three seeds scored at or above the "
                      "best of them (docs/tool-calling.md). Costs that many fine-tunings, nothing at inference.")
    grad_clip: float = Field(1.0, ge=0, description="Clip the global gradient norm to this (0 disables).")
    eval_fraction: float = Field(0.05, ge=0, lt=1, description="Share of the conversations held out (by a hash of "
                                 "each) for the evaluation loss.")
    eval_every: int = Field(50, ge=1, description="Evaluate the held-out loss every N steps (and at the end).",
                            json_schema_extra=EXECUTION)
    checkpoint_every: int = Field(50, ge=1, description="Write a checkpoint every N steps.",
                                  json_schema_extra=EXECUTION)
    keep_checkpoints: int = Field(2, ge=1, description="Keep the last K checkpoints.", json_schema_extra=EXECUTION)
    log_every: int = Field(10, ge=1, description="Log loss and throughput every N steps.", json_schema_extra=EXECUTION)
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.", json_schema_extra=EXECUTION)
    threads: int = Field(0, ge=0, description="CPU threads for PyTorch; 0 keeps PyTorch's default.",
                         json_schema_extra=EXECUTION)
    activation_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, about 30 % more compute "
        "(TRL turns it on by default; hare leaves it off, as in pretraining).", json_schema_extra=EXECUTION)
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA adapters instead of full fine-tuning.")
    tools: str | None = Field(
        None, description="A function library (OpenAI tools JSON): one functional token per function is added "
        "(initialised from its description) before fine-tuning, and the export carries the library (tools.json), "
        "so hare serve answers with tool_calls (the Octopus v2 method).", json_schema_extra=input_path("file"))

    @model_validator(mode="after")
    def _needs_data(self) -> "SftConfig":
        if self.enabled and not self.data:
            raise ValueError("data: sft.enabled needs chat files to fine-tune on")
        return self

