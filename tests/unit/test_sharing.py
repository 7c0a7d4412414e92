"""When facts are shared through the cluster: ``--fact-store`` and the namespace."""

from __future__ import annotations

import argparse

import pytest

from image_gate.app.settings import Settings, SettingsError, add_run_arguments
from image_gate.app.sharing import replica_identity, shares_facts


def settings(*argv: str, **env: str) -> Settings:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return Settings.from_arguments(parser.parse_args(list(argv)), environ=env)


def test_auto_shares_facts_when_the_namespace_is_known() -> None:
    assert settings().fact_store == "auto"
    assert not shares_facts(settings())
    assert shares_facts(settings(IMAGE_GATE_NAMESPACE="image-gate"))
    assert not shares_facts(settings("--fact-store", "memory", "--namespace", "image-gate"))
    assert shares_facts(settings("--fact-store", "CLUSTER", "--namespace", "image-gate"))


def test_cluster_without_a_namespace_stops_start_up() -> None:
    with pytest.raises(SettingsError, match="--namespace"):
        settings(IMAGE_GATE_FACT_STORE="cluster")
    with pytest.raises(SettingsError, match="--fact-store"):
        settings("--fact-store", "etcd")


def test_every_process_holds_the_lease_under_its_own_name() -> None:
    assert replica_identity() != replica_identity()
