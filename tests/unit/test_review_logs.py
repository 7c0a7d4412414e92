"""One log line per review at INFO: image-gate's own; kopf's and aiohttp's per-request lines only when asked for.

The review goes over HTTP through the real server, kopf's real admission function and image-gate's
handlers, into the logging `configure_logging` sets up, as ``image-gate run`` does.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import cast

import httpx
import pytest
from aiohttp.web_log import AccessLogger
from kopf._cogs.configs.configuration import OperatorSettings
from kopf._cogs.structs.bodies import Body, RawBody
from kopf._core.actions.loggers import LocalObjectLogger

from image_gate.app.logs import KOPF_OBJECTS, configure_logging
from image_gate.app.settings import Settings, SettingsError, add_run_arguments
from tests.kopfwebhook import pod, review, serving_without_policies


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging replaces the root handler and sets levels: put them back for the next tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "aiohttp.access", KOPF_OBJECTS)}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async for base in serving_without_policies():
        yield base


async def one_review(url: str) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(f"{url}/pods", json=review(pod()))
    assert answer.status_code == 200
    assert answer.json()["response"]["allowed"] is True


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


async def test_one_review_writes_one_line_at_info(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(log_format="json", level=Settings().log_level, http_logs=Settings().debug_http_logs)
    await one_review(url)
    lines = log_lines(capsys)
    assert [(line["logger"], line["message"]) for line in lines] == [("image_gate.admission", "admission allowed")]
    assert lines[0]["review"]["object"] == "shop/web"  # type: ignore[index]


async def test_debug_http_logs_brings_back_kopfs_line(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(log_format="json", level="INFO", http_logs=True)
    await one_review(url)
    messages = [line["message"] for line in log_lines(capsys)]
    assert messages == ["admission allowed", "Webhook 'pods' succeeded."]


@pytest.mark.parametrize("http_logs", [False, True])
def test_kopf_builds_its_webhook_line_only_when_asked(http_logs: bool) -> None:
    """kopf's object logger (the one admission uses) checks the level before it builds a record."""
    configure_logging(log_format="json", level="INFO", http_logs=http_logs)
    pod_logger = LocalObjectLogger(body=Body(cast(RawBody, pod())), settings=OperatorSettings())
    assert pod_logger.isEnabledFor(logging.INFO) is http_logs
    assert pod_logger.isEnabledFor(logging.WARNING)  # kopf's warnings and errors are always written


@pytest.mark.parametrize("http_logs", [False, True])
def test_aiohttp_builds_its_access_line_only_when_asked(http_logs: bool) -> None:
    configure_logging(log_format="json", level="INFO", http_logs=http_logs)
    assert AccessLogger(logging.getLogger("aiohttp.access"), AccessLogger.LOG_FORMAT).enabled is http_logs


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        ([], {}, False),
        ([], {"IMAGE_GATE_DEBUG_HTTP_LOGS": "TRUE"}, True),
        (["--debug-http-logs", "false"], {"IMAGE_GATE_DEBUG_HTTP_LOGS": "true"}, False),
    ],
)
def test_the_setting_is_off_unless_turned_on(argv: list[str], environ: dict[str, str], expected: bool) -> None:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    assert Settings.from_arguments(parser.parse_args(argv), environ=environ).debug_http_logs is expected


def test_the_setting_refuses_other_words() -> None:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    with pytest.raises(SettingsError, match=r"--debug-http-logs \(IMAGE_GATE_DEBUG_HTTP_LOGS\): must be one of"):
        Settings.from_arguments(parser.parse_args(["--debug-http-logs", "yes"]), environ={})
