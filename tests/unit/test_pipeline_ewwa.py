import numpy as np
import pytest

from secfl.aggregators import Ewwa
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
    with pytest.raises(IncompatibleStagesError):
        Pipeline(clients_per_round=4, grouping=OneGroup(), aggregator=Ewwa())
    with pytest.raises(IncompatibleStagesError):
        Pipeline(clients_per_round=4, stages=[EwwaContribution()], grouping=OneGroup())
