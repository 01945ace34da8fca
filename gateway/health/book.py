"""The health book: each provider's outcomes, circuit breaker and learned latency.

One book per gateway process. The router asks it before an attempt
(:meth:`HealthBook.try_acquire`) and tells it the outcome afterwards
(:meth:`HealthBook.record`). Ranking reads an immutable :class:`HealthSnapshot`
and does no I/O. Redis is touched only by :meth:`HealthBook.sync`, which the
server runs in the background through :func:`run_sync_loop`.

Circuit breaker, per provider::

    CLOSED    --failure_threshold consecutive retryable failures--> OPEN
    OPEN      --cooldown_s elapsed, first try_acquire-------------> HALF_OPEN (one probe admitted)
    HALF_OPEN --the probe succeeds--> CLOSED
    HALF_OPEN --the probe fails-----> OPEN (with a fresh cool-down)

Only failures that say something about the provider count. The router passes
``retryable_failure=False`` for a caller's bad input or a refusal, and those
leave the breaker alone. The first result recorded while a probe is in flight
is taken as the probe's result. If a probe never reports (for example, its
caller was cancelled), another probe is admitted one cool-down later.

Learned latency: ``fixed_ms + rtf * audio_s * 1000 + ms_per_char * characters``.
Each provider keeps two series of successful attempts: audio (x = audio seconds,
used whenever ``audio_s > 0``) and text (x = characters). They are kept apart
because one provider may both transcribe and synthesize, and the two sizes do
not share an axis. A series is a weighted least-squares line through
(x, latency) with exponentially decaying weights. We keep exponentially weighted
moving averages (EWMAs) of 1, x, y, x² and xy, where the newest observation has
weight ``alpha = latency_alpha``, so a vendor that slows down is tracked within a
few requests. The line is fitted from these sums::

    slope = cov(x, y) / var(x)        intercept = mean(y) - slope * mean(x)

A slope is only believed once the sizes seen span a range: the largest at least
``3x`` the smallest, in at least two power-of-two size buckets, and the weighted
sizes still varying. Short clips alone say nothing about how a 30-minute file
scales. Until then (and when the fitted slope is negative, which is noise) the
series learns only its level, and the per-unit rate is the declared prior's:
``fixed_ms = mean(y) - prior_rate * mean(x)``, so the prediction is right at
the sizes seen and grows like the prior elsewhere. Where the prior's rate alone
would exceed the measured level, the line goes through the origin and the
level instead. A negative intercept refits the line through the origin. Once a
series has enough observations to be trusted, an observation above
``3 * prediction + 50 ms`` is clipped to that bound (only near the sizes seen
while the slope is unknown). One stalled call then cannot wreck the model, while
a lasting slow-down still pulls it up (by about 1.4x per request at alpha 0.2).
When a provider has both series, ``fixed_ms`` is the mean of the two intercepts
weighted by observation count; a series never observed keeps the prior's rate.
The learned model replaces the declared prior once ``latency_min_observations``
observations exist across the fleet. The smallest and largest size and the
occupied buckets are kept beside the sums (a few numbers per series, whatever
the traffic).

Sharing through Redis (every key starts with the configured prefix)::

    {prefix}health:providers                 SET of provider names any replica reported
    {prefix}health:{name}:breaker            HASH state, at, opened_at, retry_at, consecutive_failures
    {prefix}health:{name}:latency:{series}   HASH n, w, x, y, xx, xy (the EWMA sums),
                                             min_x, max_x, b{k} (size buckets seen)

Shared across the fleet:

- Breaker OPEN and CLOSED transitions. The transition with the newest event time
  wins, and a Lua script merges it atomically. Event times are wall-clock epoch
  seconds, so replicas' clocks are assumed synchronised (NTP); skew only
  reorders transitions that happen within the skew of each other. When one replica
  opens a breaker, every replica stops sending traffic to that vendor within one
  sync interval. A probe's result (re-open or close) reaches the whole fleet in
  the same way.
- Learned latency. Each replica folds its unsent observations into one composed
  EWMA update (a decay factor and deltas). A Lua script applies it to the fleet's
  sums atomically (``S = S * decay + delta``), so concurrent replicas lose no
  updates: the result is as if their batches had arrived one after the other.
  A replica's view is the fleet's sums plus what it has observed since.

Kept per replica:

- Counting consecutive failures. "Consecutive" is ill-defined across
  interleaved replicas, and counting in Redis would add a round trip to every
  attempt. Each replica opens a breaker from its own evidence, then shares the
  OPEN.
- HALF_OPEN and probe admission. Each replica lets at most one probe through per
  cool-down, so R replicas send at most R probes per cool-down. A fleet-wide
  lock would cost a Redis round trip on the request path to save a handful of
  probes.
- Success and failure totals (this replica's traffic, for its metrics).

Redis is optional. Every exchange has a timeout. On RedisError, TimeoutError or
OSError, the book logs a warning and keeps working from its own observations,
and keeps unsent updates for the next sync that succeeds. Pushes are
at-least-once: if a timeout fires after the server has applied a batch, the
batch is sent again. Those few observations then count twice, and the breaker
event, which is idempotent, is applied again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

import structlog
from redis.exceptions import RedisError

from gateway.core.provider_types import LatencyModel
from gateway.settings import BreakerSettings

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = structlog.get_logger(__name__)

_SYNC_ERRORS = (RedisError, TimeoutError, OSError)
# Bound on one observation once a series is trusted: prediction * factor + slack.
_OUTLIER_FACTOR = 3.0
_OUTLIER_SLACK_MS = 50.0
# Below this relative spread of sizes, a slope would be fitted to noise.
_MIN_RELATIVE_SPREAD = 0.01
# A slope is believed once the sizes seen span this ratio, over at least this many power-of-two buckets.
_SPAN_RATIO = 3.0
_SPAN_BUCKETS = 2
# Bucket indices are floor(log2(size)) clamped to this range (1/256 s .. about 190 days, or 16M characters).
_BUCKET_RANGE = (-8, 24)
# Idle providers' keys expire; any push refreshes them.
_KEY_TTL_S = 7 * 24 * 3600
_SUM_FIELDS = ("w", "x", "y", "xx", "xy")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_GAUGE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def breaker_gauge_value(state: BreakerState) -> int:
    """The breaker state as a metric value: 0 closed, 1 half-open, 2 open."""
    return _GAUGE[state]


@dataclass(frozen=True)
class ProviderHealth:
    name: str
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    opened_at: float | None = None  # epoch seconds
    retry_at: float | None = None  # epoch seconds
    successes: int = 0  # this replica's
    failures: int = 0  # this replica's retryable failures
    learned: LearnedLatency | None = None  # None until enough observations
    observations: int = 0  # fleet-wide, as of the last sync


class LatencySource(enum.Enum):
    """Where a latency estimate came from."""

    PRIOR = "prior"  # the provider's declared model: too few observations yet
    FIT = "fit"  # both terms fitted to observations over a range of sizes
    LEVEL = "level"  # the level observed at the sizes seen; the per-unit rate is the prior's


@dataclass(frozen=True)
class LatencyEstimate:
    """The model ranking uses for a provider, and what it rests on."""

    model: LatencyModel
    source: LatencySource
    observations: int  # fleet-wide observations of the series that sized the estimate


@dataclass(frozen=True)
class LearnedLatency:
    """Each observed series' line: its observation count and fit."""

    lines: Mapping[_Series, tuple[int, _Line]]

    def model(self, prior: LatencyModel) -> LatencyModel:
        fixed, weight = 0.0, 0
        rtf, ms_per_char = prior.rtf, prior.ms_per_char
        for series, (n, line) in self.lines.items():
            intercept, slope = line.terms(_prior_slope(series, prior))
            fixed, weight = fixed + intercept * n, weight + n
            if series is _Series.AUDIO:
                rtf = slope / 1000.0
            else:
                ms_per_char = slope
        return LatencyModel(fixed_ms=fixed / weight, rtf=rtf, ms_per_char=ms_per_char)

    def source(self, audio: bool) -> tuple[LatencySource, int]:
        """How the rate of the series that sizes this request was learned, and from how many calls."""
        entry = self.lines.get(_Series.AUDIO if audio else _Series.TEXT)
        if entry is None:
            return LatencySource.PRIOR, 0
        n, line = entry
        return (LatencySource.FIT if line.slope is not None else LatencySource.LEVEL), n


