"""FedAgg: end-edge-cloud agglomerative FL by bridge-sample mutual distillation (see docs/methods/fedagg.md)."""

from secfl.methods.fedagg.method import FedAgg, FedAggOptions

__all__ = ["FedAgg", "FedAggOptions"]
