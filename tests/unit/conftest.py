"""Fixtures the unit modules share: a fake wall clock, an in-memory cluster of ImageFacts, fake clouds.

Defined next to what they make (tests/faketime.py, tests/factcluster.py); imported here, pytest offers
them to every module in tests/unit/, and a module that needs another clock defines its own ``time``.
"""

from __future__ import annotations

from tests.factcluster import cluster_fixture
from tests.fakeclouds import hss_fixture, sas_fixture
from tests.faketime import time_fixture

__all__ = ["cluster_fixture", "hss_fixture", "sas_fixture", "time_fixture"]