@dataclass(frozen=True, eq=False)
class HealthSnapshot(Mapping[str, ProviderHealth]):
    """What ranking reads: provider name -> health. Providers never seen are healthy."""

    providers: Mapping[str, ProviderHealth] = field(default_factory=dict)
    min_observations: int = 1

    def __getitem__(self, name: str) -> ProviderHealth:
        return self.providers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.providers)

    def __len__(self) -> int:
        return len(self.providers)

    def latency_model(self, name: str, prior: LatencyModel) -> LatencyModel:
        """The learned model once it rests on enough observations, else the declared prior."""
        learned = self._learned(name)
        return prior if learned is None else learned.model(prior)

    def latency(self, name: str, prior: LatencyModel, *, audio: bool) -> LatencyEstimate:
        """The model with its provenance, for a request sized in audio seconds or in characters."""
        learned = self._learned(name)
        if learned is None:
            return LatencyEstimate(prior, LatencySource.PRIOR, 0)
        source, observations = learned.source(audio)
        return LatencyEstimate(learned.model(prior), source, observations)

    def _learned(self, name: str) -> LearnedLatency | None:
        health = self.providers.get(name)
        if health is None or health.learned is None or health.observations < self.min_observations:
            return None
        return health.learned

    def blocked(self, name: str, now: float) -> str | None:
        """Why the breaker keeps this provider out at ``now`` (epoch seconds), or None."""
        health = self.providers.get(name)
        if health is None or health.state is not BreakerState.OPEN or health.retry_at is None:
            return None
        if now >= health.retry_at:
            return None  # a probe may go through
        failures = health.consecutive_failures
        noun = "failure" if failures == 1 else "failures"
        wait = math.ceil(health.retry_at - now)
        return f"circuit breaker open after {failures} consecutive {noun}; retry in {wait} s"


