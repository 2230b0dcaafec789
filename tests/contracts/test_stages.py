"""Every stage: decode(encode(x)) within its documented error, dtype of its output kind, bound honoured."""

import math

import dp_accounting
import numpy as np
import pytest

from secfl import registry
from secfl.stages import (BitPack, DistributedDiscreteGaussian, EwwaContribution, FedBatBits, FedBatPack, GaussianNoise,
                          L2Clip, LowBitQuantize, Quantize, SignBinarize)
from secfl.types import Bounds, Stage, Update

C = 1.0
# (stage, documented max |decode(encode(x)) - f(x)| where f is the stage's ideal map), per kind
CASES = {
    "l2clip": (L2Clip(C), 1e-6),
    "gaussian_noise": (GaussianNoise(std=0.0), 1e-7),
    "quantize": (Quantize(scale=2**12, bound=C), 1 / 2**12),
    # ring stages see [x, weight]: x of dimension 39 here; the noise (z = 1e-4) and rounding are tiny
    "ddgauss": (DistributedDiscreteGaussian(1e-4, C, 39, bits=32), 2e-3),
    "ewwa": (EwwaContribution(), 1e-6),  # [e x, e] decodes to x when summed alone
    "sign": (SignBinarize(), 1e-6),  # mean|x| * sign(x)
    "bitpack": (BitPack(0.125), 0.0),  # +-scale bits (and the weight 1) round-trip exactly
    "low_bit": (LowBitQuantize(16), 1e-3),  # 32767 levels of ||x|| ~ 3: one level is about 1e-4
    "fedbat_pack": (FedBatPack([(0, 20), (25, 35)]), 0.0),  # a FedBAT update round-trips exactly
    # +-1 (x = m / alpha already binarized) round-trips exactly; the rest within one fixed-point step
    "fedbat_bits": (FedBatBits([(0, 20), (25, 35)], scale=2**12), 1 / 2**12),
}
BIT_INPUT = {"bitpack", "fedbat_pack", "fedbat_bits"}  # stages fed +-alpha segments (and the weight 1) by their pipelines


def sample(kind, rng, size):
    """An input of ``size`` values as the stage receives it inside a pipeline."""
    if kind in BIT_INPUT:
        x = np.where(rng.random(size) < 0.5, -0.125, 0.125).astype(np.float32)
        if kind == "fedbat_bits":
            x[:35] = np.sign(x[:35])
            x[20:25] = np.clip(rng.normal(size=5), -C, C)
            x[35:] = np.clip(rng.normal(size=size - 35), -C, C)
        if kind == "fedbat_pack":
            x[25:35] *= 0.5  # a second layer with its own alpha
            x[20:25] = rng.normal(size=5)  # full-precision coordinates between the segments
            x[35:] = rng.normal(size=size - 35)
        x[-1] = 1.0
        return x
    return None


def ideal(kind, x):
    if kind == "bitpack":
        return x
    if kind == "sign":
        return np.abs(x).mean() * np.where(x >= 0, 1.0, -1.0)
    if kind == "ddgauss":
        return np.append(x[:-1] * min(1.0, C / np.linalg.norm(x[:-1])), np.round(x[-1]))
    if kind == "l2clip":
        return x * min(1.0, C / np.linalg.norm(x))
    if kind == "quantize":
        return np.clip(x, -C, C)
    return x


def test_every_registered_stage_is_covered():
    assert set(CASES) == set(registry.STAGES)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_capabilities_are_declared(kind):
    stage, _ = CASES[kind]
    bound = stage.bind(bound_in=Bounds(linf=C, l2=C), group_size=1)
    for s in (stage, bound):
        assert isinstance(s, Stage) and s.output in ("real", "ring")
        assert isinstance(s.uniform_weights, bool) and isinstance(s.packed, bool)
        assert s.placement in (None, "client", "distributed", "central")
        assert s.trust in (None, "secure_sum", "simulation") and (s.trust is None) == (s.placement is None)
        assert not s.packed or s.output == "ring"  # only ring words are packed
    if bound.output == "ring" and not bound.packed:  # what the pipeline binds the protocol to
        assert isinstance(bound.bits, int) and 1 <= bound.bits <= 64
    assert (stage.placement is not None) == (kind in {"gaussian_noise", "ddgauss"})


@pytest.mark.parametrize("kind", sorted(CASES))
def test_round_trip_within_documented_error(kind, rng):
    stage, tolerance = CASES[kind]
    stage = stage.bind(bound_in=Bounds(linf=C, l2=C), group_size=1)
    x = rng.normal(size=40).astype(np.float32) * 0.5
    x[-1] = 1.0  # the weight coordinate a ring stage sees in a pipeline
    x = sample(kind, rng, 40) if kind in BIT_INPUT else x
    encoded = stage.encode(Update(3, x, weight=2.0), rng=rng)
    assert encoded.client_id == 3 and encoded.weight == 2.0
    assert encoded.values.dtype == (np.uint32 if stage.output == "ring" else np.float32)  # 13 bits fit a uint32 word
    decoded = stage.decode(encoded.values, count=1)
    assert np.max(np.abs(decoded - ideal(kind, x.astype(np.float64)))) <= tolerance


@pytest.mark.parametrize("kind", sorted(CASES))
def test_output_within_propagated_bound(kind, rng):
    stage, _ = CASES[kind]
    bound_in = Bounds(linf=C, l2=C)
    stage = stage.bind(bound_in=bound_in, group_size=1)
    out_bound = stage.value_bound(bound_in)
    x = np.clip(rng.normal(size=40), -1, 1).astype(np.float32) * 0.1
    x = sample(kind, rng, 40) if kind in BIT_INPUT else x
    decoded = stage.decode(stage.encode(Update(0, x), rng=rng).values, count=1)
    assert np.max(np.abs(decoded)) <= out_bound.linf
    if math.isfinite(out_bound.l2):
        assert np.linalg.norm(decoded) <= out_bound.l2


@pytest.mark.parametrize("kind", sorted(CASES))
def test_dp_event_and_measurements(kind):
    stage, _ = CASES[kind]
    stage = stage.bind(bound_in=Bounds(linf=C, l2=C), group_size=1)
    assert isinstance(stage.dp_event(), dp_accounting.DpEvent)
    assert all(key.startswith(stage.name + "/") for key in stage.measurements())
