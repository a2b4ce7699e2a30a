"""hare: train strong small language models on little compute by putting human priors into the data."""

import os as _os

# Offline by default: no code path may reach the Hugging Face hub unless the user exported these
# variables as "0" themselves. Set before transformers, datasets or lm_eval are imported.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    _os.environ.setdefault(_var, "1")
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
