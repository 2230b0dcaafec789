"""Secure-sum primitives against their floor, and against Flower's SecAgg+ when flwr is importable.

Measured in one process run, interleaved repeat by repeat so that drift hits every variant alike:
- floor_masking: raw AES-256-CTR keystream for (k+1) masks of d uint32 words + (k+1) in-place uint32 adds.
- secfl_client_masking: ``prg.add_mask`` on a quantized uint32 vector, 1 self mask (+1) and k pairwise
  masks (half +1, half -1).
- flower_masking: Flower's own client masking step (``pseudo_rand_gen`` for 1 + k 32-byte seeds, its
  int64 ``parameters_addition``/``parameters_subtraction`` and ``parameters_mod``), if flwr imports.
- shamir_combine_100_secrets: ``shamir.combine`` of m=100 32-byte secrets from t shares and from all n.
- client_step_quantize_and_mask: Quantize.encode + masking (the whole client step) vs the masking floor
  and vs Flower's quantize + masking.
- server_round: the SecAgg+ server's every receive_* call for n = 100, d = 1e6, with 0% and 10% of the
  clients dropping after sharing keys, vs the floor of (n - 1) d adds + one keystream per mask removed.

Each timing is the median over repeats of one call (a call is looped until it lasts >= 20 ms, then
divided). Prints JSON. Add protocol-level (server) measurements as further ``bench_*`` functions.

    .venv/bin/python benchmarks/bench_secure_sum.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import cryptography
import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secfl.hazmat import prg, shamir
from secfl.protocols import SecAggPlus
from secfl.protocols import secagg_messages as m
from secfl.protocols.secagg_client import SecAggClient
from secfl.protocols.secagg_server import SecAggServer
from secfl.stages import Quantize
from secfl.types import Bounds, Update

MASKING_SIZES = [(100_000, 8), (100_000, 16), (1_000_000, 8), (1_000_000, 10), (1_000_000, 16)]
SHAMIR_SIZES = [(100, 51), (10, 6)]  # (n, t)
SHAMIR_SECRETS = 100
MOD_RANGE = 1 << 32  # Flower's default modulus_range
TARGET_RANGE = 1 << 22  # Flower's default quantization_range


def _flower():
    """Flower's masking helpers, or None when flwr is not importable."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    try:
        import flwr
        from flwr.common.secure_aggregation import ndarrays_arithmetic as arith
        from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
    except ImportError:
        return None
    return flwr.__version__, pseudo_rand_gen, arith


