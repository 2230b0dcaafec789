"""The attack attempts of ``secfl.attacks.protocol``: one function per attack, honest parties run by secfl.

SecAgg / SecAgg+ attempts drive real ``SecAggClient`` objects stage by stage through
``SecAggRound`` (an honest ``SecAggServer`` relays the early stages, then the attacker writes the
server's messages itself). HE attempts (``protocol_he``) drive ``HeClient``, ``HeAggregator`` and
``KeyHolder`` through ``HeRound``. Each function returns an ``Attempt`` (see ``secfl.attacks.protocol.attempt``):
the attack raises the honest party's error, or returns what it obtained.

Configurations: ``secagg`` = SecAgg (complete graph) over 5 clients (k = 4, t = 3); ``secagg+`` =
SecAggPlus(neighbours=4) over 9 clients (a sparse Harary graph, k = 4, t = 3); ``he`` = HeSum BFV
with 20-bit words. Vectors have 8 (SecAgg) or 16 (HE) words.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

from secfl.attacks.protocol import Attempt
from secfl.attacks.protocol_faults import (group_below_minimum, isolate_in_sparse_graph, malformed_ciphertexts,
                                           malformed_keys, malformed_survivors, malformed_to_server,
                                           malformed_unmask_request, too_few_ciphertexts, too_few_keys,
                                           too_few_survivors, unmask_below_threshold)
from secfl.attacks.protocol_he import (he_malformed_sum, he_malformed_upload, he_replayed_context, he_replayed_upload,
                                       he_second_decryption, he_single_upload_first, he_substituted_context,
                                       he_sum_after_close, he_sum_other_round, he_tampered_upload, he_too_few_clients,
                                       he_upload_as_other)
from secfl.attacks.protocol_secagg import (both_shares_one_request, both_shares_two_requests, continue_after_refusal,
                                           corrupted_share_from_client, forged_signatures, late_upload,
                                           list_changed_after_signing, misaddressed, one_client_misled, out_of_order,
                                           replay_earlier_round, replay_earlier_stage, replay_other_group,
                                           replay_other_session, replay_same_request, share_for_another, split_view,
                                           substituted_key, sybil, tampered_share, too_few_signatures)


# Registry ---------------------------------------------------------------------------------------------

Case = Callable[[str], Attempt]


def _secagg_cases(split_sizes: Sequence[int], extra: Mapping[str, Case] = {}) -> dict[str, Case]:  # noqa: B006
    return {
        "both-shares-one-request": both_shares_one_request,
        "both-shares-two-requests": both_shares_two_requests,
        "late-upload-both-masks": late_upload,
        "survivors-changed-after-signing": list_changed_after_signing,
        "inconsistent-survivors-one-client": one_client_misled,
        **{f"split-view-quorums-n{n}": functools.partial(split_view, n=n) for n in split_sizes},
        "too-few-signatures": too_few_signatures,
        "forged-consistency-signatures": forged_signatures,
        "replay-earlier-round": replay_earlier_round,
        "replay-other-session": replay_other_session,
        "replay-other-group": replay_other_group,
        "misaddressed-message": misaddressed,
        "replay-earlier-stage": replay_earlier_stage,
        "replay-unmask-request": replay_same_request,
        "skipped-stage": out_of_order,
        "tampered-share-ciphertext": tampered_share,
        "share-for-another-client": share_for_another,
        "substituted-round-key": substituted_key,
        "sybil-client": sybil,
        "malicious-client-bad-share": corrupted_share_from_client,
        **{f"continue-after-refused-{stage.replace('_', '-')}": functools.partial(continue_after_refusal, stage=stage)
           for stage in ("share_keys", "masked_input", "consistency_check")},
        "malformed-share-keys": malformed_keys,
        "malformed-masked-input": malformed_ciphertexts,
        "malformed-consistency-check": malformed_survivors,
        "malformed-unmask": malformed_unmask_request,
        "malformed-to-server": malformed_to_server,
        "group-of-two-keys": too_few_keys,
        "too-few-share-senders": too_few_ciphertexts,
        "too-few-survivors": too_few_survivors,
        "unmask-below-threshold": unmask_below_threshold,
        "group-below-minimum": group_below_minimum,
        **extra,
    }


#: protocol -> attempt name -> the function that runs it (``case(protocol)`` returns that ``Attempt``).
CASES: dict[str, dict[str, Case]] = {
    "secagg": _secagg_cases(split_sizes=(5, 6)),
    "secagg+": _secagg_cases(split_sizes=(9,), extra={"isolate-in-sparse-graph": isolate_in_sparse_graph}),
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
