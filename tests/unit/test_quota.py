"""The client-side quota: never more than N starts in any window, first come first served."""

import asyncio

import pytest

from image_gate.clouds.quota import QuotaBook, QuotaExceeded, Rate, SlidingWindowLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        # Time stands still: each caller's start is when it asked plus what it was told to wait.
        await asyncio.sleep(0)


async def test_no_window_ever_holds_more_than_the_quota() -> None:
    time = FakeTime()
    limiter = SlidingWindowLimiter(Rate(5, 60.0), clock=time.clock, sleep=time.sleep)
    starts: list[float] = []

    async def call() -> None:
        asked = time.now
        starts.append(asked + await limiter.acquire())

    await asyncio.gather(*(call() for _ in range(23)))
    starts.sort()
    assert len(starts) == 23
    for index in range(len(starts) - 5):
        assert starts[index + 5] - starts[index] >= 60.0, "six starts within one minute"
    assert starts[0] == 1000.0
    assert starts[-1] == 1000.0 + 4 * 60.0, "and no slower than the quota allows"


async def test_a_token_bucket_burst_pattern_is_not_allowed() -> None:
    time = FakeTime()
    limiter = SlidingWindowLimiter(Rate(5, 60.0), clock=time.clock, sleep=time.sleep)
    waits = [await limiter.acquire() for _ in range(6)]
    assert waits == [0.0, 0.0, 0.0, 0.0, 0.0, 60.0]


async def test_max_wait_refuses_instead_of_queueing() -> None:
    time = FakeTime()
    limiter = SlidingWindowLimiter(Rate(1, 10.0), clock=time.clock, sleep=time.sleep)
    assert await limiter.acquire(max_wait=0) == 0.0
    with pytest.raises(QuotaExceeded) as caught:
        await limiter.acquire(max_wait=5.0)
    assert caught.value.wait == 10.0
    assert str(caught.value) == "the client-side quota has no free slot for 10.0s"


async def test_a_cloud_retry_after_holds_every_later_call() -> None:
    time = FakeTime()
    limiter = SlidingWindowLimiter(Rate(100, 1.0), clock=time.clock, sleep=time.sleep)
    limiter.hold(7.5)
    assert await limiter.acquire() == 7.5
    assert limiter.waited == 7.5


class GatedTime(FakeTime):
    """Sleeps end when the test opens the gate, at the time they were to end (or later)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        until = self.now + seconds
        await self.gate.wait()
        self.now = max(self.now, until)


async def test_a_call_counts_in_the_window_until_its_answer_came() -> None:
    # The gateway counts a call when it arrives: anywhere between our start and its answer.
    time = GatedTime()
    limiter = SlidingWindowLimiter(Rate(2, 10.0), clock=time.clock, sleep=time.sleep)
    slow, quick = await limiter.take(), await limiter.take()
    third = asyncio.ensure_future(limiter.take())
    await asyncio.sleep(0)  # reserved for 1010.0, when both calls ahead are 10 s old, and asleep until then
    time.now = 1000.1
    quick.settle()  # answered at once: the gateway counted it by 1000.1
    time.now = 1003.0
    slow.settle()  # a new connection's handshake under load: it may have arrived as late as 1003.0
    time.gate.set()
    slot = await third
    # At 1010.0 the gateway's window (1000.0, 1010.0] may hold both: the third call waits for quick's answer + 10 s.
    assert slot.at == pytest.approx(1010.1)
    assert slot.waited == pytest.approx(10.1)
    assert limiter.waited == pytest.approx(10.1)


async def test_a_call_still_under_way_keeps_its_place_in_the_window() -> None:
    time = FakeTime()
    limiter = SlidingWindowLimiter(Rate(1, 10.0), clock=time.clock, sleep=time.sleep)
    first = await limiter.take()
    time.now = 1015.0  # 15 s later the first call has not answered: the gateway may count it any moment
    assert limiter.next_slot() == 1025.0
    first.settle()
    time.now = 1016.0
    assert limiter.next_slot() == 1025.0, "answered at 1015.0: the window counts it there"
    with pytest.raises(QuotaExceeded):
        await limiter.take(max_wait=5.0)
    assert limiter.next_slot() == 1025.0, "a refused caller reserves nothing"


def test_quota_book_keeps_one_limiter_per_key_and_rate() -> None:
    book = QuotaBook()
    first = book.limiter(("huawei", "ListRegistryImages", "ak1"), Rate(5, 60.0))
    assert book.limiter(("huawei", "ListRegistryImages", "ak1"), Rate(5, 60.0)) is first
    assert book.limiter(("huawei", "ListImageBasicImage", "ak1"), Rate(5, 60.0)) is not first
    assert book.limiter(("huawei", "ListRegistryImages", "ak1"), Rate(10, 60.0)) is not first


@pytest.mark.parametrize(
    ("text", "rate"), [("5/60", Rate(5, 60.0)), ("5/60s", Rate(5, 60.0)), ("10/1", Rate(10, 1.0)), ("7", Rate(7, 60.0))]
)
def test_rates_parse(text: str, rate: Rate) -> None:
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["fast", "5/", "0/60", "5/0", "-1/60"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        Rate.parse(text)
