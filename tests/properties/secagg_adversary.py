"""A malicious SecAgg server as a hypothesis state machine: it controls every message real clients receive.

The server (the machine) opens instances of its choice (session, round, group, any roster over a
small population of honest clients), and at every step picks, per client, the message that client
gets: which advertisements it sees (also ones signed for other instances), which share ciphertexts
(also replayed ones), which neighbours are "qualified" or "alive", which signed statements it shows
at unmasking (any it has collected, from any instance), and which "proofs" that a neighbour dealt
bad shares it shows at the convict stage (CONVICTION built from the signed shares it collected, from
any instance, any subset of holders, either kind, possibly altered). It keeps every byte the clients send.

Invariants, over everything collected (shares are counted, not outcomes judged):
- no client's self-mask seed AND its key (or every pairwise key of its masked input) are ever
  both reconstructable from the shares honest clients revealed: its input stays hidden;
- no client's input (client, round) is masked in two instances, so no two released sums over
  overlapping sets can be differenced down to it;
- every honest run the server lets complete equals the plaintext sum over its survivors;
- no client ever reveals a pairwise mask key (PAIR_KEYS): every client here deals honestly, so no
  CONVICTION the server can build is a proof, and a revealed key would be a key with an honest neighbour.

``Forgetful`` replaces every client's contribution record with one that never refuses: the search
must then find the re-run (differencing) attack, which shows the budget is enough to find it.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis import target
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from secfl.exceptions import ProtocolError
from secfl.hazmat import shamir
from secfl.hazmat.codec import Writer
from secfl.protocols import SecAgg, SecAggPlus
from secfl.protocols import secagg_messages as m
from secfl.protocols.secagg_client import SecAggClient, input_key
from secfl.protocols.secagg_instance import Instance
from secfl.protocols.secagg_record import ContributionRecord
from secfl.protocols.secagg_round import run_instance

D = 4
SESSIONS = (b"\x01" * 16, b"\x02" * 16)
MAX_INSTANCES = 3


class NeverRefuses(ContributionRecord):
    """The old behaviour: no record of contributed inputs."""

    def spend(self, key: bytes) -> None:
        return None


def _pick(items, bits: int) -> list:
    """The subset of ``items`` (sorted) selected by the bits of ``bits`` (bit i -> item i)."""
    return [x for i, x in enumerate(sorted(items)) if bits >> (i % 30) & 1]


MODES = ("all", "victim", "all but victim", "none", "bits")
FORGERIES = ("element", "other digest", "shift all")


def _forged(shares: dict[int, tuple], how: str, bits: int) -> dict[int, tuple]:
    """Signed shares altered so that they are no longer what the dealer dealt (a would-be proof): one
    element of one share, one share's other-digest, or every share shifted by its holder's id (shares
    on no polynomial of degree < t, as a cheating dealer's would be)."""
    holders = sorted(shares)
    out = dict(shares)
    if how == "shift all":
        return {h: ((e + h + 1) % shamir.PRIME, other, sig) for h, (e, other, sig) in shares.items()}
    h = holders[bits % len(holders)]
    elements, other, signature = shares[h]
    if how == "element":
        elements = elements.copy()
        elements[bits % m.SHARE_WORDS] = (elements[bits % m.SHARE_WORDS] + 1) % shamir.PRIME
    else:
        other = bytes(32 - 1) + bytes([bits & 0xFF])
    out[h] = (elements, other, signature)
    return out


def _choose(items, mode: str, victim: int, bits: int) -> list:
    """The list the server shows: everything, only or all but its chosen victim, nothing, or any subset."""
    items = sorted(items)
    if mode == "all":
        return items
    if mode == "victim":
        return [x for x in items if x == victim]
    if mode == "all but victim":
        return [x for x in items if x != victim]
    return [] if mode == "none" else _pick(items, bits)


class MaliciousServer(RuleBasedStateMachine):
    """SecAgg (complete graph) over rosters of n = 5 drawn from 8 clients (k = 4, t = 3)."""

    population = 8
    n = 5
    protocol_type = SecAgg
    protocol_kwargs: dict = {"dropout_rate": 0.0}
    record_type = ContributionRecord

    def __init__(self) -> None:
        super().__init__()
        self.protocol = self.protocol_type(**self.protocol_kwargs)
        self.params = self.protocol.params(self.n)
        self.t = self.params.threshold
        data = np.random.default_rng(0)
        self.inputs = {(c, r): data.integers(0, 2**32, size=D, dtype=np.uint32)
                       for c in range(self.population) for r in range(2)}
        self.records = {c: self.record_type() for c in range(self.population)}
        self.instances: list[tuple[Instance, dict[int, SecAggClient]]] = []
        self.entries: dict[tuple[bytes, int], m.KeyEntry] = {}
        self.blobs: dict[tuple[bytes, int], dict[int, bytes]] = {}
        self.statements: dict[tuple[bytes, int], tuple[tuple[int, ...], bytes]] = {}
        self.sent_alive: dict[tuple[bytes, int], tuple[int, ...]] = {}
        self.masked: dict[tuple[bytes, int], frozenset[int]] = {}
        self.masked_round: dict[tuple[int, int], int] = {}  # (client, round) -> masked uploads
        self.revealed: dict[tuple[bytes, int, int], set[int]] = {}  # (instance, owner, kind) -> holders
        self.signed: dict[tuple[bytes, int, int], dict[int, tuple]] = {}  # ... -> holder -> signed share
        self.pair_keys: list[tuple[bytes, int, int]] = []  # (instance, client, neighbour) of every revealed key
        self.closest = 0.0

    def teardown(self) -> None:
        target(float(self.closest), label="shares towards exposing one input")

    def _client(self, instance: Instance, c: int) -> SecAggClient:
        return SecAggClient(c, instance=instance, params=self.params, values=self.inputs[(c, instance.round)],
                            signing_key=self.protocol.identity(c), directory=self.protocol.directory,
                            record=self.records[c], input_key=input_key("world", instance.round, c))

    @initialize(order=st.permutations(range(9)))
    def first_instance(self, order):
        """Every search starts with one instance of the expected size (more may be opened later)."""
        self.open_instance(0, 0, 0, order, 0)

    @precondition(lambda self: len(self.instances) < MAX_INSTANCES)
    @rule(round_=st.integers(0, 1), session=st.integers(0, 1), group=st.integers(0, 1),
          order=st.permutations(range(9)), extra=st.sampled_from([0, 0, 0, -1, 1]))
    def open_instance(self, round_, session, group, order, extra):
        """Invite any roster (usually of the size clients expect, sometimes one more or one less)."""
        roster = tuple(sorted([c for c in order if c < self.population][: self.n + extra]))
        instance = Instance(SESSIONS[session], round_, group, roster)
        clients = {}
        for c in roster:
            try:
                clients[c] = self._client(instance, c)
            except ProtocolError:  # a roster of the wrong size: refused
                assert len(roster) != self.n
        self.instances.append((instance, clients))

    @precondition(lambda self: self.instances)
    @rule(which=st.sampled_from((0, 0, 0, 1, 2)), who=st.sampled_from(("nobody", "victim", "others", "bits")),
          mode=st.sampled_from(MODES), rest=st.sampled_from(("all", "victim", "all but victim", "none")),
          victim=st.integers(0, 8), bits=st.integers(0, 2**30 - 1), foreign=st.sampled_from((False, False, False, True)),
          silent=st.sampled_from((False,) * 7 + (True,)), forge=st.sampled_from(("none",) * 3 + FORGERIES))
    def step(self, which, who, mode, rest, victim, bits, foreign, silent, forge="none"):
        """Advance one instance by a stage: the clients ``who`` names (nobody, the victim, all others, or a
        subset) get lists built by ``mode``, the others by ``rest``; clients in ``silent`` get nothing
        this time (they stay where they are): with ``silent``, the clients ``bits`` selects."""
        instance, clients = self.instances[which % len(self.instances)]
        victim = instance.roster[victim % instance.n]  # a member: the server targets someone it invited
        chosen = {"nobody": set(), "victim": {victim}, "others": set(clients) - {victim},
                  "bits": {c for c in clients if bits >> c & 1}}[who]
        for c in sorted(clients):
            client = clients[c]
            if client.stage < 0 or client.stage > 6 or (silent and bits >> c & 1):
                continue
            # the clients outside ``who`` get honest lists, except the survivor list, where splitting views pays
            choice = (mode if c in chosen else rest if client.stage == 4 else "all", victim, bits)
            try:
                reply = self._deliver(instance, client, choice, foreign, forge)
            except ProtocolError:
                continue  # the client refused: it stops for this instance
            self._collect(instance, client, reply)

    def _deliver(self, instance: Instance, client: SecAggClient, choice: tuple, foreign: bool,
                 forge: str = "none") -> bytes:
        """The adversary's message for ``client`` at its current stage, then the client's reply."""
        c, digest, stage = client.id, instance.digest, client.stage
        mode, victim, bits = choice
        to = m.Header(digest, m.SERVER, c)
        if stage == 0:
            return client.advertise_keys()
        if stage == 1:
            pool = {k: e for k, e in self.entries.items() if k[1] in client.graph and (k[0] == digest or foreign)}
            chosen = {}
            for (_, v), entry in sorted(pool.items(), key=lambda kv: (kv[0][0] != digest, kv[0][1])):
                chosen.setdefault(v, entry)  # this instance's entry first; else one signed for another
            shown = _choose(chosen, mode, victim, bits)
            body = Writer().u32(len(shown))
            for v in shown:
                m.write_entry(body, chosen[v])
            return client.share_keys(m.encode(m.KEYS, to, body))
        if stage == 2:
            blobs = {u: sent[c] for (d, u), sent in self.blobs.items() if c in sent and (d == digest or foreign)}
            chosen = {u: blobs[u] for u in _choose(blobs, mode, victim, bits)}
            return client.check_shares(m.encode(m.CIPHERTEXTS, to, m.write_blobs(Writer(), chosen)))
        if stage == 3:
            return client.masked_input(m.encode(m.QUALIFIED, to, Writer().ids(_choose(client.graph, mode, victim, bits))))
        if stage == 4:
            alive = tuple(_choose(client.graph, mode, victim, bits))
            self.sent_alive[(digest, c)] = alive
            return client.consistency_check(m.encode(m.SURVIVORS, to, Writer().ids(alive)))
        if stage == 5:
            pool = {v: s for (d, v), s in self.statements.items() if v in client.graph and (d == digest or foreign)
                    and (c in s[0] or mode == "bits")}
            chosen = {v: pool[v] for v in _choose(pool, mode, victim, bits)}
            return client.unmask(m.encode(m.UNMASK_REQUEST, to, m.write_statements(Writer(), chosen)))
        return client.convict(m.encode(m.CONVICTION, to, self._conviction(client, digest, choice, foreign, forge)))

    def _conviction(self, client: SecAggClient, digest: bytes, choice: tuple, foreign: bool, forge: str) -> Writer:
        """A CONVICTION about the neighbours ``mode`` picks, each "proven" by signed shares of it that were
        revealed (in this instance or, with ``foreign``, any), of the kind ``bits`` picks, from all holders
        or the subset ``bits`` picks, possibly altered (``forge``)."""
        mode, victim, bits = choice
        owners = _choose(client.graph, mode, victim, bits)
        body = Writer().u32(len(owners))
        for i, owner in enumerate(owners):
            kind = (bits >> i) & 1 if mode == "bits" else m.SELF_MASK if owner in getattr(client, "alive", ()) \
                else m.KEY_SHARE
            shares: dict[int, tuple] = {}
            for (d, o, k), held in sorted(self.signed.items(), key=lambda kv: kv[0][0] != digest):
                if o == owner and k == kind and (d == digest or foreign):
                    for holder, share in held.items():
                        shares.setdefault(holder, share)  # this instance's share first
            if mode == "bits":
                shares = {h: shares[h] for h in _pick(shares, bits >> 3) or shares}
            if shares and forge != "none":
                shares = _forged(shares, forge, bits)
            m.write_conviction(body, owner, kind, shares)
        return body

    def _collect(self, instance: Instance, client: SecAggClient, reply: bytes) -> None:
        """Keep what the client sent (the server holds every byte)."""
        c, digest = client.id, instance.digest
        kind = reply[3]
        reader = m.open_message(reply, kind=kind, expect=m.Header(digest, c, m.SERVER), max_bytes=1 << 24)
        if kind == m.ADVERTISE:
            self.entries[(digest, c)] = m.read_entry(reader)
        elif kind == m.SHARES:
            self.blobs[(digest, c)] = m.read_blobs(reader, max_count=64, blob_size=m.SHARE_CIPHERTEXT)
        elif kind == m.MASKED:
            self.masked[(digest, c)] = frozenset(m.read_ids(reader, max_count=64))
            self.masked_round[(c, instance.round)] = self.masked_round.get((c, instance.round), 0) + 1
        elif kind == m.CONSISTENCY:
            self.statements[(digest, c)] = (self.sent_alive[(digest, c)], reader.raw(m.SIG_BYTES))
        elif kind == m.UNMASK:
            for owner, (share_kind, *signed) in m.read_shares(reader, max_count=64).items():
                self.revealed.setdefault((digest, owner, share_kind), set()).add(c)
                self.signed.setdefault((digest, owner, share_kind), {})[c] = tuple(signed)
        elif kind == m.PAIR_KEYS:
            for _ in range(reader.u32()):
                self.pair_keys.append((digest, c, reader.u32()))
                reader.raw(m.KEY_BYTES)

    @rule(round_=st.integers(0, 1), order=st.permutations(range(9)), drop=st.integers(0, 2**8 - 1),
          stage=st.sampled_from(SecAggPlus.stages))
    def honest_run(self, round_, order, drop, stage):
        """The server runs an instance honestly (with dropouts); if it completes, the sum must be exact."""
        roster = tuple(sorted([c for c in order if c < self.population][: self.n]))
        instance = Instance(b"\x03" * 16, round_, len(self.instances), roster)
        clients = {c: self._client(instance, c) for c in roster}
        server = self.protocol.server(instance, length=D, dtype=np.uint32)
        gone = set(_pick(roster, drop)[:1])
        try:
            total, _ = run_instance(clients, server, dropped_by=lambda s: gone if SecAggPlus.stages.index(s) >=
                                    SecAggPlus.stages.index(stage) else set())
        except ProtocolError:
            total = None
        for c, client in clients.items():  # what the honest server received counts as collected too
            if client.stage > SecAggPlus.stages.index("masked_input"):
                self.masked_round[(c, round_)] = self.masked_round.get((c, round_), 0) + 1
        if total is not None:
            expected = sum(self.inputs[(c, round_)].astype(np.uint64) for c in server.survivors) % 2**32
            assert np.array_equal(total, expected.astype(np.uint32)), "a completed round is not the plaintext sum"

    def _enough(self, digest: bytes, owner: int, kind: int) -> bool:
        return self._count(digest, owner, kind) >= self.t

    def _count(self, digest: bytes, owner: int, kind: int) -> int:
        return len(self.revealed.get((digest, owner, kind), ()))

    @invariant()
    def no_input_is_revealed(self):
        # steer the search (hypothesis.target) towards servers that hold many shares of both kinds
        t = self.t
        closest = max((min(self._count(d, v, m.SELF_MASK), t)
                       + sum(min(self._count(d, u, m.KEY_SHARE), t) for u in peers) / max(len(peers), 1)
                       for (d, v), peers in self.masked.items()), default=0.0)
        self.closest = max(self.closest, closest)
        for (digest, v), peers in self.masked.items():
            if not self._enough(digest, v, m.SELF_MASK):
                continue
            assert not self._enough(digest, v, m.KEY_SHARE), f"both share sets of client {v}"
            exposed = all(self._enough(digest, u, m.KEY_SHARE) for u in peers)
            assert not exposed, f"client {v}'s self mask and every pairwise key are reconstructable"

    @invariant()
    def no_pairwise_key_is_revealed(self):
        assert not self.pair_keys, f"pairwise keys with honest neighbours revealed: {self.pair_keys}"

    @invariant()
    def no_input_enters_two_instances(self):
        for (c, r), count in self.masked_round.items():
            assert count <= 1, f"client {c}'s round-{r} input was masked in {count} instances"


class SparseMaliciousServer(MaliciousServer):
    """The same search against SecAgg+ with a sparse graph (n = 7, k = 4, t = 3)."""

    population = 9
    n = 7
    protocol_type = SecAggPlus
    protocol_kwargs = {"dropout_rate": 0.0, "neighbours": 4}


class Forgetful(MaliciousServer):
    """Clients without a contribution record (the design before the fix): re-runs must be found."""

    record_type = NeverRefuses
