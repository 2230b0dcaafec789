"""The training wing: one local-trainer interface and the trainers secfl ships.

A trainer turns a ``Task`` (the global model, one client's data, a seed, hyper-parameters, the client's
state) into a ``LocalResult`` (the delta it sends). Loop trainers describe only what differs from plain
mini-batch SGD; ``fit`` runs the loop, and DP-SGD (``DpSgd``) wraps any loop trainer's module, optimizer
and data the way Opacus's ``make_private`` does.
"""

from secfl.training.dpsgd import DpSgd, DpSgdConfig
from secfl.training.evaluate import evaluate
from secfl.training.gradient import GradientTrainer
from secfl.training.sgd import SgdTrainer, local_train
from secfl.training.trainer import Hyper, LocalResult, LoopTrainer, Setup, Task, Trainer, fit

__all__ = ["DpSgd", "DpSgdConfig", "GradientTrainer", "Hyper", "LocalResult", "LoopTrainer", "Setup", "SgdTrainer",
           "Task", "Trainer", "evaluate", "fit", "local_train"]
