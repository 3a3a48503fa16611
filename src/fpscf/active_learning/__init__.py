"""Active learning: run MD with the current model, label what it is least sure of, retrain, repeat.

One module per job:

- :mod:`~fpscf.active_learning.explore`: Langevin MD that stops at the first sign of trouble
  (non-finite result, SCF failure or spike, huge force, temperature runaway, atoms too close);
- :mod:`~fpscf.active_learning.trajectory`: per-frame records and the trajectory files;
- :mod:`~fpscf.active_learning.select`: frame scores (committee force spread, SCF spikes, force
  outliers, domain violations, nearness to a blow-up), diverse picks, flagged atoms;
- :mod:`~fpscf.active_learning.clusters`: clusters of whole molecules cut around flagged atoms;
- :mod:`~fpscf.active_learning.label`: resumable labelling (the data-set labellers, or any function);
- :mod:`~fpscf.active_learning.retrain`: ``fpscf train`` continued from the previous model;
- :mod:`~fpscf.active_learning.loop`: the resumable loop and its work directory;
- :mod:`~fpscf.active_learning.config`: the ``fpscf active-learn`` YAML config.
"""

from fpscf.active_learning.config import ActiveLearningConfig, load_active_learning_config
from fpscf.active_learning.explore import MDSettings, StopCriteria, explore, run_md
from fpscf.active_learning.label import DatasetLabeller, InProcessLabeller, model_labeller
from fpscf.active_learning.loop import ActiveLearning, run_active_learning
from fpscf.active_learning.select import SelectionSettings, select_structures
from fpscf.active_learning.trajectory import Trajectory, read_trajectory

__all__ = [
    "ActiveLearning", "ActiveLearningConfig", "DatasetLabeller", "InProcessLabeller", "MDSettings",
    "SelectionSettings", "StopCriteria", "Trajectory", "explore", "load_active_learning_config", "model_labeller",
    "read_trajectory", "run_active_learning", "run_md", "select_structures",
]