# -- learning (pure) ------------------------------------------------------


class _Series(enum.Enum):
    AUDIO = "audio"  # x = audio seconds; slope / 1000 is the rtf
    TEXT = "text"  # x = characters; slope is ms per character


def _prior_slope(series: _Series, prior: LatencyModel) -> float:
    """The prior's rate on the series' axis: ms per audio second, or ms per character."""
    return prior.rtf * 1000.0 if series is _Series.AUDIO else prior.ms_per_char


def _bucket(x: float) -> int:
    low, high = _BUCKET_RANGE
    if x <= 0:
        return low
    return min(max(math.floor(math.log2(x)), low), high)


@dataclass(frozen=True)
class _Line:
    """A series' fitted line; ``slope`` is None while the sizes seen cannot tell it."""

    intercept_ms: float
    slope: float | None  # ms per unit (audio second or character), non-negative
    mean_x: float
    mean_ms: float

    def terms(self, prior_slope: float) -> tuple[float, float]:
        """(fixed_ms, slope), borrowing the prior's rate while the slope is unknown."""
        if self.slope is not None:
            return self.intercept_ms, self.slope
        level = max(self.mean_ms, 0.0)
        if prior_slope * self.mean_x <= level:
            # Right at the sizes seen; grows like the prior away from them.
            return level - prior_slope * self.mean_x, prior_slope
        # The prior's rate alone would overshoot what was measured: proportional to size instead.
        return 0.0, level / self.mean_x

    def clip_bound(self, x: float) -> float | None:
        """The most one observation at size ``x`` may count for; None where the line can't tell."""
        if self.slope is not None:
            return _OUTLIER_FACTOR * (self.intercept_ms + self.slope * x) + _OUTLIER_SLACK_MS
        if x <= 2.0 * self.mean_x:
            return _OUTLIER_FACTOR * max(self.mean_ms, 0.0) + _OUTLIER_SLACK_MS
        return None  # a bigger input than seen may well be slower: not an outlier


