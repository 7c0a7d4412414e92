"""IAM password logins against cloudsim's IAM, on a fake clock: a refused password is not tried every 5 s."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from cloudsim.hss_auth import DEFAULT_IAM_USERS
from cloudsim.server import Simulators
from image_gate.clouds.huawei import HssClient, IamPassword, IamTokenAuth, PasswordRefused
from image_gate.clouds.huawei.iam import LOGIN_RETRY_MAX
from image_gate.clouds.retry import RetryPolicy
from image_gate.core.clock import Deadline
from image_gate.core.images import ImageReference
from image_gate.core.outcomes import Found, Unauthorized
from image_gate.facts.registries import HssLocation
from tests.tlsutil import TestPki

IAM_USER = DEFAULT_IAM_USERS[0]
REGION = "cn-north-4"
LOGINS = "KeystoneCreateUserTokenByPassword"
IMAGE = ImageReference.parse("swr.cn-north-4.myhuaweicloud.com/demo/api:1.4.2")
LOCATION = HssLocation(region=REGION, image_type="private_image")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def auth(sim: Simulators, pki: TestPki) -> AsyncIterator[tuple[IamTokenAuth, FakeClock]]:
    clock = FakeClock()
    sim.state.faults.reset()
    password = IamPassword(IAM_USER.name, "not-the-password", IAM_USER.domain)
    # rng 0.5: no jitter, so that the steps are exact.
    iam = IamTokenAuth(password, iam_endpoint=sim.hss_url, verify=pki.ca_file, clock=clock, rng=lambda: 0.5)
    yield iam, clock
    await iam.aclose()


def logins(sim: Simulators) -> int:
    return sim.state.faults.calls[LOGINS]


async def test_a_refused_password_backs_off_exponentially_to_ten_minutes(
    sim: Simulators, auth: tuple[IamTokenAuth, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    iam, clock = auth
    caplog.set_level(logging.WARNING, logger="image_gate.clouds.huawei.iam")
    start = clock.now
    login_seconds: list[int] = []
    said: dict[int, str] = {}
    for second in range(0, 3600, 5):  # a lookup every 5 s for an hour
        clock.now = start + second
        before = logins(sim)
        with pytest.raises(PasswordRefused) as refused:
            await iam.token(REGION)
        said[second] = str(refused.value)
        if logins(sim) > before:
            login_seconds.append(second)

    # 5 s doubling to 10 min: 12 logins in the hour instead of 720.
    assert login_seconds == [0, 5, 15, 35, 75, 155, 315, 635, 1235, 1835, 2435, 3035]
    gaps = [later - earlier for earlier, later in itertools.pairwise(login_seconds)]
    assert max(gaps) == LOGIN_RETRY_MAX
    # The lookup's outcome says when the next login is; one WARNING per step says it in the log.
    assert said[0].startswith("IAM refused the password; next login attempt in 5 s (no token for IAM user")
    assert said[5].startswith("IAM refused the password; next login attempt in 10 s")
    assert said[10].startswith("IAM refused the password; next login attempt in 5 s")
    assert said[3035].startswith("IAM refused the password; next login attempt in 600 s")
    assert "HTTP 401" in said[0]
    warnings = [r.getMessage() for r in caplog.records if "next login attempt" in r.getMessage()]
    assert len(warnings) == len(login_seconds)
    assert warnings[-1].endswith("next login attempt in 600 s")


async def test_a_login_that_succeeds_starts_the_backoff_again(
    sim: Simulators, pki: TestPki, auth: tuple[IamTokenAuth, FakeClock]
) -> None:
    iam, clock = auth
    for step in (0, 5, 10):  # three refusals: the next wait would be 40 s
        clock.now += step
        with pytest.raises(PasswordRefused):
            await iam.token(REGION)
    assert logins(sim) == 3
    # The operator fixes the password; the next attempt, 20 s later, logs in.
    iam.password = IamPassword(IAM_USER.name, IAM_USER.password, IAM_USER.domain)
    clock.now += 20
    await iam.token(REGION)
    assert logins(sim) == 4

    # IAM revokes the token and the password is wrong again: the wait starts over at 5 s, not 40 s.
    iam.password = IamPassword(IAM_USER.name, "not-the-password-either", IAM_USER.domain)
    async with httpx.AsyncClient(verify=pki.client_context()) as control:
        await control.delete(f"{sim.hss_url}/_sim/hss/iam/tokens")
    fast = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
    async with HssClient(iam, endpoint=sim.hss_url, iam_endpoint=sim.hss_url, verify=pki.ca_file, retry=fast) as hss:
        outcome = await hss.find_image(IMAGE, LOCATION, deadline=Deadline.after(5.0))
        assert isinstance(outcome, Unauthorized)
        assert "IAM refused the password; next login attempt in 5 s" in outcome.detail
        assert logins(sim) == 5

        iam.password = IamPassword(IAM_USER.name, IAM_USER.password, IAM_USER.domain)
        clock.now += 5
        assert isinstance(await hss.find_image(IMAGE, LOCATION, deadline=Deadline.after(5.0)), Found)
        assert logins(sim) == 6
