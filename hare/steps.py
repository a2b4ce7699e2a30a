"""The pipeline's steps, in order: the one list of steps. The runner, the command line (one command
per step) and the report all read it; adding a step is one module and one entry here."""

from __future__ import annotations

from hare.chat.sft import SFT
from hare.core.step import Section, Step
from hare.corpus.cluster import CLUSTER
from hare.corpus.curate import CURATE
from hare.corpus.decontam import DECONTAM
from hare.corpus.mix import MIX
from hare.corpus.step import CORPUS
from hare.evals.audit import AUDIT
from hare.evals.step import EVAL
from hare.report.html import ReportStep
from hare.synth.d2 import D2
from hare.synth.d3 import D3
from hare.train.loop import TRAIN
from hare.train.pack import TOKENIZE

# Outputs made outside the pipeline that the report shows when a run has them.
REPORT_SECTIONS: list[Section] = [AUDIT]

STEPS: list[Step] = [CORPUS, DECONTAM, CLUSTER, D2, D3, CURATE, MIX, TOKENIZE, TRAIN, SFT, EVAL,
                      ReportStep(extras=REPORT_SECTIONS)]
