"""The data-efficiency study (``hare study``): arms that differ only in their data, one plot."""

from hare.study.noise import Noise, add_noise
from hare.study.arms import Arm, load_arms
from hare.study.outputs import markdown
from hare.study.run import StudyConfig, StudyResult, arm_recipe, interpolate_tokens, run_study

__all__ = ["Arm", "Noise", "StudyConfig", "StudyResult", "add_noise", "arm_recipe", "interpolate_tokens",
           "load_arms", "markdown", "run_study"]
