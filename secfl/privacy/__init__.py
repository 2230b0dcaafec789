"""Differential privacy: DP events, the accountant that prices them, the ledger of a run."""

from secfl.privacy.accountant import Accountant
from secfl.privacy.events import DiscreteSumDpEvent
from secfl.privacy.ledger import Ledger

__all__ = ["Accountant", "DiscreteSumDpEvent", "Ledger"]
