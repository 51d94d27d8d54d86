"""Interleaved measurement: every contender, round after round, in a rotating order.

Running contenders side by side (rather than one after another) spreads background noise,
CPU frequency changes and page-cache state evenly over all of them; rotating who goes first
removes any advantage of position. Only medians are reported.
"""

from __future__ import annotations

import gc
import statistics
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

#: One sample: run the operation (possibly a batch of it) and return seconds per operation.
Sampler = Callable[[], float]
#: One operation of a scenario (an upload, a GET); raises when the answer is wrong.
Operation = Callable[[], object]
#: How long one sample should take, at most: enough operations to rise above timer and
#: scheduler noise, few enough that slow contenders (S3 through moto) keep the run short.
SAMPLE_SECONDS = 0.2
#: Prepares a contender for a scenario (untimed, checks correctness) and returns its sampler,
#: or ``None`` when the contender does not offer the feature (a note says why).
Prepare = Callable[[str], Sampler | None]


@dataclass
class Result:
    """What one scenario measured: per-contender samples, errors and notes."""

    key: str
    title: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    #: Single measured values that are not times (bytes of memory, ratios).
    values: dict[str, float] = field(default_factory=dict)

    def median(self, name: str) -> float | None:
        """The median of ``name``'s samples (or its single value), ``None`` if it has none."""
        if name in self.values:
            return self.values[name]
        samples = self.samples.get(name)
        return statistics.median(samples) if samples else None

    def ratio(self, name: str, baseline: str) -> float | None:
        """``name``'s median over the baseline's."""
        mine, base = self.median(name), self.median(baseline)
        if mine is None or not base:
            return None
        return mine / base


def batch_size(operation: Operation, most: int, seconds: float = SAMPLE_SECONDS) -> int:
    """How many ``operation`` calls fill one sample of about ``seconds`` (1 to ``most``).

    Times one call (untimed warm-up for the sample itself); each contender gets its own
    count, and samples are always divided by it, so counts may differ between contenders.
    """
    start = time.perf_counter()
    operation()
    once = time.perf_counter() - start
    return max(1, min(most, int(seconds / once) if once > 0 else most))


def batched(operation: Operation, count: int, after: Callable[[], None] | None = None) -> Sampler:
    """A sampler running ``operation`` ``count`` times: seconds per call.

    ``after`` (cleaning up what the batch stored) runs untimed after each batch.
    """

    def sample() -> float:
        start = time.perf_counter()
        for _ in range(count):
            operation()
        elapsed = time.perf_counter() - start
        if after is not None:
            after()
        return elapsed / count

    return sample


def paired(into: Result, name: str, operation: Operation, beside: Operation, most: int) -> Sampler:
    """A sampler of ``operation`` that also times ``beside`` right before it, into ``into``.

    Both run the same number of times per sample, back to back, so the two medians compare
    under the same conditions (a 304 against a full GET of the same file).
    """
    count = batch_size(operation, most)
    timed, other = batched(operation, count), batched(beside, count)
    into.samples[name] = []

    def sample() -> float:
        into.samples[name].append(other())
        return timed()

    return sample


def describe(exc: BaseException) -> str:
    """A one-line account of an exception, with where it was raised."""
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {frame.filename}:{frame.lineno}" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def rotated(names: Sequence[str], offset: int) -> list[str]:
    """``names`` starting at position ``offset`` (mod its length)."""
    shift = offset % len(names) if names else 0
    return [*names[shift:], *names[:shift]]


def interleaved(
    key: str,
    title: str,
    names: Sequence[str],
    prepare: Prepare,
    rounds: int,
    notes: Mapping[str, str] | None = None,
) -> Result:
    """Prepare every contender, then take ``rounds`` samples of each, interleaved.

    A contender whose preparation or any sample raises is recorded as an error and dropped
    from the scenario: a broken contender never shows up as fast.
    """
    result = Result(key, title, notes=dict(notes or {}))
    samplers: dict[str, Sampler] = {}
    for name in names:
        if name in result.notes:
            continue
        try:
            sampler = prepare(name)
        except Exception as exc:
            result.errors[name] = describe(exc)
            continue
        if sampler is not None:
            samplers[name] = sampler
            result.samples[name] = []
    for index in range(rounds):
        for name in rotated(list(samplers), index):
            if name in result.errors:
                continue
            gc.collect()
            try:
                result.samples[name].append(samplers[name]())
            except Exception as exc:
                result.errors[name] = describe(exc)
    return result
