"""FedBAT: federated binarization-aware training (Li et al., ICML 2024; docs/methods/fedbat.md).

``binarize`` (the stochastic binarizer), ``layers`` (the trainable BAT layers), ``trainer`` (local training,
with or without DP-SGD), ``secure`` (public step sizes so the bits can go through a secure sum) and
``method`` (the registry entry: options, trainer, hooks).
"""

from secfl.methods.fedbat.binarize import BINARIZED_MODULES, binarize, binarized_segments, binarized_weights
from secfl.methods.fedbat.layers import BatConv2d, BatLinear, bat_model
from secfl.methods.fedbat.method import FedBat, FedBatOptions
from secfl.methods.fedbat.secure import SecureFedBat
from secfl.methods.fedbat.trainer import FedBatResult, FedBatTrainer, fedbat_local_train

__all__ = ["BINARIZED_MODULES", "BatConv2d", "BatLinear", "FedBat", "FedBatOptions", "FedBatResult", "FedBatTrainer",
           "SecureFedBat", "bat_model", "binarize", "binarized_segments", "binarized_weights", "fedbat_local_train"]
