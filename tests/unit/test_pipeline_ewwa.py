import numpy as np
import pytest

from secfl.aggregators import Chain, Ewwa, StaticClip
from secfl.exceptions import IncompatibleStagesError
from secfl.grouping import Individual, OneGroup
from secfl.pipeline import Pipeline
from secfl.protocols import SecAggPlus
from secfl.stages import EwwaContribution, L2Clip, Quantize
from secfl.types import Update


def test_secure_ewwa_through_secagg_plus_equals_plaintext_ewwa(rng):
    plain = Pipeline(clients_per_round=6, stages=[L2Clip(5.0)], grouping=Individual(), aggregator=Ewwa())
    secure = Pipeline(clients_per_round=6, stages=[L2Clip(5.0), EwwaContribution(bound=4.0), Quantize(scale=2.0**22)],
                      protocol=SecAggPlus(), grouping=OneGroup(), aggregator=Ewwa(mode="secure"))
    for _ in range(4):  # moments evolve over rounds on both sides
        ups = [Update(i, (rng.normal(size=50) * 0.1).astype(np.float32), weight=1.0 + i) for i in range(6)]
        expected = plain.run_round(ups, rng=rng).aggregate
        got = secure.run_round(ups, rng=rng).aggregate
        assert np.allclose(got, expected, rtol=1e-3, atol=1e-4)
        assert not np.allclose(expected, np.average([u.values for u in ups], axis=0, weights=[u.weight for u in ups]))


def test_ewwa_modes_need_their_grouping_and_stage():
    with pytest.raises(IncompatibleStagesError, match="needs one client per row.*use Individual grouping"):
        Pipeline(clients_per_round=4, grouping=OneGroup(), aggregator=Ewwa())
    with pytest.raises(IncompatibleStagesError, match=r"which only Ewwa\(mode='secure'\) expects, not Mean\(\)"):
        Pipeline(clients_per_round=4, stages=[EwwaContribution()], grouping=OneGroup())
    with pytest.raises(IncompatibleStagesError, match=r"add EwwaContribution\(...\) to the stages"):
        Pipeline(clients_per_round=4, grouping=OneGroup(), aggregator=Ewwa(mode="secure"))
    with pytest.raises(IncompatibleStagesError, match="plain FedAvg"):
        Pipeline(clients_per_round=4, stages=[EwwaContribution()], aggregator=Ewwa(mode="secure"))
    with pytest.raises(IncompatibleStagesError, match="more than once"):
        Pipeline(clients_per_round=4, stages=[EwwaContribution(), EwwaContribution()], grouping=OneGroup(),
                 aggregator=Ewwa(mode="secure"))


def test_the_secure_mode_pairs_through_a_chain():
    chained = Chain(Ewwa(mode="secure"), [StaticClip(5.0)])
    assert chained.needs_stage == "ewwa" and chained.takes_ids
    Pipeline(clients_per_round=4, stages=[EwwaContribution()], grouping=OneGroup(), aggregator=chained)
    with pytest.raises(IncompatibleStagesError, match="EwwaContribution"):
        Pipeline(clients_per_round=4, grouping=OneGroup(), aggregator=chained)
