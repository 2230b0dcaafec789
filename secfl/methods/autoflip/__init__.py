"""AutoFLIP: federated loss exploration and hybrid pruning (Internò et al., arXiv 2405.10271; docs/methods/autoflip.md).

``explore`` (the explorers' D_k and their secure sum), ``guidance`` (normalised scores and the hybrid mask),
``structure`` (removing whole units from a model), ``flops`` (counting a model's multiply-accumulates),
``trainer`` (local training under the mask) and ``method`` (the registry entry: options, trainer, hook).
"""

from secfl.methods.autoflip.method import AutoFlip, AutoFlipOptions, Pruning

__all__ = ["AutoFlip", "AutoFlipOptions", "Pruning"]
