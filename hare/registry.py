"""The pipeline's steps, in order: the one list of steps. The runner, the command line (one command
per step) and the report all read it; adding a step is one module (``<stage>/steps.py``) and one
entry here (``docs/adding-a-step.md``)."""

from __future__ import annotations

from hare.chat.steps import SFT
from hare.core.step import ReportSection, Step
from hare.corpus.steps import CLUSTER, DECONTAM, MIX, CorpusStep
from hare.evals.audit import AUDIT
from hare.evals.steps import EVAL
from hare.report.steps import ReportStep
from hare.synth.annotate import grade
from hare.synth.steps import CURATE, D2, D3
from hare.train.steps import TEACHER, TOKENIZE, TRAIN

# The corpus step's annotator mode grades documents with the synthetic-data stage's teacher client.
CORPUS = CorpusStep(grader=grade)

# Outputs made outside the pipeline that the report shows when a run has them.
REPORT_SECTIONS: list[ReportSection] = [AUDIT]

STEPS: list[Step] = [CORPUS, DECONTAM, CLUSTER, D2, D3, CURATE, MIX, TOKENIZE, TEACHER, TRAIN, SFT, EVAL,
                     ReportStep(extras=REPORT_SECTIONS)]
