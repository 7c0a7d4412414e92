"""kopf's per-event success lines for the ImageFact handlers are dropped; everything else is kept."""

from __future__ import annotations

import logging

import kopf
import pytest

from image_gate.facts.resolver import FactResolver
from image_gate.facts.shared import SharedFacts
from image_gate.kube.factstore import KubeFactStore, register_fact_store
from image_gate.kube.kubeapi import KubeApi
from tests.fakeclouds import MAPPING


def test_the_fact_handlers_success_lines_are_quiet(caplog: pytest.LogCaptureFixture) -> None:
    store = KubeFactStore(KubeApi())
    register_fact_store(
        kopf.OperatorRegistry(), facts=SharedFacts(FactResolver(MAPPING, None, None), store), store=store
    )
    logger = logging.getLogger("kopf.objects")
    with caplog.at_level(logging.INFO, logger="kopf.objects"):
        logger.info("Handler 'fact-watch' succeeded.")
        logger.info("Handler 'image_gate_facts' succeeded.")
        logger.info("Handler 'policy-status' succeeded.")
        logger.warning("Handler 'fact-watch' failed with an exception and will try again in 60 seconds: boom")
    assert [record.getMessage() for record in caplog.records] == [
        "Handler 'policy-status' succeeded.",
        "Handler 'fact-watch' failed with an exception and will try again in 60 seconds: boom",
    ]
