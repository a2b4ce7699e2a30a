"""The recipe: one YAML file describes a whole run, validated before any work starts.

``Recipe`` composes the sections each stage owns (``hare/<stage>/config.py``; the markers that say
how a key is used, ``EXECUTION``, ``CONTINUABLE`` and ``input_path``, are in ``hare.core.config``).
``load_recipe`` reads a file, reports every invalid key with its key path, a suggestion and the keys
allowed there, resolves the input paths against the recipe's folder and checks they exist.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from hare.chat.config import SftConfig
from hare.core.config import Config, input_paths
from hare.core.execution import ExecutionConfig
from hare.corpus.config import ClusterConfig, CorpusConfig, MixConfig, SourceConfig
from hare.filters.config import DecontamConfig
from hare.evals.config import EvalConfig
from hare.model.config import ModelConfig
from hare.synth.config import SynthConfig
from hare.train.config import PackConfig, TokenizerConfig, TrainConfig

PACKAGE_RECIPES = Path(__file__).parent / "recipes"
DEFAULT_RECIPE = PACKAGE_RECIPES / "demo.yaml"


class Recipe(Config):
    """A whole run: sources, the corpus steps, tokenizer, model, training, evaluation."""

    name: str = Field(description="Run name: outputs go to <out_dir>/<name>/.")
    out_dir: str = Field("runs", description="Folder that holds every run, relative to the working directory.")
    seed: int = Field(1234, description="Seed for every random choice of the run.")
    sources: list[SourceConfig] = Field(description="Raw-text sources of the corpus.")
    corpus: CorpusConfig = Field(default_factory=CorpusConfig, description="Corpus construction.")
    decontam: DecontamConfig = Field(default_factory=DecontamConfig, description="Decontamination.")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Topic clustering.")
    mix: MixConfig = Field(default_factory=MixConfig, description="Training mix.")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig, description="Tokenizer.")
    pack: PackConfig = Field(default_factory=PackConfig, description="Tokenize and pack.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Model.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation.")
    sft: SftConfig = Field(default_factory=SftConfig, description="Chat fine-tuning (off unless enabled).")
    synth: SynthConfig = Field(default_factory=SynthConfig, description="Synthetic data D2 and D3 from a teacher.")
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig,
                                       description="Where the steps' parallel work runs (never what it gives).")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        # The run folder is <out_dir>/<name>, and the runner empties step folders inside it: a name
        # must not lead anywhere else.
        if not v or v in (".", "..") or any(c in v for c in "/\\\0") or Path(v).is_absolute():
            raise ValueError("a run name is a plain folder name: no '/', '\\', '..' or absolute path")
        return v

    @field_validator("out_dir")
    @classmethod
    def _safe_out_dir(cls, v: str) -> str:
        if not v.strip() or "\0" in v or ".." in Path(v).parts:
            raise ValueError("out_dir must be a folder path without '..' components")
        if Path(v).expanduser().resolve() in (Path("/"), Path.home().resolve()):
            raise ValueError("out_dir must not be the filesystem root or the home folder")
        return v

    @model_validator(mode="after")
    def _check(self) -> "Recipe":
        names = [s.name for s in self.sources]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"source names must be unique, repeated: {sorted(dup)}")
        if not self.sources:
            raise ValueError("a recipe needs at least one source")
        q = self.corpus.quality
        if q.enabled and q.mode == "reference" and not (q.reference_sources or q.reference_path):
            raise ValueError("corpus.quality needs reference_sources or reference_path")
        if q.enabled and q.mode == "annotator" and q.teacher is None:
            t = self.synth.teacher
            if not (t.endpoints or t.local or t.packaged):
                raise ValueError("corpus.quality.mode annotator needs a teacher: set corpus.quality.teacher (e.g. "
                                 "{packaged: smollm2}) or synth.teacher")
            # The annotator's teacher is then the synth section's, written into corpus.quality so that
            # the corpus step's fingerprint names the model that graded its sample.
            q.teacher = t.model_copy(deep=True)
        unknown = sorted(set(q.reference_sources) - set(names))
        if unknown:
            raise ValueError(f"corpus.quality.reference_sources names no source: {unknown}; sources: {', '.join(names)}")
        unknown = sorted(set(self.decontam.parts) - set(names))
        if unknown:
            raise ValueError(f"decontam.parts names no source: {unknown}; sources: {', '.join(names)}")
        parts = {s.part for s in self.sources}
        if self.synth.enabled:
            parts |= {"d2", "d3"}  # the synthetic parts
        for i, st in enumerate(self.train.stages):
            bad = sorted(set(st.weights) - parts)
            if bad:
                raise ValueError(f"train.stages[{i}].weights names no data part: {bad}; parts: {sorted(parts)}")
            if st.tokens is None and i != len(self.train.stages) - 1:
                raise ValueError(f"train.stages[{i}].tokens: only the last stage may leave tokens unset")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the file, the key path and what is allowed."""


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys allowed at ``loc`` (the parent of the bad key), walking nested sections and lists."""
    cur: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)) or part not in cur.model_fields:
            return []
        ann = cur.model_fields[part].annotation
        args = getattr(ann, "__args__", ()) or ()
        cur = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    if isinstance(cur, type) and issubclass(cur, BaseModel):
        return list(cur.model_fields)
    return []


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid recipe"]
    for e in err.errors():
        loc = tuple(e["loc"])
        path = _key_path(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(Recipe, loc[:-1])
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = f"  {path}: unknown key"
            if hint:
                msg += f" (did you mean '{hint[0]}'?)"
            msg += f"; allowed: {', '.join(allowed)}"
        elif e["type"] == "missing":
            msg = f"  {path}: required key is missing"
        else:
            msg = f"  {path}: {e['msg']} (got {e.get('input')!r})"
        lines.append(msg)
    return "\n".join(lines)


def load_recipe(path: str | Path | None = None, check_paths: bool = True) -> Recipe:
    """Read and validate a recipe; ``None`` gives the embedded demo recipe.

    Relative input paths in the recipe (the fields marked ``input_path``) are resolved against the
    recipe file's folder, so a recipe runs the same from any working directory. ``out_dir`` stays
    relative to the working directory.
    """
    path = Path(path) if path is not None else DEFAULT_RECIPE
    if not path.exists():
        raise RecipeError(f"recipe not found: {path}")
    if not path.is_file():
        raise RecipeError(f"{path}: not a recipe file (a folder?)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        raise RecipeError(f"{path}: not a UTF-8 text file (byte {e.start}); a recipe is a YAML file in UTF-8") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of keys, got {type(raw).__name__}")
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as e:
        raise RecipeError(format_validation_error(e, str(path))) from None
    base = path.resolve().parent
    for ref in input_paths(recipe):
        if Path(ref.value).expanduser().is_absolute():
            continue
        # a name-or-path value that is no local path is a name (an hf dataset), looked up when read
        if ref.use != "name-or-path" or (base / ref.value).exists():
            ref.set(str(base / ref.value))
    if check_paths:
        check_inputs(recipe, str(path))
    return recipe


def check_inputs(recipe: Recipe, origin: str = "recipe") -> None:
    """Fail before any work when an input path named by the recipe does not exist (a path under a
    section switched off, ``enabled: false``, is not read, so not checked)."""
    problems = []
    for ref in input_paths(recipe):
        p = Path(ref.value).expanduser()
        if not ref.enabled or (ref.use == "name-or-path" and not p.is_absolute()):
            continue
        if ref.kind == "dir":
            if not p.is_dir():
                problems.append(f"  {ref.key}: {p} is not a folder")
        elif not p.exists() and not (ref.glob and any(p.parent.glob(p.name))):
            problems.append(f"  {ref.key}: {p} does not exist")
    if problems:
        raise RecipeError(f"{origin}: missing inputs\n" + "\n".join(problems))
