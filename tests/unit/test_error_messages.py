"""Error messages that lead somewhere: each names the real cause and a fix that works."""

from __future__ import annotations

import numpy as np
import pytest

from secfl import ConfigurationError, IncompatibleStagesError, scenario
from secfl.types import Update

ROBUST_OVER_ONE_GROUP = {"protocol": {"kind": "secagg+"}, "grouping": {"kind": "one_group"},
                         "aggregator": {"kind": "krum", "num_byzantine": 1},
                         "stages": [{"kind": "l2clip", "norm": 1.0}, {"kind": "quantize", "scale": 65536.0}]}


def test_krum_over_one_secure_group_suggests_a_fix_that_builds():
    """The suggested bucket size must itself be accepted (SecAgg+ needs groups of >= 3)."""
    with pytest.raises(IncompatibleStagesError, match=r"size = 4 \} \(or smaller, >= 3\)"):
        scenario.validate({**ROBUST_OVER_ONE_GROUP, "data": {"num_clients": 20}}).build_pipeline()
    fixed = {**ROBUST_OVER_ONE_GROUP, "grouping": {"kind": "buckets", "size": 4}, "data": {"num_clients": 20}}
    assert scenario.validate(fixed).build_pipeline().grouping.num_groups(20) == 5


def test_krum_with_too_few_clients_for_secure_groups_says_so():
    with pytest.raises(IncompatibleStagesError, match="5 groups need >= 15 clients per round \\(have 10\\)"):
        scenario.validate({**ROBUST_OVER_ONE_GROUP, "data": {"num_clients": 10}}).build_pipeline()


def test_a_wrong_length_update_is_reported_in_the_users_units():
    pipeline = scenario.validate({**ROBUST_OVER_ONE_GROUP, "aggregator": {"kind": "mean"},
                                  "data": {"num_clients": 4}}).build_pipeline()
    updates = [Update(c, np.zeros(100 if c != 2 else 99, np.float32)) for c in range(4)]
    with pytest.raises(ConfigurationError, match=r"client 2 sent an update of shape \(99,\), client 0 one of \(100,\)"):
        pipeline.run_round(updates, rng=np.random.default_rng(0))


def test_a_bad_set_value_is_blamed_on_the_set_not_the_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[data]\nnum_clients = 4\n")
    with pytest.raises(ConfigurationError, match=r"with --set client.lr=-1: client.lr"):
        scenario.load(path, overrides=["client.lr=-1"])
    path.write_text("[data]\nnum_clients = -4\n")
    with pytest.raises(ConfigurationError, match=r"s.toml with --set client.lr=0.1: data.num_clients"):
        scenario.load(path, overrides=["client.lr=0.1"])
    with pytest.raises(ConfigurationError, match=r"s.toml: data.num_clients"):
        scenario.load(path)
