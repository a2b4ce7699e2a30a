"""The data-efficiency study (``hare study``): arms that differ only in their data, one plot."""

from hare.study.noise import Noise, add_noise
from hare.study.run import ARMS, StudyConfig, StudyResult, arm_recipe, interpolate_tokens, markdown, run_study

__all__ = ["ARMS", "Noise", "StudyConfig", "StudyResult", "add_noise", "arm_recipe", "interpolate_tokens",
           "markdown", "run_study"]
