"""A FedAgg device's round: distil from its edge's logits on the edge's bridge set plus its own data (the
leaf loss), then send its logits on that bridge set."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from secfl.methods.fedagg.distill import Losses, distill, logits_of
from secfl.methods.fedagg.tree import Tree
from secfl.training import LocalResult, Task

__all__ = ["DeviceTrainer"]


class DeviceTrainer:
    """Trains device ``task.client_id``'s own model (kept in the ``Tree``, never the global model) with the
    client's learning rate, momentum, weight decay, batch size and epochs (epochs over its private data).

    The vector it returns is its logits ``[m, classes]`` on the bridge set, flattened, clipped to
    ``[-logit_clip, logit_clip]`` if set; its weight is 1 (every child counts once in the ensemble)."""

    name: ClassVar[str] = "fedagg_device"
    supports_dp: ClassVar[bool] = False

    def __init__(self, tree: Tree, options: Any) -> None:
        self.tree, self.options = tree, options

    def train(self, task: Task, privacy: Any = None) -> LocalResult:
        o, edge = self.options, self.tree.edge_of(task.client_id)
        bridge, teacher = task.public["fedagg"]["bridges"][edge], task.public["fedagg"]["teachers"][edge]
        model = self.tree.device_models[task.client_id]
        hyper = task.hyper
        losses = Losses(alpha=o.alpha_leaf, temperature=o.temperature, lr=hyper.lr, momentum=hyper.momentum,
                        batch_size=hyper.batch_size, labels=o.bridge_labels, alpha_private=o.alpha_private,
                        weight_decay=hyper.weight_decay)
        loss = distill(model, bridge, teacher, losses, rng=np.random.default_rng(task.seed), epochs=hyper.epochs,
                       private=(task.x, task.y))
        logits = logits_of(model, bridge.x)
        if o.logit_clip is not None:
            logits = np.clip(logits, -o.logit_clip, o.logit_clip)
        return LocalResult(delta=logits.reshape(-1), num_examples=1, loss=loss, loss_examples=len(task.y))
