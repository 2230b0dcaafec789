"""DP events dp-accounting does not have: one group sum of a distributed discrete mechanism."""

from __future__ import annotations

import attr
import dp_accounting
import numpy as np

from secfl.privacy import discrete


@attr.s(frozen=True, auto_attribs=True)
class DiscreteSumDpEvent(dp_accounting.DpEvent):
    """A group sum of ``clients`` integer noise shares in the scaled domain (KLS21 / AKL21).

    Attributes:
        mechanism: ``"dgauss"`` (sum of discrete Gaussians) or ``"skellam"``.
        l2: the inflated L2 sensitivity of one client's scaled, rounded vector (add/remove-one).
        l1: the inflated L1 sensitivity.
        local_stddev: each client's noise standard deviation, in scaled (integer) units.
        clients: how many clients' noise the sum holds.
        dim: the (padded) dimension.
        scale: the scale s (integer units per real unit).
    """

    mechanism: str
    l2: float
    l1: float
    local_stddev: float
    clients: int
    dim: int
    scale: float

    def rdp(self, orders: np.ndarray, *, replace_one: bool = False) -> np.ndarray:
        """The RDP of one such sum at integer ``orders``; replace-one neighbours double the sensitivities."""
        factor = 2.0 if replace_one else 1.0
        l2, l1 = factor * self.l2, factor * self.l1
        if self.mechanism == "dgauss":
            return discrete.ddg_rdp(orders, l2, l1, self.local_stddev, self.clients, self.dim)
        # all in integer units, where AKL21's formula holds with scale 1
        return discrete.skellam_rdp(orders, l2, l1, self.clients * self.local_stddev**2, 1.0)