@dataclass(frozen=True)
class _Ewma:
    """EWMA sums of 1, x, y, x² and xy, or a batch of updates to such sums; plus the sizes seen.

    Applying a batch to sums S gives ``S * decay + delta`` for every sum, so
    batches compose, and a replica's unsent observations fold into the fleet's
    sums in one step. The smallest and largest size and the occupied size
    buckets merge by min, max and union, which compose in any order.
    """

    decay: float = 1.0
    n: int = 0
    w: float = 0.0
    x: float = 0.0
    y: float = 0.0
    xx: float = 0.0
    xy: float = 0.0
    min_x: float = math.inf
    max_x: float = -math.inf
    buckets: frozenset[int] = frozenset()

    @classmethod
    def observation(cls, x: float, y: float, alpha: float) -> _Ewma:
        return cls(
            1.0 - alpha,
            1,
            alpha,
            alpha * x,
            alpha * y,
            alpha * x * x,
            alpha * x * y,
            x,
            x,
            frozenset({_bucket(x)}),
        )

    def then(self, later: _Ewma) -> _Ewma:
        d = later.decay
        return _Ewma(
            decay=self.decay * d,
            n=self.n + later.n,
            w=self.w * d + later.w,
            x=self.x * d + later.x,
            y=self.y * d + later.y,
            xx=self.xx * d + later.xx,
            xy=self.xy * d + later.xy,
            min_x=min(self.min_x, later.min_x),
            max_x=max(self.max_x, later.max_x),
            buckets=self.buckets | later.buckets,
        )

    def sums(self) -> tuple[float, ...]:
        return (self.w, self.x, self.y, self.xx, self.xy)

    def spans_sizes(self) -> bool:
        """Whether the sizes seen are spread enough for a per-unit rate to mean anything."""
        return len(self.buckets) >= _SPAN_BUCKETS and self.max_x >= _SPAN_RATIO * self.min_x

    def fit(self) -> _Line | None:
        """The weighted least-squares line, both terms non-negative; None without data."""
        if self.n == 0 or self.w <= 0:
            return None
        mean_x, mean_y = self.x / self.w, self.y / self.w
        var_x = self.xx / self.w - mean_x * mean_x
        level = _Line(max(mean_y, 0.0), None, mean_x, mean_y)
        # Recent weights may sit on one size even after a wide span long ago: check both.
        if not self.spans_sizes() or var_x <= (_MIN_RELATIVE_SPREAD * mean_x) ** 2 + 1e-12:
            return level
        slope = (self.xy / self.w - mean_x * mean_y) / var_x
        if slope < 0:
            return level  # bigger inputs answered faster: noise, not physics
        intercept = mean_y - slope * mean_x
        if intercept < 0:
            return _Line(0.0, max(self.xy / self.xx, 0.0), mean_x, mean_y)
        return _Line(intercept, slope, mean_x, mean_y)


@dataclass
class _Learning:
    fleet: _Ewma = field(default_factory=_Ewma)  # the fleet's sums at the last exchange
    sending: _Ewma = field(default_factory=_Ewma)  # pushed, not yet confirmed
    unsent: _Ewma = field(default_factory=_Ewma)  # observed since

    def view(self) -> _Ewma:
        return self.fleet.then(self.sending).then(self.unsent)


def _learned_model(learning: Mapping[_Series, _Learning]) -> tuple[LearnedLatency | None, int]:
    views = {series: state.view() for series, state in learning.items()}
    lines: dict[_Series, tuple[int, _Line]] = {}
    for series, view in views.items():
        line = view.fit()
        if line is not None:
            lines[series] = (view.n, line)
    observations = sum(view.n for view in views.values())
    if not lines:
        return None, observations
    return LearnedLatency(MappingProxyType(lines)), observations


