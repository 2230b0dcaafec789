"""FedAgg's round on the engine: bridges down, children's logits up through the secure sum, distillation up
the tree.

One round (the tree is fixed: grouping ``edges``; every device takes part in every round):

1. ``before_round``: each edge draws this round's common bridge set from its pool and broadcasts it with its
   own logits on it (public downlink); the cloud draws its bridge set for the edge link.
2. Each device (the trainer, ``DeviceTrainer``) distils from its edge's logits and its private data (the leaf
   loss), then sends its logits on the edge's bridge set: the client vector, through the scenario's stages and
   secure sum, grouped by edge (or by bucket inside an edge).
3. ``server_delta``: each edge combines the group means of its children (the mean, or a robust rule over
   buckets) and distils from them (the non-leaf loss). Then every edge distils from the cloud's logits on the
   cloud's bridge set (child first), sends its own logits on it, and the cloud distils from the edges' mean
   (or robust rule): the cloud's change is the engine's server step (plain SGD, lr 1).

Departures from the paper's sequential BSBODP: siblings distil in parallel from one broadcast (a secure sum
needs every child's logits on one common set at once), and the cloud learns from all edges at once.
The edges' logits reach the cloud in the clear: an edge model is a function of secure sums and bridge data
only, so they add nothing about a single device that the edges' inputs did not already reveal to the edge.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from secfl.attacks.registry import build_attack
from secfl.fl.params import flatten
from secfl.hooks import RoundContext, RoundHook
from secfl.methods.fedagg.autoencoder import AutoEncoder, train_autoencoder
from secfl.methods.fedagg.bridges import Codes, Pool, private_codes, synthetic_sample
from secfl.methods.fedagg.combine import combine
from secfl.methods.fedagg.distill import Losses, distill, logits_of
from secfl.methods.fedagg.tree import Tree

__all__ = ["FedAggRounds", "LATENT"]

LATENT = ("latent", "latent_dp")
_FLOAT = 4  # bytes per float on a link


class FedAggRounds(RoundHook):
    """The server side of FedAgg (edges and cloud) as a round hook; ``tree`` is shared with the trainer."""

    def __init__(self, options: Any, tree: Tree, *, seed: int) -> None:
        self.options, self.tree, self.seed = options, tree, seed
        self.autoencoder: AutoEncoder | None = None
        self.codes: list[Codes] | None = None
        self.pools: list[Pool] = []
        self.cloud_pool: Pool | None = None
        self.public_codes: np.ndarray | None = None
        self.bridges: list[Pool] = []
        self.cloud_bridge: Pool | None = None
        self.link: dict[str, float] = {}
        self.example_epsilon: float | None = None  # latent_dp: the privacy of one released example
        self.edge_attack = build_attack(options.edge_attack, where="fedagg.edge_attack") \
            if options.poisoned_edges else None
        chosen = np.random.default_rng([seed, 14]).choice(options.edges, size=options.poisoned_edges, replace=False)
        self.poisoned_edges = frozenset(int(e) for e in chosen)

    # -- set-up, once per run (rebuilt from the checkpoint after a resume)
    def _prepare(self, ctx: RoundContext) -> None:
        o, data = self.options, ctx.data
        if self.autoencoder is None and o.bridge != "public":
            self.autoencoder = train_autoencoder(data.x_public, seed=self.seed, epochs=o.autoencoder_epochs)
        if o.bridge == "synthetic" and self.public_codes is None:
            self.public_codes = self.autoencoder.encode(data.x_public)
        if o.bridge in LATENT and self.codes is None:
            ctx.release(f"fedagg/{o.bridge}")  # recorded (and charged) before any code leaves a device
            dp = (o.code_clip, o.code_noise, o.label_epsilon) if o.bridge == "latent_dp" else None
            self.codes = []
            for d in range(len(self.tree.device_models)):
                x, y = data.x_train[ctx.shards[d]], data.y_train[ctx.shards[d]]
                for hook in ctx.hooks:  # a Byzantine device uploads codes of its poisoned data (mislabeled codes)
                    x, y = hook.client_data(ctx, d, x, y)
                self.codes.append(private_codes(self.autoencoder, x, y, count=o.codes_per_device,
                                                num_classes=data.num_classes, dp=dp,
                                                rng=np.random.default_rng([self.seed, 15, d])))
            self.link["link_codes_once"] = float(np.mean([c.codes[0].size * _FLOAT + 8 for c in self.codes]) *
                                                 np.mean([len(c.y) for c in self.codes]))
        if not self.pools:
            if o.bridge in LATENT:
                decoded = [Pool(self.autoencoder.decode(c.codes), c.y) for c in self.codes]
                self.pools = [_union([decoded[d] for d in self.tree.children(e)]) for e in range(self.tree.edges)]
                self.cloud_pool = _union(self.pools)
            else:
                public = Pool(data.x_public, data.y_public.astype(np.int64))
                self.pools, self.cloud_pool = [public] * self.tree.edges, public

    def _draw(self, pool: Pool, rng: np.random.Generator, y_public: np.ndarray | None) -> Pool:
        if self.options.bridge == "synthetic":
            return synthetic_sample(self.autoencoder, self.public_codes, y_public, self.options.bridge_size, rng)
        return pool.sample(self.options.bridge_size, rng)

    def _losses(self, alpha: float) -> Losses:
        o = self.options
        return Losses(alpha=alpha, temperature=o.temperature, lr=o.distill_lr, momentum=o.distill_momentum,
                      batch_size=o.distill_batch_size, labels=o.bridge_labels)

    def _combine(self, vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
        o = self.options
        if o.logit_clip is not None:  # the parent bounds every input it receives
            vectors = np.clip(vectors, -o.logit_clip, o.logit_clip)
        return combine(vectors, weights, rule=o.rule, trim=o.trim, classes=self.classes)

    # -- the round
    def before_round(self, ctx: RoundContext) -> None:
        self.link = {}  # this round's bytes per link (the one-time code upload in the round it happens)
        self._prepare(ctx)
        self.classes = ctx.data.num_classes
        rng = np.random.default_rng([self.seed, 13, ctx.round])
        self.bridges = [self._draw(pool, rng, ctx.data.y_public) for pool in self.pools]
        self.cloud_bridge = self._draw(self.cloud_pool, rng, ctx.data.y_public)
        teachers = [logits_of(model, bridge.x) for model, bridge in zip(self.tree.edge_models, self.bridges, strict=True)]
        ctx.public["fedagg"] = {"bridges": self.bridges, "teachers": teachers}
        ctx.cohort = self.tree.edge_of  # each edge's devices send logits on that edge's own bridge set
        m, inputs = self.options.bridge_size, self._input_floats(ctx)
        self.link["link_edge_device_down"] = float(_FLOAT * m * (self.classes + inputs))

    def _input_floats(self, ctx: RoundContext) -> int:
        """Floats per bridge input on a downlink: its code (latent, synthetic) or the raw example (public)."""
        if self.options.bridge == "public":
            return int(np.prod(ctx.data.input_shape))
        return int(np.prod(self.autoencoder.encoder(torch.zeros(1, *ctx.data.input_shape)).shape[1:]))

    def server_delta(self, ctx: RoundContext, delta: np.ndarray) -> np.ndarray:
        out, tree, classes = ctx.output, self.tree, self.classes
        by_edge: dict[int, list[int]] = {}
        for index, alive in enumerate(out.result.survivors):
            if alive:
                by_edge.setdefault(tree.edge_of(alive[0]), []).append(index)
        rng = np.random.default_rng([self.seed, 16, ctx.round])
        for edge, groups in sorted(by_edge.items()):  # devices -> edge
            children = self._combine(out.group_means[groups], out.group_weights[groups])
            distill(tree.edge_models[edge], self.bridges[edge], children.reshape(-1, classes),
                    self._losses(self.options.alpha_nonleaf), rng=rng, epochs=self.options.distill_epochs)
        cloud = copy.deepcopy(ctx.model)  # edge <-> cloud, child first
        teacher = logits_of(cloud, self.cloud_bridge.x)
        sent = []
        for edge_model in tree.edge_models:
            distill(edge_model, self.cloud_bridge, teacher, self._losses(self.options.alpha_nonleaf), rng=rng,
                    epochs=self.options.distill_epochs)
            sent.append(logits_of(edge_model, self.cloud_bridge.x).reshape(-1))
        sent = self._poison_edges(sent, rng)
        target = self._combine(np.stack(sent), np.ones(len(sent))).reshape(-1, classes)
        distill(cloud, self.cloud_bridge, target, self._losses(self.options.alpha_nonleaf), rng=rng,
                epochs=self.options.distill_epochs)
        m, inputs = len(self.cloud_bridge.y), self._input_floats(ctx)
        self.link.update({"link_edge_cloud_up": float(_FLOAT * m * classes),
                          "link_cloud_edge_down": float(_FLOAT * m * (classes + inputs))})
        return (flatten(cloud) - flatten(ctx.model)).astype(np.float64)

    def _poison_edges(self, sent: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """Poisoned edges send forged logits, crafted (omniscient) from the honest edges' logits."""
        if not self.poisoned_edges:
            return sent
        honest = np.stack([v for e, v in enumerate(sent) if e not in self.poisoned_edges]).astype(np.float64)
        forged = iter(self.edge_attack(honest, num_byzantine=len(self.poisoned_edges), rng=rng,
                                       aggregator=lambda v: v.mean(axis=0)))
        return [next(forged).astype(np.float32) if e in self.poisoned_edges else v for e, v in enumerate(sent)]

    def metrics(self, ctx: RoundContext, row: dict[str, Any]) -> None:
        row.update(self.tree.accuracies(ctx.data.x_test, ctx.data.y_test))
        k = max(len(ctx.sampled), 1)
        row["link_device_edge_up"] = row["bytes_up"] / k  # the logits, as the secure sum counted them
        row.update(self.link)
        if "link_codes_once" in self.link:  # the one-time code upload happened in this round
            row["bytes_up"] += self.link["link_codes_once"] * k
        if self.example_epsilon is not None:
            row["bridge_epsilon_example"] = self.example_epsilon
        # devices download their edge's bridge set and logits (never the cloud model), and the protocol's messages
        protocol = sum(v for key, v in ctx.output.measurements.items() if key.endswith("/bytes_down"))
        row["bytes_down"] = self.link["link_edge_device_down"] * k + float(protocol)

    # -- checkpoint
    def state_dict(self) -> Mapping[str, Any]:
        state: dict[str, Any] = {"tree": self.tree.state_dict()}
        if self.autoencoder is not None:
            state["autoencoder"] = self.autoencoder.state_dict()
        if self.codes is not None:
            state["codes"] = [torch.from_numpy(c.codes.copy()) for c in self.codes]
            state["labels"] = [torch.from_numpy(c.y.copy()) for c in self.codes]
            if all(c.index is not None for c in self.codes):  # the auditor's ground truth, kept across a resume
                state["index"] = [torch.from_numpy(np.asarray(c.index, dtype=np.int64)) for c in self.codes]
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.tree.load_state_dict(state["tree"])
        if "autoencoder" in state:
            shape = state["autoencoder"]["encoder.0.weight"].shape
            self.autoencoder = AutoEncoder(int(shape[1]))
            self.autoencoder.load_state_dict(state["autoencoder"])
            self.autoencoder.eval()
        if "codes" in state:
            index = [i.numpy() for i in state["index"]] if "index" in state else [None] * len(state["codes"])
            self.codes = [Codes(c.numpy(), y.numpy(), i)
                          for c, y, i in zip(state["codes"], state["labels"], index, strict=True)]


def _union(pools: list[Pool]) -> Pool:
    return Pool(np.concatenate([p.x for p in pools]), np.concatenate([p.y for p in pools]))
