"""polyculture.backends.ratelimit on an injected clock (no test waits), and the google
translator's parallel requests, order and limits through an injected request function (Cloud
Translation is not reachable here); the openai backend's limits against a real server are in
tests/test_api_vllm.py."""

from __future__ import annotations

import io
import threading
import urllib.error

import pytest

from polyculture.backends.generation.openai import ApiSettings, estimated_tokens
from polyculture.backends.ratelimit import RateLimiter
from polyculture.backends.translation import TranslatorSettings, load_translator
from polyculture.backends.translation.google import GoogleSettings, GoogleTranslator
from polyculture.errors import ConfigError


class FakeClock:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def limiter(clock: FakeClock, rpm: float | None, tpm: float | None) -> RateLimiter:
    return RateLimiter(rpm, tpm, name="backend.openai", clock=clock, sleep=clock.sleep)


def test_requests_per_minute_one_seconds_burst_then_the_rate() -> None:
    clock = FakeClock()
    lim = limiter(clock, rpm=120, tpm=None)  # 2 a second, a bucket of 2
    times = []
    for _ in range(6):
        lim.acquire()
        times.append(clock.now)
    assert times == pytest.approx([0, 0, 0.5, 1.0, 1.5, 2.0])
    assert lim.waited_s == pytest.approx(2.0)
    # idle time refills the bucket, but never above one second's worth
    clock.sleep(60)
    lim.acquire(), lim.acquire()
    assert lim.try_acquire() == pytest.approx(0.5)


def test_tokens_per_minute_debt_and_settle() -> None:
    clock = FakeClock()
    lim = limiter(clock, rpm=None, tpm=6000)  # 100 tokens a second, a bucket of 100
    lim.acquire(80)
    assert clock.now == 0
    assert lim.try_acquire(50) == pytest.approx(0.3)  # 20 left, 50 needed: 30 tokens = 0.3 s
    # a request above the bucket waits for a full bucket, then leaves it in debt
    clock.sleep(1.0)
    lim.acquire(300)
    assert clock.now == pytest.approx(1.0)
    assert lim.try_acquire(100) == pytest.approx(3.0)  # from -200 to 100
    # the reply used fewer tokens than reserved: the difference comes back
    lim.settle(reserved=300, used=100)
    assert lim.try_acquire(100) == pytest.approx(1.0)  # from 0 to 100
    with pytest.raises(ConfigError, match=r"backend.openai.tokens_per_minute.*7000 tokens"):
        lim.acquire(7000)


def test_both_limits_wait_for_the_slower() -> None:
    clock = FakeClock()
    lim = limiter(clock, rpm=600, tpm=600)  # 10 requests and 10 tokens a second
    times = []
    for _ in range(4):
        lim.acquire(10)
        times.append(clock.now)
    assert times == pytest.approx([0, 1, 2, 3])  # tokens bind, not requests
    assert not RateLimiter(None, None).limited
    with pytest.raises(ConfigError, match=r"x.requests_per_minute.*> 0"):
        RateLimiter(0, None, name="x")


def test_threads_share_one_limit() -> None:
    clock = FakeClock()
    lim = limiter(clock, rpm=60, tpm=None)  # one a second
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            lim.acquire()
            with lock:
                stamps.append(clock.now)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    # the k-th request is sent no earlier than k seconds in (one in the first bucket)
    assert len(stamps) == 20
    assert all(s >= k - 1e-9 for k, s in enumerate(stamps))


def test_openai_limits_from_the_config() -> None:
    settings = ApiSettings.from_config(
        {
            "requests_per_minute": 500,
            "tokens_per_minute": 30000,
            "endpoints": {"lab": {"base_url": "http://lab:8000/v1", "requests_per_minute": 60}},
        }
    )
    default = settings.endpoint(None)
    assert (default.requests_per_minute, default.tokens_per_minute) == (500, 30000)
    url = settings.endpoint("http://localhost:8000/v1")
    assert url.requests_per_minute == 500
    lab = settings.endpoint("lab")
    assert (lab.requests_per_minute, lab.tokens_per_minute) == (60, None)
    assert lab.limits_key == "backend.openai.endpoints.lab"
    with pytest.raises(ConfigError, match=r"backend.openai.tokens_per_minute"):
        ApiSettings.from_config({"tokens_per_minute": 0})
    bad = ApiSettings.from_config(
        {"endpoints": {"x": {"base_url": "http://x", "tokens_per_minute": -1}}}
    )
    with pytest.raises(ConfigError, match=r"backend.openai.endpoints.x.tokens_per_minute"):
        bad.endpoint("x")
    body = {"messages": [{"role": "user", "content": "x" * 41}], "max_tokens": 16}
    assert estimated_tokens(body) == 11 + 16


