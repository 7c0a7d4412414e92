"""The leader's HSS inventory mirror as ``image-gate run`` builds it: on by default, gone when turned off."""

import argparse

import pytest

from image_gate.app.metrics import Metrics
from image_gate.app.mirroring import hss_inventory
from image_gate.app.settings import Settings, add_run_arguments
from image_gate.facts.inventory import HssInventory


def settings(*argv: str, **env: str) -> Settings:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return Settings.from_arguments(parser.parse_args(list(argv)), environ=env)


def test_the_mirror_is_on_by_default_and_pages_once_a_quota_window() -> None:
    inventory = hss_inventory(settings(), Metrics())
    assert isinstance(inventory, HssInventory)
    assert inventory.settings.call_every == pytest.approx(63.0)  # HSS's 60 s and the limiter's 3 s margin


def test_the_mirror_follows_the_hss_rate_and_the_tag_ttl() -> None:
    inventory = hss_inventory(settings("--hss-rate", "50/120", "--tag-ttl-seconds", "600"), Metrics())
    assert inventory is not None
    assert inventory.settings.call_every == pytest.approx(126.0)  # 120 s and a 5 % margin
    assert inventory.settings.found_for == 600.0
    assert inventory.settings.rewalk_after == pytest.approx(480.0)


@pytest.mark.parametrize(
    ("argv", "env"),
    [(("--hss-inventory-mirror", "false"), {}), ((), {"IMAGE_GATE_HSS_INVENTORY_MIRROR": "False"})],
)
def test_the_mirror_turned_off_is_not_built(argv: tuple[str, ...], env: dict[str, str]) -> None:
    """None: the resolver lists at need (no MirroredHss) and the leader starts no walk."""
    assert hss_inventory(settings(*argv, **env), Metrics()) is None


def test_the_switch_names_its_flag_and_variable_when_misspelt() -> None:
    with pytest.raises(ValueError, match=r"--hss-inventory-mirror \(IMAGE_GATE_HSS_INVENTORY_MIRROR\)"):
        settings(IMAGE_GATE_HSS_INVENTORY_MIRROR="off")