# -- breaker state (pure) -------------------------------------------------


@dataclass(frozen=True)
class _BreakerEvent:
    """A transition the fleet shares: OPEN with its cool-down, or CLOSED."""

    state: BreakerState
    at: float  # epoch seconds; the newest event wins
    consecutive_failures: int = 0
    retry_at: float | None = None


@dataclass
class _ProviderState:
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    opened_at: float | None = None
    retry_at: float | None = None
    probe_in_flight: bool = False
    probe_started_at: float = 0.0
    successes: int = 0
    failures: int = 0
    # Time of the newest shared transition applied here, this replica's or the fleet's.
    event_at: float = -math.inf
    unsent_event: _BreakerEvent | None = None
    learning: dict[_Series, _Learning] = field(default_factory=lambda: {s: _Learning() for s in _Series})

    def apply(self, event: _BreakerEvent) -> None:
        self.event_at = event.at
        self.state = event.state
        if event.state is BreakerState.OPEN:
            self.opened_at, self.retry_at = event.at, event.retry_at
            self.consecutive_failures = event.consecutive_failures
        else:
            self.opened_at = self.retry_at = None
            self.consecutive_failures = 0
            self.probe_in_flight = False


@dataclass(frozen=True)
class _Outgoing:
    name: str
    event: _BreakerEvent | None
    batches: Mapping[_Series, _Ewma]


@dataclass(frozen=True)
class _FleetView:
    event: _BreakerEvent | None
    sums: Mapping[_Series, _Ewma]