# ----------------------------------------------------------------------------------------------
# google: the request function injected


def google(send, clock: FakeClock | None = None, **settings) -> GoogleTranslator:
    s = GoogleSettings(**settings)
    lim = None
    if clock is not None:
        lim = RateLimiter(
            s.requests_per_minute,
            s.characters_per_minute,
            name="translator.google",
            clock=clock,
            sleep=clock.sleep,
        )
    return GoogleTranslator(settings=s, send=send, limiter=lim, sleep=lambda s: None)


def fake_api(log: list[tuple[str, str, int]]):
    """A request function that translates by tagging each text with its target."""
    lock = threading.Lock()

    def send(texts: list[str], source: str, target: str) -> list[str]:
        with lock:
            log.append((source, target, len(texts)))
        return [f"{target}:{t}" for t in texts]

    return send


TEXTS = [f"statement {i}" for i in range(250)]


def test_google_parallel_requests_keep_the_order() -> None:
    in_flight, peak = [0], [0]
    lock = threading.Lock()
    barrier = threading.Barrier(4, timeout=10)
    calls: list[tuple[str, str, int]] = []
    base = fake_api(calls)

    def send(texts: list[str], source: str, target: str) -> list[str]:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            first_four = len(calls) < 4
        if first_four:
            barrier.wait()  # four requests at once, or the test fails here
        try:
            return base(texts, source, target)
        finally:
            with lock:
                in_flight[0] -= 1

    texts = TEXTS + TEXTS[140:150] + ["same", "  "]
    targets = ["de"] * 130 + ["el"] * (len(texts) - 130)
    out = google(send, max_concurrency=4).translate(texts, "en", targets)
    assert out == [
        t if not t.strip() else f"{tgt}:{t}" for t, tgt in zip(texts, targets, strict=True)
    ]
    assert peak[0] == 4
    # 130 German (two requests), 120 unique Greek + "same" (two requests): duplicates sent once
    assert sorted(calls) == [
        ("en", "de", 30),
        ("en", "de", 100),
        ("en", "el", 21),
        ("en", "el", 100),
    ]
    # the same output one request at a time
    assert google(fake_api([]), max_concurrency=1).translate(texts, "en", targets) == out


def test_google_limits_requests_and_characters() -> None:
    clock = FakeClock()
    stamps: list[float] = []

    def send(texts: list[str], source: str, target: str) -> list[str]:
        stamps.append(clock.now)
        return texts[::-1][::-1]

    texts = [f"{i:010d}" for i in range(600)]  # 10 characters each: 6 requests of 1000
    t = google(send, clock, max_concurrency=1, requests_per_minute=120)
    assert t.translate(texts, "en", "fr") == texts
    assert stamps == pytest.approx([0, 0, 0.5, 1.0, 1.5, 2.0])
    clock2, stamps2 = FakeClock(), []

    def send2(texts: list[str], source: str, target: str) -> list[str]:
        stamps2.append(clock2.now)
        return texts

    t2 = google(send2, clock2, max_concurrency=3, characters_per_minute=60_000)  # 1000 a second
    assert t2.translate(texts, "en", "fr") == texts
    assert sorted(stamps2) == pytest.approx([0, 1, 2, 3, 4, 5])


def test_google_retries_then_fails_naming_the_status() -> None:
    attempts: list[int] = []

    def flaky(texts: list[str], source: str, target: str) -> list[str]:
        attempts.append(len(texts))
        if len(attempts) == 1:
            raise urllib.error.HTTPError("u", 429, "Too Many Requests", {}, io.BytesIO(b"slow"))
        return texts

    assert google(flaky).translate(["a", "b"], "en", "de") == ["a", "b"]
    assert attempts == [2, 2]

    sent: list[int] = []

    def refused(texts: list[str], source: str, target: str) -> list[str]:
        sent.append(1)
        raise urllib.error.HTTPError("u", 403, "Forbidden", {}, io.BytesIO(b"bad key"))

    with pytest.raises(RuntimeError, match="Cloud Translation HTTP 403: bad key"):
        google(refused, max_concurrency=1).translate(TEXTS, "en", "de")
    assert len(sent) == 1  # the first failure stops the rest


def test_google_settings_from_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "k")
    t = load_translator(TranslatorSettings("google", google={"max_concurrency": 2}))
    assert isinstance(t, GoogleTranslator) and t.settings.max_concurrency == 2
    assert not t.limiter.limited
    with pytest.raises(ConfigError, match=r"translator.google.max_concurrency"):
        load_translator(TranslatorSettings("google", google={"max_concurrency": 0}))
    with pytest.raises(ConfigError, match=r"translator.google.tokens_per_minute'?: unknown key"):
        load_translator(TranslatorSettings("google", google={"tokens_per_minute": 5}))
