"""A benchmark of the user's own: one JSONL/JSON/Parquet/CSV file and the names of its fields
(``decontam.custom_benchmarks`` in a recipe)."""

from __future__ import annotations

from pathlib import Path

from hare.core.evalsets.base import BenchmarkMissing, Item
from hare.core.io import RecordError, read_rows
from pydantic import Field

from hare.core.config import Config, input_path


class CustomBenchmark(Config):
    """A benchmark of your own: one JSONL/JSON/Parquet/CSV file and the names of its fields."""

    name: str = Field(description="Name shown in the report.")
    path: str = Field(description="The file.", json_schema_extra=input_path("file"))
    question_field: str = Field("question", description="Field with the question or prompt.")
    choices_field: str | None = Field(None, description="Field with the list of answer options, if any.")
    answer_field: str | None = Field("answer", description="Field with the answer (text or option index).")
    split: str = Field("test", description="Split name recorded for its items.")


def load_custom(spec: CustomBenchmark) -> list[Item]:
    path = Path(spec.path)
    if not path.exists():
        raise BenchmarkMissing(str(path))
    items = []
    for i, row in enumerate(read_rows(path)):
        for f in (spec.question_field, spec.choices_field, spec.answer_field):
            if f and f not in row:
                raise RecordError(path, i + 1, f"has no field '{f}'",
                                  message=f"{path}: row {i + 1} has no field '{f}' (fields: {', '.join(row)})")
        choices = list(row[spec.choices_field]) if spec.choices_field else []
        ans = row[spec.answer_field] if spec.answer_field else None
        if choices and isinstance(ans, (int, str)) and str(ans).isdigit() and int(ans) < len(choices):
            ans = int(ans)
        items.append(Item(spec.name, spec.split, f"{spec.split}/{i}", str(row[spec.question_field]),
                          [str(c) for c in choices], ans))
    return items
