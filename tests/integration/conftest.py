"""Fixtures for tests that talk real HTTPS to cloudsim on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cloudsim.catalogue import Catalogue
from cloudsim.server import Simulators
from tests.tlsutil import TestPki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """A CA and a 127.0.0.1 certificate: the simulators serve HTTPS, clients verify it."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def sim(pki: TestPki) -> Iterator[Simulators]:
    """Both simulators with the demo catalogue, shared by a module's tests (each resets what it changes)."""
    with Simulators(Catalogue.load(), ssl_context=pki.server_context()) as simulators:
        yield simulators
