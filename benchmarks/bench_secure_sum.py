"""Secure-sum primitives against their floor, and against Flower's SecAgg+ when flwr is importable.

Measured in one process run, interleaved repeat by repeat so that drift hits every variant alike:
- floor_masking: raw AES-256-CTR keystream for (k+1) masks of d uint32 words + (k+1) in-place uint32 adds.
- secfl_client_masking: ``prg.add_mask`` on a quantized uint32 vector, 1 self mask (+1) and k pairwise
  masks (half +1, half -1).
- flower_masking: Flower's own client masking step (``pseudo_rand_gen`` for 1 + k 32-byte seeds, its
  int64 ``parameters_addition``/``parameters_subtraction`` and ``parameters_mod``), if flwr imports.
- shamir_combine_100_secrets: ``shamir.combine`` of m=100 32-byte secrets from t shares and from all n.
- client_step_quantize_and_mask: Quantize.encode + masking (the whole client step) vs the client-step
  floor (one fixed-point pass float32 -> fresh uint32 words, then the masking floor into them), vs that
  floor plus the d 32-bit uniforms stochastic rounding must draw from a numpy Generator, vs the masking
  floor alone, and vs Flower's quantize + masking.
- server_round: the SecAgg+ server's every receive_* call for n = 100, d = 1e6, with 0% and 10% of the
  clients dropping after sharing keys, vs the floor of (n - 1) d adds + one keystream per mask removed.
- scaling: one SecAgg+ group (derived k, t) of n clients at d words, run by ``secagg_round.run_instance``
  in a fresh child process per (n, d) (so the peak RSS is that point's own). Per stage: client CPU time
  (every client method wrapped, summed, divided by n; and the slowest client), server CPU time inside
  ``receive_*``, bytes up and down per client, peak RSS after the stage. Progress lines (elapsed, stage
  and round estimates) go to stderr. Then a least-squares cost model over the measured points.

Each timing is the median over repeats of one call (a call is looped until it lasts >= 20 ms, then
divided). Prints JSON. Add protocol-level (server) measurements as further ``bench_*`` functions.

    .venv/bin/python benchmarks/bench_secure_sum.py [--repeats 5]
    .venv/bin/python benchmarks/bench_secure_sum.py --scaling --sizes 100,1000,10000 --dims 1000,100000
    .venv/bin/python benchmarks/bench_secure_sum.py --quick            # a fast smoke run of every part
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager

import cryptography
import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secfl.hazmat import prg, shamir
from secfl.protocols import SecAggPlus, secagg_round
from secfl.protocols.secagg_client import STAGES
from secfl.protocols.secagg_instance import Instance
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


STEP_SCALE, STEP_BOUND = TARGET_RANGE / 16, 8.0  # the client step's Quantize: 2^18 steps per unit, |v| <= 8


def floor_client_step_fn(d: int, k: int, keys: list[bytes], values: np.ndarray,
                         uniforms: bool = False) -> Callable[[], None]:
    """Client-step floor: one fixed-point pass (float32 multiply, truncated straight into a fresh uint32
    vector: no clamp, no rounding), then per key one AES-CTR keystream into a reused buffer added in place.
    With ``uniforms``: also the d 32-bit uniforms stochastic rounding needs, drawn from a numpy Generator
    (``random_raw``, 64 bits a draw, 2^17 draws at a time so no large buffer is faulted in) and not used."""
    zeros = bytes(4 * d)
    buf = np.empty(4 * d + 16, dtype=np.uint8)
    mask = buf[:4 * d].view("<u4")
    scale, draw = np.float32(STEP_SCALE), np.random.default_rng(0).bit_generator.random_raw

    def run() -> None:
        acc = np.empty(d, dtype=np.uint32)
        np.multiply(values, scale, out=acc.view(np.int32), casting="unsafe")
        if uniforms:
            for start in range(0, (d + 1) // 2, 1 << 17):
                draw(min(1 << 17, (d + 1) // 2 - start))
        for key in keys[:k + 1]:
            Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update_into(zeros, buf)
            np.add(acc, mask, out=acc)

    return run


def secfl_client_step_fn(d: int, k: int, keys: list[bytes], values: np.ndarray) -> Callable[[], None]:
    """secfl's whole client step: clip + stochastic-round quantize into Z_2^b, then 1 + k masks."""
    stage = Quantize(scale=STEP_SCALE, bound=STEP_BOUND).bind(bound_in=Bounds.UNBOUNDED, group_size=100)
    update, rng = Update(0, values), np.random.default_rng(0)

    def run() -> None:
        acc = stage.encode(update, rng=rng).values
        prg.add_mask(acc, keys[0])
        for i, key in enumerate(keys[1:k + 1]):
            prg.add_mask(acc, key, sign=+1 if i < k // 2 else -1)

    return run


def secfl_quantize_fn(values: np.ndarray) -> Callable[[], None]:
    """secfl's quantize alone (the part of the client step above the masking)."""
    stage = Quantize(scale=STEP_SCALE, bound=STEP_BOUND).bind(bound_in=Bounds.UNBOUNDED, group_size=100)
    update, rng = Update(0, values), np.random.default_rng(0)
    return lambda: stage.encode(update, rng=rng)


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


def cpu_medians(fns: dict[str, Callable[[], object]], repeats: int, min_seconds: float = 0.02) -> dict[str, float]:
    """As ``interleaved_medians`` but in this process's CPU seconds (``time.process_time``): on a shared
    machine, time spent descheduled is left out (cache and memory-bandwidth contention is not)."""
    numbers = {}
    for name, fn in fns.items():
        fn()
        start = time.process_time()
        fn()
        numbers[name] = max(1, int(min_seconds / max(time.process_time() - start, 1e-9)))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.process_time()
            for _ in range(numbers[name]):
                fn()
            times[name].append((time.process_time() - start) / numbers[name])
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_client_step(d: int, k: int, repeats: int, flower) -> dict:
    """Quantize + mask, end to end, against the client-step floors and (if installed) Flower.

    Wall-clock medians (``*_s``) and CPU-time medians (``cpu`` block, measured after them) in one run."""
    keys = [os.urandom(32) for _ in range(k + 1)]
    values = np.random.default_rng(1).normal(size=d).astype(np.float32)
    fns = {"floor_client_step": floor_client_step_fn(d, k, keys, values),
           "floor_client_step_with_uniforms": floor_client_step_fn(d, k, keys, values, uniforms=True),
           "floor_masking": floor_masking_fn(d, k, keys),
           "secfl_client_step": secfl_client_step_fn(d, k, keys, values),
           "secfl_quantize": secfl_quantize_fn(values)}
    if flower is not None:
        fns["flower_client_step"] = flower_client_step_fn(d, k, keys, values, flower)

    def ratios(med: dict[str, float]) -> dict[str, float]:
        step = med["secfl_client_step"]
        out = {"ratio_secfl_to_floor": step / med["floor_client_step"],
               "ratio_secfl_to_floor_with_uniforms": step / med["floor_client_step_with_uniforms"],
               "ratio_secfl_to_masking_floor": step / med["floor_masking"]}
        if flower is not None:
            out["ratio_flower_to_secfl"] = med["flower_client_step"] / step
            out["ratio_flower_to_floor"] = med["flower_client_step"] / med["floor_client_step"]
        return out

    med = interleaved_medians(fns, repeats)
    cpu = cpu_medians(fns, repeats)
    return {"d": d, "k": k, **{f"{name}_s": s for name, s in med.items()}, **ratios(med),
            "cpu": {**{f"{name}_s": s for name, s in cpu.items()}, **ratios(cpu)}}


def _maxrss_mb() -> float:
    """This process's peak resident set size so far, in MB (Linux reports ru_maxrss in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StageClock:
    """Times every client method and every server ``receive_*`` of one instance, per stage, and counts bytes.

    Client and server times are CPU seconds (``time.process_time``: what the party itself spends, less
    sensitive than wall time to other work on a shared machine); wall seconds are kept beside them.
    Bytes are counted by ``run_instance``'s ``tamper`` hook, which returns every message untouched.
    Down bytes are booked under the stage whose client method consumes them.
    """

    def __init__(self, n: int, label: str = "", prior: dict[str, float] | None = None, every: float = 5.0,
                 quiet: bool = True) -> None:
        self.n, self.label, self.prior, self.every, self.quiet = n, label, prior or {}, every, quiet
        zero = dict.fromkeys(STAGES, 0.0)
        self.client_cpu, self.client_wall, self.client_max = dict(zero), dict(zero), dict(zero)
        self.server_cpu, self.server_wall = dict(zero), dict(zero)
        self.up, self.down, self.calls = dict(zero), dict(zero), dict.fromkeys(STAGES, 0)
        self.stage_wall, self.rss_mb = dict(zero), dict(zero)
        self.start = self.last_print = time.perf_counter()
        self.stage_start, self.previous = self.start, 0.0

    def log(self, text: str) -> None:
        if not self.quiet:
            print(f"[{self.label} +{time.perf_counter() - self.start:7.1f} s] {text}", file=sys.stderr, flush=True)

    def client_call(self, stage: str, method: Callable) -> Callable:
        def timed(client, *args):
            wall, cpu = time.perf_counter(), time.process_time()
            out = method(client, *args)
            spent = time.process_time() - cpu
            now = time.perf_counter()
            self.client_cpu[stage] += spent
            self.client_wall[stage] += now - wall
            self.client_max[stage] = max(self.client_max[stage], spent)
            self.calls[stage] += 1
            if now - self.last_print >= self.every:
                self.last_print = now
                self._report(stage, now)
            return out
        return timed

    def server_call(self, stage: str, method: Callable) -> Callable:
        def timed(server, *args):
            self.log(f"{stage}: server receive ({self.calls[stage]} client messages)")
            wall, cpu = time.perf_counter(), time.process_time()
            out = method(server, *args)
            self.server_cpu[stage] += time.process_time() - cpu
            self.server_wall[stage] += time.perf_counter() - wall
            return out
        return timed

    def _report(self, stage: str, now: float) -> None:
        done = self.calls[stage]
        rate = (now - self.stage_start) / max(done, 1)
        stage_left = (self.n - done) * rate
        later = STAGES[STAGES.index(stage) + 1:]
        if self.prior:
            round_left = stage_left + self.prior.get(f"server/{stage}", 0.0) * self.n + sum(
                self.prior.get(s, 0.0) * self.n for s in later) + sum(self.prior.get(f"server/{s}", 0.0) * self.n
                                                                    for s in later)
            estimate = f"round ETA ~{round_left:.0f} s (scaled from the previous point)"
        else:
            estimate = "round ETA n/a (no smaller point at this d yet)"
        self.log(f"{stage}: {done}/{self.n} clients, {rate * 1e3:.2f} ms/client, "
                 f"stage ETA {stage_left:.0f} s, {estimate}")

    def progress(self, stage: str, seconds: float) -> None:
        """``run_instance``'s progress hook: (stage, seconds since the round started)."""
        self.stage_wall[stage] = seconds - self.previous
        self.previous = seconds
        self.rss_mb[stage] = _maxrss_mb()
        self.stage_start = time.perf_counter()
        self.log(f"{stage} done in {self.stage_wall[stage]:.1f} s: clients {self.client_cpu[stage]:.1f} s CPU, "
                 f"server {self.server_cpu[stage]:.2f} s CPU, peak RSS {self.rss_mb[stage]:.0f} MB")

    def tamper(self, stage: str, direction: str, messages: dict) -> dict:
        size = float(sum(len(v) for v in messages.values()))
        if direction == "up":
            self.up[stage] += size
        elif STAGES.index(stage) + 1 < len(STAGES):
            self.down[STAGES[STAGES.index(stage) + 1]] += size
        return messages

    def instrument(self, clients: dict, server) -> None:
        """Wrap the methods ``run_instance`` calls on the objects themselves (stage 0)."""
        timed = self.client_call(STAGES[0], type(next(iter(clients.values()))).advertise_keys)
        for client in clients.values():
            client.advertise_keys = lambda client=client: timed(client)
        receive = self.server_call(STAGES[0], type(server).receive_advertise)
        server.receive_advertise = lambda messages: receive(server, messages)


@contextmanager
def timed_steps(clock: StageClock):
    """Route ``run_instance``'s stage functions (stages 1-5, looked up in ``secagg_round.STEPS`` at each
    call) through the clock, for the duration of the block; the module itself is left unchanged."""
    original = secagg_round.STEPS
    secagg_round.STEPS = tuple((stage, clock.client_call(stage, client), clock.server_call(stage, server))
                               for stage, client, server in original)
    try:
        yield
    finally:
        secagg_round.STEPS = original


def run_timed(protocol: SecAggPlus, instance: Instance, values, d: int, clock: StageClock, dropped_by=None):
    """Build the clients and server of ``instance`` and run it under ``clock``; (sum, server, init times)."""
    cpu = time.process_time()
    clients = protocol.clients(instance, values)
    client_init = time.process_time() - cpu
    cpu = time.process_time()
    server = protocol.server(instance, length=d, dtype=np.uint32)
    server_init = time.process_time() - cpu
    clock.instrument(clients, server)
    clock.start = clock.last_print = clock.stage_start = time.perf_counter()
    with timed_steps(clock):
        total, _ = secagg_round.run_instance(clients, server, dropped_by=dropped_by or (lambda stage: set()),
                                             tamper=clock.tamper, progress=clock.progress)
    return total, server, client_init, server_init


def bench_server(n: int, d: int, drop_fraction: float, repeats: int) -> dict:
    """The SecAgg+ server's whole round (every receive_* call) for n clients and d words, with a
    fraction of clients dropping after sharing keys (their masks must be rebuilt), against the floor:
    the (n - 1) d additions plus one AES-CTR mask per self mask and per pairwise mask to remove."""
    protocol = SecAggPlus()
    params = protocol.params(n)
    rng = np.random.default_rng(0)
    inputs = {c: rng.integers(0, 2**20, size=d).astype(np.uint32) for c in range(n)}
    dropped = set(range(0, n, int(1 / drop_fraction))) if drop_fraction else set()
    silent_from = STAGES.index("masked_input")

    def dropped_by(stage: str) -> set[int]:
        return dropped if STAGES.index(stage) >= silent_from else set()

    server_times, masks_removed = [], 0
    for repeat in range(repeats):  # a new round each time: a client's record refuses to send an input twice
        instance = Instance(os.urandom(16), repeat + 1, 0, tuple(range(n)))
        clock = StageClock(n)
        total, server, _, _ = run_timed(protocol, instance, inputs, d, clock, dropped_by)
        assert np.array_equal(total, np.sum([inputs[c] for c in range(n) if c not in dropped], axis=0, dtype=np.uint32))
        server_times.append(sum(clock.server_wall.values()))
        survivors = set(server.survivors)
        masks_removed = len(survivors) + sum(1 for v in dropped for u in survivors if v in server.masked[u][1])
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


# ----------------------------------------------------------------------------------------------- scaling


def scaling_point(n: int, d: int, prior: dict[str, float] | None, quiet: bool = False) -> dict:
    """One SecAgg+ group of n clients (ids 0..n-1, derived k and t, no dropouts) at d uint32 words.

    Each client's input is the constant vector (id mod 2^16), produced when the client masks it (a
    callable input: the simulation does not hold n input vectors at once), so the sum is checked exactly.
    """
    rss_start = _maxrss_mb()
    protocol = SecAggPlus()
    params = protocol.params(n)
    label = f"scaling n={n} d={d} k={params.neighbours}"
    clock = StageClock(n, label, prior, quiet=quiet)
    clock.log(f"registering {n} long-term identities")
    cpu = time.process_time()
    for c in range(n):
        protocol.identity(c)
    identities_s = time.process_time() - cpu
    values = {c: (lambda _n, c=c: np.full(d, c & 0xFFFF, dtype=np.uint32)) for c in range(n)}
    instance = Instance(os.urandom(16), 1, 0, tuple(range(n)))
    clock.log("building clients and server")
    wall = time.perf_counter()
    total, server, client_init, server_init = run_timed(protocol, instance, values, d, clock)
    wall = time.perf_counter() - wall
    expected = np.uint32(sum(c & 0xFFFF for c in range(n)) % 2**32)
    stages = {s: {"client_cpu_per_client_s": clock.client_cpu[s] / n, "client_max_s": clock.client_max[s],
                  "client_wall_per_client_s": clock.client_wall[s] / n, "server_cpu_s": clock.server_cpu[s],
                  "server_wall_s": clock.server_wall[s], "stage_wall_s": clock.stage_wall[s],
                  "up_bytes_per_client": clock.up[s] / n, "down_bytes_per_client": clock.down[s] / n,
                  "peak_rss_mb": clock.rss_mb[s]} for s in STAGES}
    return {
        "n": n, "d": d, "k": params.neighbours, "t": params.threshold, "correct_sum": bool(np.all(total == expected)),
        "survivors": len(server.survivors),
        "per_client_s": sum(clock.client_cpu.values()) / n,
        "per_client_wall_s": sum(clock.client_wall.values()) / n,
        "slowest_client_stage_sum_s": sum(clock.client_max.values()),
        "server_s": sum(clock.server_cpu.values()), "server_wall_s": sum(clock.server_wall.values()),
        "client_init_per_client_s": client_init / n, "server_init_s": server_init, "identities_s": identities_s,
        "round_wall_s": wall, "up_bytes_per_client": sum(clock.up.values()) / n,
        "down_bytes_per_client": sum(clock.down.values()) / n,
        "peak_rss_mb": _maxrss_mb(), "rss_before_mb": rss_start, "stages": stages,
    }


def prior_of(point: dict) -> dict[str, float]:
    """Per-client wall seconds per stage (client, and server / n) of a finished point, for estimates."""
    prior = {}
    for stage, row in point["stages"].items():
        prior[stage] = row["client_wall_per_client_s"]
        prior[f"server/{stage}"] = row["server_wall_s"] / point["n"]
    return prior


def run_point_child(n: int, d: int, prior: dict | None, timeout: float) -> dict:
    """``scaling_point`` in a fresh interpreter (its own peak RSS); on timeout the child is stopped and
    the last stage it reported is returned."""
    command = [sys.executable, os.path.abspath(__file__), "--_point", f"{n},{d}", "--_prior", json.dumps(prior or {})]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return {"n": n, "d": d, "stopped": f"over the {timeout:.0f} s limit (see the stderr progress lines for where)"}
    if child.returncode != 0:
        return {"n": n, "d": d, "stopped": f"child exited with {child.returncode}"}
    return json.loads(out)


def fit_cost_model(points: list[dict], extrapolate_to: int = 1_000_000) -> dict:
    """Least squares over the measured points (numpy.linalg.lstsq, no weights):

    per-client CPU  = a + b k + c d (k + 1)        (fixed work, per-neighbour work, one PRG mask per neighbour
                                                    and the self mask over d words)
    server CPU      = alpha n k + beta n d + gamma n^2
                                                   (per-neighbour work per client; per-client d-word add and
                                                    self-mask removal: without dropouts the server rebuilds
                                                    one mask per survivor, not k + 1; and a quadratic term,
                                                    because the measured receive_unmask grows ~n^2: 0.03, 0.4,
                                                    20 s at n = 1e2, 1e3, 1e4; without it the fit is off by 140%)
    Relative residuals are reported; with k only 22..26 over the measured n, b is weakly separated from a.
    """
    done = [p for p in points if "per_client_s" in p]
    if len(done) < 3:
        return {"note": "fewer than 3 measured points: no fit"}
    n, d, k = (np.array([p[key] for p in done], dtype=float) for key in ("n", "d", "k"))
    client_y = np.array([p["per_client_s"] for p in done])
    server_y = np.array([p["server_s"] for p in done])
    client_x = np.stack([np.ones_like(n), k, d * (k + 1)], axis=1)
    server_x = np.stack([n * k, n * d, n * n], axis=1)
    (a, b, c), *_ = np.linalg.lstsq(client_x, client_y, rcond=None)
    (alpha, beta, gamma), *_ = np.linalg.lstsq(server_x, server_y, rcond=None)
    params = SecAggPlus().params(extrapolate_to)
    k_big = params.neighbours
    init = max(done, key=lambda p: p["n"] * p["k"])
    extrapolated = []
    for dim in sorted({int(x) for x in d} | {1_000_000}):
        extrapolated.append({
            "n": extrapolate_to, "k": k_big, "d": dim, "per_client_s": a + b * k_big + c * dim * (k_big + 1),
            "server_s": alpha * extrapolate_to * k_big + beta * extrapolate_to * dim + gamma * extrapolate_to**2,
            "server_s_without_n2_term": alpha * extrapolate_to * k_big + beta * extrapolate_to * dim,
            "server_init_s_scaled_nk": init["server_init_s"] * extrapolate_to * k_big / (init["n"] * init["k"]),
            "server_uploads_gb": extrapolate_to * (4 * dim) / 1e9,
        })
    return {
        "per_client": {"a_s": a, "b_s_per_neighbour": b, "c_s_per_word_mask": c,
                       "relative_residuals": list((client_x @ [a, b, c] - client_y) / client_y)},
        "server": {"alpha_s_per_client_neighbour": alpha, "beta_s_per_client_word": beta,
                   "gamma_s_per_client_pair": gamma,
                   "relative_residuals": list((server_x @ [alpha, beta, gamma] - server_y) / server_y)},
        "extrapolated": extrapolated,
    }


def bench_scaling(sizes: list[int], dims: list[int], timeout: float, max_nd: float) -> dict:
    """Every (n, d) in sizes x dims up to n d <= max_nd, smallest first, each in a child process."""
    points, prior = [], {}
    for d in dims:
        for n in sorted(sizes):
            if n * d > max_nd:
                points.append({"n": n, "d": d, "stopped": f"skipped: n d = {n * d:.0e} > --max-nd {max_nd:.0e}"})
                continue
            print(f"[scaling] n={n} d={d} starting", file=sys.stderr, flush=True)
            point = run_point_child(n, d, prior.get(d), timeout)
            points.append(point)
            if "stopped" in point:
                print(f"[scaling] n={n} d={d} stopped: {point['stopped']}", file=sys.stderr, flush=True)
                continue
            prior[d] = prior_of(point)
            print(f"[scaling] n={n} d={d} k={point['k']}: {point['per_client_s'] * 1e3:.2f} ms per client, server "
                  f"{point['server_s']:.2f} s, round {point['round_wall_s']:.1f} s, "
                  f"peak RSS {point['peak_rss_mb']:.0f} MB",
                  file=sys.stderr, flush=True)
    by_k = {}
    for p in points:
        if "k" in p:
            by_k.setdefault(p["d"], []).append(p)
    flat = {str(d): max(p["per_client_s"] for p in ps) / min(p["per_client_s"] for p in ps) for d, ps in by_k.items()}
    return {"points": points, "per_client_max_over_min_by_d": flat, "fit": fit_cost_model(points)}


def _ints(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-server", action="store_true", help="skip the n=100, d=1e6 server round")
    parser.add_argument("--scaling", action="store_true", help="run only the SecAgg+ scaling table")
    parser.add_argument("--skip-scaling", action="store_true", help="run every part but the scaling table")
    parser.add_argument("--sizes", type=_ints, default=[100, 1000], help="scaling group sizes n (comma-separated)")
    parser.add_argument("--dims", type=_ints, default=[1000, 100_000], help="scaling vector lengths d")
    parser.add_argument("--max-nd", type=float, default=1e8, help="skip scaling points with n d above this")
    parser.add_argument("--point-timeout", type=float, default=420.0, help="seconds before a scaling point is stopped")
    parser.add_argument("--quick", action="store_true", help="small sizes everywhere: a smoke run")
    parser.add_argument("--refit", metavar="JSON", help="print the cost model fitted on a saved --scaling output")
    parser.add_argument("--_point", help=argparse.SUPPRESS)
    parser.add_argument("--_prior", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._point:
        n, d = _ints(args._point)
        print(json.dumps(scaling_point(n, d, json.loads(args._prior))))
        return
    if args.refit:
        with open(args.refit) as file:
            print(json.dumps(fit_cost_model(json.load(file)["scaling"]["points"]), indent=2))
        return
    if args.quick:
        args.repeats, args.sizes, args.dims = min(args.repeats, 2), [20, 60], [1000, 10_000]
    result = {"python": platform.python_version(), "numpy": np.__version__, "cryptography": cryptography.__version__,
              "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(), "repeats": args.repeats}
    if not args.scaling:
        flower = _flower()
        masking = [(100_000, 8)] if args.quick else MASKING_SIZES
        shamir_sizes = [(10, 6)] if args.quick else SHAMIR_SIZES
        step = [(100_000, 10)] if args.quick else [(1_000_000, 10)]
        result.update({
            "flower": flower[0] if flower is not None else "not installed",
            "masking_uint32": [bench_masking(d, k, args.repeats, flower) for d, k in masking],
            "shamir_combine_100_secrets": [bench_shamir_combine(n, t, args.repeats) for n, t in shamir_sizes],
            "client_step_quantize_and_mask": [bench_client_step(d, k, args.repeats, flower) for d, k in step],
        })
        if not args.skip_server:
            n, d = (20, 10_000) if args.quick else (100, 1_000_000)
            result["server_round"] = [bench_server(n, d, drop, min(args.repeats, 3)) for drop in (0.0, 0.1)]
    if not args.skip_scaling:
        result["scaling"] = bench_scaling(args.sizes, args.dims, args.point_timeout, args.max_nd)
    result["load_average_at_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
