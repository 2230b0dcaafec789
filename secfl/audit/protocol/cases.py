"""The attack attempts of ``secfl.audit.protocol.run``: one function per attack, honest parties run by secfl.

SecAgg / SecAgg+ attempts (``secagg.py``: the consistency, unmask and convict stages and replays;
``instances.py``: rosters, retries, group size, keys and shares; ``clients.py``: one
faulty client and the network; ``faults.py``: malformed bytes and too few clients) run real
``SecAggClient`` objects and a real ``SecAggServer`` over bound instances, relayed by
``secagg_round.run_instance`` whose ``tamper`` hook is the attacker (``harness.py``). HE
attempts (``he.py``) drive ``HeClient``, ``HeAggregator`` and ``KeyHolder`` through ``HeRound``.
Each function returns an ``Attempt`` (see ``secfl.audit.protocol.base.attempt``).

Configurations: ``secagg`` = SecAgg (complete graph) over 5 clients (k = 4, t = 3); ``secagg+`` =
SecAggPlus(neighbours=4) over 9 clients (a sparse Harary graph, k = 4, t = 3); ``he`` = HeSum BFV
with 20-bit words. Vectors have 8 (SecAgg) or 16 (HE) words.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

from secfl.audit.protocol import clients as cl
from secfl.audit.protocol import faults as fa
from secfl.audit.protocol import instances as ins
from secfl.audit.protocol import secagg as sv
from secfl.audit.protocol.base import Attempt
from secfl.audit.protocol.he import (he_malformed_sum, he_malformed_upload, he_replayed_context, he_replayed_upload,
                                       he_second_decryption, he_single_upload_first, he_substituted_context,
                                       he_sum_after_close, he_sum_other_round, he_tampered_upload, he_too_few_clients,
                                       he_upload_as_other)

Case = Callable[[str], Attempt]
CLIENT_STAGES = ("share_keys", "check_shares", "masked_input", "consistency_check", "unmask", "convict")


def _secagg_cases(split_sizes: Sequence[int], extra: Mapping[str, Case] = {}) -> dict[str, Case]:  # noqa: B006
    return {
        # the consistency and unmask stages: both shares of one client
        "late-upload-both-masks": sv.late_upload,
        "both-shares-two-requests": sv.both_shares_two_requests,
        "survivors-changed-after-signing": sv.list_changed_after_signing,
        "inconsistent-survivors-one-client": sv.one_client_misled,
        **{f"split-view-quorums-n{n}": functools.partial(sv.split_view, n=n) for n in split_sizes},
        "too-few-signatures": sv.too_few_signatures,
        "forged-consistency-signatures": sv.forged_signatures,
        "statements-omit-client": sv.statement_omits_client,
        "replay-statements-other-instance": sv.statements_other_instance,
        # the convict stage: a pairwise key with an honest neighbour
        "forged-conviction-proof": sv.forged_conviction,
        "conviction-of-honest-client": sv.convict_honest,
        # replays
        "replay-earlier-round": sv.replay_earlier_round,
        "replay-other-session": sv.replay_other_session,
        "replay-other-group": sv.replay_other_group,
        "misaddressed-message": sv.misaddressed,
        "replay-earlier-stage": sv.replay_earlier_stage,
        "replay-unmask-request": sv.replay_same_request,
        "skipped-stage": sv.out_of_order,
        # instances and rosters, retries, group size
        "roster-of-wrong-size": ins.roster_wrong_size,
        "roster-without-client": ins.roster_without_client,
        "split-rosters-second-contribution": functools.partial(ins.split_rosters, dropped=False),
        "split-rosters-key-shares": functools.partial(ins.split_rosters, dropped=True),
        "sybil-roster": ins.sybil_roster,
        "lie-about-group-size": ins.lie_about_group_size,
        "retry-same-instance": ins.retry_same_instance,
        "difference-fresh-sessions": ins.difference_fresh_sessions,
        # keys and shares relayed by the server
        "tampered-share-ciphertext": ins.tampered_share,
        "share-for-another-client": ins.share_for_another,
        "substituted-round-key": ins.substituted_key,
        "sybil-client": ins.sybil,
        **{f"continue-after-refused-{stage.replace('_', '-')}": functools.partial(ins.continue_after_refusal,
                                                                                  stage=stage)
           for stage in ins.STEP_AFTER},
        # one faulty client; the network on the uploads
        "low-order-round-key": cl.low_order_key,
        "copied-round-keys": cl.copied_keys,
        "garbage-share-ciphertexts": cl.garbage_shares,
        "inconsistent-shamir-dealing": cl.inconsistent_dealing,
        "wrong-shamir-share-at-unmask": cl.wrong_share,
        "tampered-masked-upload": cl.tampered_upload,
        "replay-upload-other-instance": cl.replayed_upload,
        # malformed and non-bytes messages, both directions
        **{f"malformed-{stage.replace('_', '-')}": functools.partial(fa.malformed_to_client, stage=stage)
           for stage in CLIENT_STAGES},
        "malformed-to-server": functools.partial(fa.malformed_to_server, non_bytes=False),
        "non-bytes-to-server": functools.partial(fa.malformed_to_server, non_bytes=True),
        # too few honest clients
        "group-of-two-keys": fa.too_few_keys,
        "too-few-qualified-neighbours": fa.too_few_qualified,
        "too-few-survivors": fa.too_few_survivors,
        "unmask-below-threshold": fa.unmask_below_threshold,
        "group-below-minimum": fa.group_below_minimum,
        **extra,
    }


#: protocol -> attempt name -> the function that runs it (``case(protocol)`` returns that ``Attempt``).
CASES: dict[str, dict[str, Case]] = {
    "secagg": _secagg_cases(split_sizes=(5, 6)),
    "secagg+": _secagg_cases(split_sizes=(9,), extra={"isolate-in-sparse-graph": fa.isolate_in_sparse_graph}),
    "he": {
        "tampered-upload": he_tampered_upload,
        "replay-earlier-round-upload": he_replayed_upload,
        "upload-as-other-client": he_upload_as_other,
        "replay-earlier-round-context": he_replayed_context,
        "substituted-context": he_substituted_context,
        "second-decryption-single-upload": he_second_decryption,
        "sum-from-earlier-round": he_sum_other_round,
        "sum-after-round-closed": he_sum_after_close,
        "malformed-upload": he_malformed_upload,
        "malformed-sum": he_malformed_sum,
        "too-few-clients": he_too_few_clients,
        "single-upload-as-sum": he_single_upload_first,
    },
}
