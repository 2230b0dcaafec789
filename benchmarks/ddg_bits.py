"""Bits per coordinate vs epsilon for the distributed discrete Gaussian (the README's table).

Setting of the reference (KLS21 / TFF heuristics): n = 100 clients per group, d = 2^16, clip c = 1,
noise multiplier z = 1 (central stddev z c), beta = e^-0.5, modclip_prob = 1e-4, delta = 1e-5.
Each row is computed with secfl's own stage (scale, inflated sensitivities) and accountant (RDP):
epsilon after 1 and 100 rounds without sampling, and after 100 rounds with Poisson sampling q = 0.1.
The continuous Gaussian with the same z is the last row.

    .venv/bin/python benchmarks/ddg_bits.py
"""

from __future__ import annotations

import json

from secfl.privacy import Accountant
from secfl.stages import DistributedDiscreteGaussian
from secfl.types import Bounds

N, D, DELTA = 100, 2**16, 1e-5


def main() -> None:
    acc = Accountant("rdp", "poisson")
    rows = []
    for bits in (10, 12, 14, 16, 18, 20):
        stage = DistributedDiscreteGaussian(1.0, 1.0, D, bits=bits).bind(bound_in=Bounds.UNBOUNDED, group_size=N)
        event = stage.dp_event()
        rows.append({
            "bits": bits, "scale": round(stage.scale, 1), "inflation": round(stage.l2 / stage.scale, 4),
            "eps_1_round": round(acc.epsilon_of([(event, 1)], sample_rate=1.0, delta=DELTA), 3),
            "eps_100_rounds": round(acc.epsilon_of([(event, 100)], sample_rate=1.0, delta=DELTA), 2),
            "eps_100_rounds_q0.1": round(acc.epsilon_of([(event, 100)], sample_rate=0.1, delta=DELTA), 3),
        })
    rows.append({
        "bits": "continuous", "scale": None, "inflation": 1.0,
        "eps_1_round": round(acc.epsilon(noise_multiplier=1.0, sample_rate=1.0, rounds=1, delta=DELTA), 3),
        "eps_100_rounds": round(acc.epsilon(noise_multiplier=1.0, sample_rate=1.0, rounds=100, delta=DELTA), 2),
        "eps_100_rounds_q0.1": round(acc.epsilon(noise_multiplier=1.0, sample_rate=0.1, rounds=100, delta=DELTA), 3),
    })
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