def _per_call(fn: Callable[[], object], min_seconds: float = 0.02) -> Callable[[], float]:
    """A sampler returning seconds per call of ``fn``, looping enough calls to last ``min_seconds``."""
    fn()  # warm-up
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    number = max(1, int(min_seconds / max(once, 1e-9)))

    def sample() -> float:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - start) / number

    return sample


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, sampling them in turn within every repeat."""
    samplers = {name: _per_call(fn) for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, sample in samplers.items():
            times[name].append(sample())
    return {name: statistics.median(ts) for name, ts in times.items()}


def floor_masking_fn(d: int, k: int, keys: list[bytes]) -> Callable[[], None]:
    """Raw floor: one AES-CTR keystream of d uint32 per key into a reused buffer, added in place."""
    acc = np.zeros(d, dtype=np.uint32)
    zeros = bytes(4 * d)
    buf = np.empty(4 * d + 16, dtype=np.uint8)
    mask = buf[:4 * d].view("<u4")

    def run() -> None:
        for key in keys[:k + 1]:
            Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update_into(zeros, buf)
            np.add(acc, mask, out=acc)

    return run


def secfl_client_masking_fn(d: int, k: int, keys: list[bytes], quantized: np.ndarray) -> Callable[[], None]:
    """secfl's client: self mask (+1) and k pairwise masks (first half +1, second half -1)."""
    acc = quantized.copy()

    def run() -> None:
        prg.add_mask(acc, keys[0], sign=+1)
        for i, key in enumerate(keys[1:k + 1]):
            prg.add_mask(acc, key, sign=+1 if i < k // 2 else -1)

    return run


def flower_masking_fn(d: int, k: int, keys: list[bytes], flower) -> Callable[[], None]:
    """Flower's client masking step, as in ``secaggplus_mod._collect_masked_vectors`` after quantize."""
    _, pseudo_rand_gen, arith = flower
    quantized = [np.random.default_rng(0).integers(0, TARGET_RANGE, d).astype(np.int32)]
    params = arith.factor_combine(TARGET_RANGE, quantized)
    dims = [a.shape for a in params]

    def run() -> None:
        masked = arith.parameters_addition(params, pseudo_rand_gen(keys[0], MOD_RANGE, dims))
        for i, key in enumerate(keys[1:k + 1]):
            mask = pseudo_rand_gen(key, MOD_RANGE, dims)
            if i < k // 2:
                masked = arith.parameters_addition(masked, mask)
            else:
                masked = arith.parameters_subtraction(masked, mask)
        arith.parameters_mod(masked, MOD_RANGE)

    return run


def bench_masking(d: int, k: int, repeats: int, flower) -> dict:
    """Client masking at (d, k): floor, secfl and (if installed) Flower, with ratios."""
    keys = [os.urandom(32) for _ in range(k + 1)]
    quantized = np.random.default_rng(0).integers(0, TARGET_RANGE, d).astype(np.uint32)
    fns = {"floor_masking": floor_masking_fn(d, k, keys),
           "secfl_client_masking": secfl_client_masking_fn(d, k, keys, quantized)}
    if flower is not None:
        fns["flower_masking"] = flower_masking_fn(d, k, keys, flower)
    med = interleaved_medians(fns, repeats)
    row = {"d": d, "k": k, **{f"{name}_s": s for name, s in med.items()},
           "ratio_secfl_to_floor": med["secfl_client_masking"] / med["floor_masking"]}
    if flower is not None:
        row["ratio_flower_to_secfl"] = med["flower_masking"] / med["secfl_client_masking"]
    return row


def bench_shamir_combine(n: int, t: int, repeats: int) -> dict:
    """combine of SHAMIR_SECRETS 32-byte secrets: from exactly t shares, and from all n (verified)."""
    secrets = np.stack([shamir.encode_secret(os.urandom(32)) for _ in range(SHAMIR_SECRETS)])
    xs = list(range(1, n + 1))
    shares = shamir.split(secrets, xs=xs, threshold=t)
    assert np.array_equal(shamir.combine(xs, shares, threshold=t), secrets)
    med = interleaved_medians({
        "split": lambda: shamir.split(secrets, xs=xs, threshold=t),
        "combine_t_shares": lambda: shamir.combine(xs[:t], shares[:t], threshold=t),
        "combine_all_n_shares": lambda: shamir.combine(xs, shares, threshold=t),
    }, repeats)
    return {"m": SHAMIR_SECRETS, "n": n, "t": t, **{f"{name}_s": s for name, s in med.items()}}


def secfl_client_step_fn(d: int, k: int, keys: list[bytes], values: np.ndarray) -> Callable[[], None]:
    """secfl's whole client step: clip + stochastic-round quantize into Z_2^b, then 1 + k masks."""
    stage = Quantize(scale=TARGET_RANGE / 16, bound=8.0).bind(bound_in=Bounds.UNBOUNDED, group_size=100)
    update, rng = Update(0, values), np.random.default_rng(0)

    def run() -> None:
        acc = stage.encode(update, rng=rng).values
        prg.add_mask(acc, keys[0])
        for i, key in enumerate(keys[1:k + 1]):
            prg.add_mask(acc, key, sign=+1 if i < k // 2 else -1)

    return run


def flower_client_step_fn(d: int, k: int, keys: list[bytes], values: np.ndarray, flower) -> Callable[[], None]:
    """Flower's whole client step: its stochastic quantize (clipping_range 8, 2^22) then its masking."""
    from flwr.common.secure_aggregation.quantization import quantize

    _, pseudo_rand_gen, arith = flower
    dims = [a.shape for a in arith.factor_combine(TARGET_RANGE, quantize([values], 8.0, TARGET_RANGE))]

    def run() -> None:
        params = arith.factor_combine(TARGET_RANGE, quantize([values], 8.0, TARGET_RANGE))
        masked = arith.parameters_addition(params, pseudo_rand_gen(keys[0], MOD_RANGE, dims))
        for i, key in enumerate(keys[1:k + 1]):
            op = arith.parameters_addition if i < k // 2 else arith.parameters_subtraction
            masked = op(masked, pseudo_rand_gen(key, MOD_RANGE, dims))
        arith.parameters_mod(masked, MOD_RANGE)

    return run


def bench_client_step(d: int, k: int, repeats: int, flower) -> dict:
    """Quantize + mask, end to end, against the masking floor and (if installed) Flower."""
    keys = [os.urandom(32) for _ in range(k + 1)]
    values = np.random.default_rng(1).normal(size=d).astype(np.float32)
    fns = {"floor_masking": floor_masking_fn(d, k, keys), "secfl_client_step": secfl_client_step_fn(d, k, keys, values)}
    if flower is not None:
        fns["flower_client_step"] = flower_client_step_fn(d, k, keys, values, flower)
    med = interleaved_medians(fns, repeats)
    row = {"d": d, "k": k, **{f"{name}_s": s for name, s in med.items()},
           "ratio_secfl_to_floor": med["secfl_client_step"] / med["floor_masking"]}
    if flower is not None:
        row["ratio_flower_to_secfl"] = med["flower_client_step"] / med["secfl_client_step"]
        row["ratio_flower_to_floor"] = med["flower_client_step"] / med["floor_masking"]
    return row


def bench_server(n: int, d: int, drop_fraction: float, repeats: int) -> dict:
    """The SecAgg+ server's whole round (every receive_* call) for n clients and d words, with a
    fraction of clients dropping after sharing keys (their masks must be rebuilt), against the floor:
    the (n - 1) d additions plus one AES-CTR mask per self mask and per pairwise mask to remove."""
    protocol = SecAggPlus()
    params = protocol.params(n)
    rng = np.random.default_rng(0)
    inputs = {c: rng.integers(0, 2**20, size=d).astype(np.uint32) for c in range(n)}
    dropped = set(range(0, n, int(1 / drop_fraction))) if drop_fraction else set()
    server_times, masks_removed = [], 0
    for _ in range(repeats):
        header = m.Header(os.urandom(16), 1, 0, m.SERVER, m.SERVER)
        clients = {c: SecAggClient(c, header=header, params=params, values=inputs[c], signing_key=protocol.identity(c),
                                   directory=protocol.directory) for c in range(n)}
        server = SecAggServer(header=header, members=list(range(n)), params=params, directory=protocol.directory,
                              length=d, dtype=np.uint32)
        spent = 0.0
        messages = {c: client.advertise_keys() for c, client in clients.items()}
        steps = [(server.receive_advertise, None), (server.receive_shares, SecAggClient.share_keys),
                 (server.receive_masked, SecAggClient.masked_input),
                 (server.receive_consistency, SecAggClient.consistency_check),
                 (server.receive_unmask, SecAggClient.unmask)]
        for index, (server_step, _) in enumerate(steps):
            start = time.perf_counter()
            replies = server_step(messages)
            spent += time.perf_counter() - start
            if index + 1 < len(steps):
                client_step = steps[index + 1][1]
                skip = dropped if client_step is SecAggClient.masked_input or index >= 2 else set()
                messages = {c: client_step(clients[c], r) for c, r in replies.items() if c not in skip}
        assert np.array_equal(replies, np.sum([inputs[c] for c in range(n) if c not in dropped], axis=0, dtype=np.uint32))
        server_times.append(spent)
        masks_removed = (n - len(dropped)) + sum(len(server.shared_with[v] & set(server.survivors)) for v in dropped)
    keys = [os.urandom(32) for _ in range(masks_removed)]
    vectors = np.stack(list(inputs.values()))

    def floor() -> None:
        total = np.sum(vectors, axis=0, dtype=np.uint32)
        for key in keys:
            prg.add_mask(total, key, sign=-1)

    floor_s = interleaved_medians({"floor": floor}, repeats)["floor"]
    server_s = statistics.median(server_times)
    return {"n": n, "d": d, "dropped": len(dropped), "neighbours": params.neighbours, "threshold": params.threshold,
            "masks_rebuilt": masks_removed, "secfl_server_s": server_s, "floor_s": floor_s,
            "ratio_secfl_to_floor": server_s / floor_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-server", action="store_true", help="skip the n=100, d=1e6 server round")
    args = parser.parse_args()
    flower = _flower()
    result = {
        "python": platform.python_version(), "numpy": np.__version__, "cryptography": cryptography.__version__,
        "cpus": os.cpu_count(), "repeats": args.repeats,
        "flower": flower[0] if flower is not None else "not installed",
        "masking_uint32": [bench_masking(d, k, args.repeats, flower) for d, k in MASKING_SIZES],
        "shamir_combine_100_secrets": [bench_shamir_combine(n, t, args.repeats) for n, t in SHAMIR_SIZES],
        "client_step_quantize_and_mask": [bench_client_step(d, k, args.repeats, flower) for d, k in [(1_000_000, 10)]],
    }
    if not args.skip_server:
        result["server_round"] = [bench_server(100, 1_000_000, drop, min(args.repeats, 3)) for drop in (0.0, 0.1)]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