class HealthBook:
    """Outcomes, breakers and learned latency of every provider, for one gateway process."""

    def __init__(self, settings: BreakerSettings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._providers: dict[str, _ProviderState] = {}
        self._snapshot: HealthSnapshot | None = None
        self._sync_lock = asyncio.Lock()
        self._fleet_reachable: bool | None = None  # only to log changes, not every failed sync

    # -- request path (no I/O) ---------------------------------------------

    def now(self) -> float:
        """The book's clock (epoch seconds): what breaker cool-downs are measured against."""
        return self._clock()

    def snapshot(self) -> HealthSnapshot:
        if self._snapshot is None:
            self._snapshot = HealthSnapshot(
                MappingProxyType({name: self._health(name, p) for name, p in self._providers.items()}),
                self._settings.latency_min_observations,
            )
        return self._snapshot

    def try_acquire(self, name: str) -> bool:
        """May one attempt go to ``name`` now? Admits a single probe once the cool-down is over."""
        p = self._providers.get(name)
        if p is None or p.state is BreakerState.CLOSED:
            return True
        if p.state is BreakerState.OPEN:
            if p.retry_at is not None and self._clock() < p.retry_at:
                return False
            p.state = BreakerState.HALF_OPEN
            self._changed()
        now = self._clock()
        # A probe whose result never came (its caller was cancelled) must not wedge the breaker.
        if p.probe_in_flight and now - p.probe_started_at < self._settings.cooldown_s:
            return False
        p.probe_in_flight, p.probe_started_at = True, now
        return True

    def record(
        self,
        name: str,
        ok: bool,
        latency_ms: float,
        audio_s: float = 0.0,
        characters: int = 0,
        retryable_failure: bool = True,
    ) -> None:
        """One attempt's outcome. Non-retryable failures (the caller's fault) are not counted."""
        p = self._provider(name)
        probe, p.probe_in_flight = p.probe_in_flight, False
        if ok:
            p.successes += 1
            self._learn(p, latency_ms, audio_s, characters)
            if probe and p.state is not BreakerState.CLOSED:
                self._transition(name, p, _BreakerEvent(BreakerState.CLOSED, self._clock()))
            elif p.state is BreakerState.CLOSED:
                p.consecutive_failures = 0
        elif retryable_failure:
            p.failures += 1
            # Late results of attempts admitted before the breaker opened don't extend the cool-down.
            if probe or p.state is BreakerState.CLOSED:
                p.consecutive_failures += 1
                if probe or p.consecutive_failures >= self._settings.failure_threshold:
                    now = self._clock()
                    event = _BreakerEvent(
                        BreakerState.OPEN, now, p.consecutive_failures, now + self._settings.cooldown_s
                    )
                    self._transition(name, p, event)
        self._changed()

    # -- fleet exchange ----------------------------------------------------

    async def sync(self, redis: Redis, prefix: str, *, timeout_s: float = 1.0) -> bool:
        """Push this replica's new observations and transitions, then pull the fleet's view.

        Returns True when both directions succeeded. Never raises for Redis trouble.
        """
        async with self._sync_lock:
            outgoing = self._take_unsent()
            try:
                async with asyncio.timeout(timeout_s):
                    names = await _push(redis, prefix, outgoing)
            except _SYNC_ERRORS as exc:
                self._return_unsent(outgoing)
                self._note_sync(prefix, exc)
                return False
            except BaseException:
                # Cancelled at shutdown, or a bug: keep the updates for the next exchange.
                self._return_unsent(outgoing)
                raise
            self._confirm_sent(outgoing)
            try:
                async with asyncio.timeout(timeout_s):
                    fleet = await _pull(redis, prefix, names)
            except _SYNC_ERRORS as exc:
                self._note_sync(prefix, exc)
                return False
            for name, view in fleet.items():
                self._merge_fleet(name, view)
            self._note_sync(prefix, None)
            return True

    # -- internals -----------------------------------------------------------

    def _provider(self, name: str) -> _ProviderState:
        p = self._providers.get(name)
        if p is None:
            p = self._providers[name] = _ProviderState()
            self._changed()
        return p

    def _changed(self) -> None:
        self._snapshot = None

    def _health(self, name: str, p: _ProviderState) -> ProviderHealth:
        learned, observations = _learned_model(p.learning)
        if observations < self._settings.latency_min_observations:
            learned = None
        return ProviderHealth(
            name=name,
            state=p.state,
            consecutive_failures=p.consecutive_failures,
            opened_at=p.opened_at,
            retry_at=p.retry_at,
            successes=p.successes,
            failures=p.failures,
            learned=learned,
            observations=observations,
        )

    def _learn(self, p: _ProviderState, latency_ms: float, audio_s: float, characters: int) -> None:
        series = _Series.AUDIO if audio_s > 0 else _Series.TEXT
        x = audio_s if series is _Series.AUDIO else float(characters)
        y = max(latency_ms, 0.0)
        learning = p.learning[series]
        view = learning.view()
        line = view.fit()
        if line is not None and view.n >= self._settings.latency_min_observations:
            bound = line.clip_bound(x)
            if bound is not None:
                y = min(y, bound)
        learning.unsent = learning.unsent.then(_Ewma.observation(x, y, self._settings.latency_alpha))

    def _transition(self, name: str, p: _ProviderState, event: _BreakerEvent) -> None:
        p.apply(event)
        p.unsent_event = event
        if event.state is BreakerState.OPEN:
            log.warning(
                "breaker.opened",
                provider=name,
                consecutive_failures=event.consecutive_failures,
                cooldown_s=self._settings.cooldown_s,
            )
        else:
            log.info("breaker.closed", provider=name)

    def _take_unsent(self) -> list[_Outgoing]:
        outgoing: list[_Outgoing] = []
        for name, p in self._providers.items():
            batches = {s: state.unsent for s, state in p.learning.items() if state.unsent.n > 0}
            if p.unsent_event is None and not batches:
                continue
            for series in batches:
                # Still part of the view while in flight: ranking must not see them vanish.
                learning = p.learning[series]
                learning.sending, learning.unsent = learning.unsent, _Ewma()
            outgoing.append(_Outgoing(name, p.unsent_event, batches))
            p.unsent_event = None
        return outgoing

    def _return_unsent(self, outgoing: list[_Outgoing]) -> None:
        for item in outgoing:
            p = self._providers[item.name]
            if p.unsent_event is None:  # a newer transition since would supersede it
                p.unsent_event = item.event
            for series in item.batches:
                learning = p.learning[series]
                learning.unsent = learning.sending.then(learning.unsent)
                learning.sending = _Ewma()

    def _confirm_sent(self, outgoing: list[_Outgoing]) -> None:
        for item in outgoing:
            for series in item.batches:
                learning = self._providers[item.name].learning[series]
                # The pull that follows replaces this with the fleet's sums, which include the batch.
                learning.fleet = learning.fleet.then(learning.sending)
                learning.sending = _Ewma()

    def _merge_fleet(self, name: str, view: _FleetView) -> None:
        p = self._provider(name)
        event = view.event
        if event is not None and event.at > p.event_at:
            p.apply(event)
            log.info("breaker.fleet_update", provider=name, state=event.state.value)
        for series, sums in view.sums.items():
            p.learning[series].fleet = sums
        self._changed()

    def _note_sync(self, prefix: str, exc: BaseException | None) -> None:
        if exc is None:
            if self._fleet_reachable is False:
                log.info("health.sync_restored", prefix=prefix)
            self._fleet_reachable = True
            return
        # Warn when the fleet becomes unreachable; repeating it every interval would drown the logs.
        emit = log.warning if self._fleet_reachable is not False else log.debug
        emit("health.sync_failed", prefix=prefix, error=type(exc).__name__)
        self._fleet_reachable = False


async def run_sync_loop(
    book: HealthBook,
    redis: Redis,
    prefix: str,
    interval_s: float,
    stop: asyncio.Event,
    *,
    timeout_s: float = 1.0,
) -> None:
    """Exchange with the fleet every ``interval_s`` until ``stop`` is set, then once more.

    The last exchange shares transitions recorded just before shutdown.
    """
    while not stop.is_set():
        await _sync_guarded(book, redis, prefix, timeout_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
    await _sync_guarded(book, redis, prefix, timeout_s)


async def _sync_guarded(book: HealthBook, redis: Redis, prefix: str, timeout_s: float) -> None:
    try:
        await book.sync(redis, prefix, timeout_s=timeout_s)
    except Exception:
        # A bug must not silently end fleet sharing for the life of the process.
        log.exception("health.sync_crashed", prefix=prefix)


# -- Redis I/O -------------------------------------------------------------

# KEYS[1]: a latency hash. ARGV: ttl, decay, n, min_x, max_x, the number of (field, delta) pairs,
# those pairs, then the names of the size buckets seen.
# Read-modify-write in one script so concurrent replicas never lose an update.
_MERGE_LATENCY = """
local decay = tonumber(ARGV[2])
redis.call('HINCRBY', KEYS[1], 'n', ARGV[3])
local low = redis.call('HGET', KEYS[1], 'min_x')
if low == false or tonumber(ARGV[4]) < tonumber(low) then redis.call('HSET', KEYS[1], 'min_x', ARGV[4]) end
local high = redis.call('HGET', KEYS[1], 'max_x')
if high == false or tonumber(ARGV[5]) > tonumber(high) then redis.call('HSET', KEYS[1], 'max_x', ARGV[5]) end
local last = 6 + 2 * tonumber(ARGV[6])
for i = 7, last, 2 do
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  redis.call('HSET', KEYS[1], ARGV[i], string.format('%.17g', current * decay + tonumber(ARGV[i + 1])))
end
for i = last + 1, #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], '1')
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""
_BUCKET_FIELD = "b"

# KEYS[1]: a breaker hash. ARGV: ttl, state, at, opened_at, retry_at, consecutive_failures.
# The newest transition wins whatever order replicas report in.
_MERGE_BREAKER = """
local current = redis.call('HGET', KEYS[1], 'at')
if current == false or tonumber(ARGV[3]) > tonumber(current) then
  redis.call('HSET', KEYS[1], 'state', ARGV[2], 'at', ARGV[3], 'opened_at', ARGV[4],
             'retry_at', ARGV[5], 'consecutive_failures', ARGV[6])
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


def _names_key(prefix: str) -> str:
    return f"{prefix}health:providers"


def _breaker_key(prefix: str, name: str) -> str:
    return f"{prefix}health:{name}:breaker"


def _latency_key(prefix: str, name: str, series: _Series) -> str:
    return f"{prefix}health:{name}:latency:{series.value}"


def _num(value: float | None) -> str:
    return "" if value is None else repr(value)


async def _push(redis: Redis, prefix: str, outgoing: list[_Outgoing]) -> list[str]:
    """Merge this replica's updates into the fleet; return every provider name the fleet knows."""
    pipe = redis.pipeline(transaction=False)
    for item in outgoing:
        pipe.sadd(_names_key(prefix), item.name)
        if item.event is not None:
            e = item.event
            opened_at = e.at if e.state is BreakerState.OPEN else None
            pipe.eval(
                _MERGE_BREAKER,
                1,
                _breaker_key(prefix, item.name),
                _KEY_TTL_S,
                e.state.value,
                repr(e.at),
                _num(opened_at),
                _num(e.retry_at),
                e.consecutive_failures,
            )
        for series, batch in item.batches.items():
            pairs = [v for pair in zip(_SUM_FIELDS, map(repr, batch.sums()), strict=True) for v in pair]
            buckets = [f"{_BUCKET_FIELD}{k}" for k in sorted(batch.buckets)]
            key = _latency_key(prefix, item.name, series)
            pipe.eval(
                _MERGE_LATENCY,
                1,
                key,
                _KEY_TTL_S,
                repr(batch.decay),
                batch.n,
                repr(batch.min_x),
                repr(batch.max_x),
                len(_SUM_FIELDS),
                *pairs,
                *buckets,
            )
    if outgoing:
        pipe.expire(_names_key(prefix), _KEY_TTL_S)
    pipe.smembers(_names_key(prefix))
    results = await pipe.execute()
    return sorted(_text(name) for name in results[-1])


async def _pull(redis: Redis, prefix: str, names: list[str]) -> dict[str, _FleetView]:
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(_breaker_key(prefix, name))
        for series in _Series:
            pipe.hgetall(_latency_key(prefix, name, series))
    results = iter(await pipe.execute())
    fleet: dict[str, _FleetView] = {}
    for name in names:
        event = _parse_event(_decoded(next(results)))
        sums = {series: _parse_sums(_decoded(next(results))) for series in _Series}
        fleet[name] = _FleetView(event, {s: v for s, v in sums.items() if v is not None})
    return fleet


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decoded(raw: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


def _parse_event(raw: Mapping[str, str]) -> _BreakerEvent | None:
    """A fleet breaker hash; None when absent or unreadable (a foreign or older writer)."""
    try:
        state = BreakerState(raw["state"])
        at = float(raw["at"])
        retry_at = float(raw["retry_at"]) if raw.get("retry_at") else None
        failures = int(raw.get("consecutive_failures") or 0)
    except (KeyError, ValueError):
        return None
    if state is BreakerState.HALF_OPEN or (state is BreakerState.OPEN and retry_at is None):
        return None
    return _BreakerEvent(state, at, failures, retry_at)


def _parse_sums(raw: Mapping[str, str]) -> _Ewma | None:
    if not raw:
        return None
    try:
        n = int(raw["n"])
        w, x, y, xx, xy = (float(raw[f]) for f in _SUM_FIELDS)
        # Absent in sums written before sizes were tracked: such a series learns its level until it spans.
        min_x, max_x = float(raw.get("min_x", "inf")), float(raw.get("max_x", "-inf"))
        buckets = frozenset(
            int(name[len(_BUCKET_FIELD) :])
            for name in raw
            if name.startswith(_BUCKET_FIELD) and name[len(_BUCKET_FIELD) :].lstrip("-").isdigit()
        )
    except (KeyError, ValueError):
        return None
    return _Ewma(n=n, w=w, x=x, y=y, xx=xx, xy=xy, min_x=min_x, max_x=max_x, buckets=buckets)
