"""Scenarios run through Flask's test client: saves, serves, 304, Range, collisions.

Every scenario first checks the contender does the job right (the served bytes are the
uploaded bytes, a 304 is a 304, a range is the right slice) and only then times it.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from flask import request
from flask.testing import FlaskClient

from .contenders import BASELINE, Contender
from .payloads import CONTENT_TYPE, FIELD, KIB, MIB, Multipart, random_bytes
from .timing import (
    Result,
    Sampler,
    batch_size,
    batched,
    describe,
    interleaved,
    paired,
    rotated,
)

#: Sizes of the save/serve scenarios, with how many requests make up one sample.
SIZES: Sequence[tuple[str, int, int]] = (
    ("1 KiB", KIB, 200),
    ("1 MiB", MIB, 10),
    ("64 MiB", 64 * MIB, 1),
)
RANGE = (1000, 66535)


class WrongAnswerError(AssertionError):
    """A contender answered wrongly; it is reported as an error, never timed."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise WrongAnswerError(message)


def upload(client: FlaskClient, body: bytes) -> str:
    """POST a prepared multipart body; the URL path the contender serves it at."""
    response = client.post("/upload", data=body, content_type=CONTENT_TYPE)
    expect(response.status_code == 200, f"upload answered {response.status_code}")
    return response.get_data(as_text=True)


def fetch(client: FlaskClient, url: str, headers: Mapping[str, str] | None = None) -> Any:
    """GET ``url`` and read the whole body in the chunks the app sends."""
    response = client.get(url, headers=dict(headers or {}), buffered=False)
    size = 0
    for chunk in response.response:
        size += len(chunk)
    response.close()
    response.received = size  # type: ignore[attr-defined]
    return response


def read_back(client: FlaskClient, url: str) -> bytes:
    response = client.get(url)
    expect(response.status_code == 200, f"GET {url} answered {response.status_code}")
    return response.get_data()


def upload_scenario(
    contenders: Mapping[str, Contender], label: str, size: int, batch: int, rounds: int
) -> Result:
    """Whole upload requests (parse + save + reply) of a ``size``-byte file.

    Each request in a batch sends another filename, and the store is emptied after each
    batch: the common case, where the name is free (:func:`collision_scenario` measures the
    other one).
    """
    data = random_bytes(size)
    bodies = [Multipart.for_file(f"upload-{i}.bin", size).body(data) for i in range(batch)]

    def prepare(name: str) -> Sampler:
        contender = contenders[name]
        client = contender.app.test_client()
        url = upload(client, bodies[0])
        expect(contender.stored(client, url) == data, "stored bytes differ")
        contender.clear()
        sent = itertools.count()

        def send() -> None:
            upload(client, bodies[next(sent) % batch])

        count = batch_size(send, batch)

        def clear() -> None:
            contender.clear()
            nonlocal sent
            sent = itertools.count()

        clear()
        return batched(send, count, clear)

    return interleaved(
        f"upload_{size}", f"upload request, {label}", list(contenders), prepare, rounds
    )


def save_step_scenario(
    contenders: Mapping[str, Contender], label: str, size: int, rounds: int
) -> Result:
    """Only the save call, on an upload Werkzeug has already parsed (as the app would)."""
    data = random_bytes(size)
    body = Multipart.for_file("upload.bin", size).body(data)

    def save_once(contender: Contender) -> tuple[float, str]:
        with contender.app.test_request_context(
            "/upload", method="POST", data=body, content_type=CONTENT_TYPE
        ):
            parsed = request.files[FIELD]  # parsing (and spooling) is not timed
            start = time.perf_counter()
            url = contender.save(parsed)
            return time.perf_counter() - start, url

    def prepare(name: str) -> Sampler:
        contender = contenders[name]
        url = save_once(contender)[1]
        stored = contender.stored(contender.app.test_client(), url)
        expect(stored == data, "stored bytes differ")
        contender.clear()

        def sample() -> float:
            elapsed = save_once(contender)[0]
            contender.clear()
            return elapsed

        return sample

    return interleaved(
        f"save_{size}", f"save step only, {label}", list(contenders), prepare, rounds
    )


def redirect_notes(contenders: Mapping[str, Contender]) -> dict[str, str]:
    """Why contenders that serve by redirecting to a bucket have no serving figures."""
    return {
        name: "redirects to the bucket (302); S3 sends the bytes"
        for name, contender in contenders.items()
        if contender.redirects
    }


def serve_scenario(
    contenders: Mapping[str, Contender], label: str, size: int, batch: int, rounds: int
) -> Result:
    """Whole GET requests for a stored ``size``-byte file, body read to the end."""
    data = random_bytes(size)
    body = Multipart.for_file("serve.bin", size).body(data)

    def prepare(name: str) -> Sampler:
        client = contenders[name].app.test_client()
        url = upload(client, body)
        expect(read_back(client, url) == data, "served bytes differ")

        def get() -> None:
            response = fetch(client, url)
            expect(response.status_code == 200, f"GET answered {response.status_code}")
            expect(response.received == size, f"GET sent {response.received} bytes")

        return batched(get, batch_size(get, batch))

    return interleaved(
        f"serve_{size}",
        f"serve request, {label}",
        list(contenders),
        prepare,
        rounds,
        redirect_notes(contenders),
    )


def not_modified_scenario(
    contenders: Mapping[str, Contender], rounds: int
) -> tuple[Result, Result]:
    """A conditional GET answered 304, against a full GET of the same 1 KiB file.

    Both are timed back to back in each sample, so the comparison shares its conditions.
    """
    data = random_bytes(KIB)
    body = Multipart.for_file("cached.bin", KIB).body(data)
    notes = redirect_notes(contenders)
    full = Result("full_paired", "full GET of the same file (paired with the 304)", notes=notes)
    batch = 200

    def prepare(name: str) -> Sampler:
        client = contenders[name].app.test_client()
        url = upload(client, body)
        response = client.get(url)
        expect(response.get_data() == data, "served bytes differ")
        etag = response.headers.get("ETag")
        expect(bool(etag), "no ETag served")
        headers = {"If-None-Match": str(etag)}

        def revalidate() -> None:
            response = fetch(client, url, headers)
            expect(response.status_code == 304, f"conditional GET answered {response.status_code}")
            expect(response.received == 0, "a 304 with a body")

        def get() -> None:
            response = fetch(client, url)
            expect(response.status_code == 200, f"GET answered {response.status_code}")

        return paired(full, name, revalidate, get, batch)

    result = interleaved(
        "not_modified",
        "conditional GET -> 304, 1 KiB file",
        list(contenders),
        prepare,
        rounds,
        notes,
    )
    full.errors.update(result.errors)
    return result, full


def range_scenario(contenders: Mapping[str, Contender], rounds: int) -> Result:
    """``Range: bytes=1000-66535`` of a 1 MiB file: 206 with 64 KiB."""
    data = random_bytes(MIB)
    body = Multipart.for_file("ranged.bin", MIB).body(data)
    first, last = RANGE
    notes = {
        n: "no Range support (sends the whole file, 200)"
        for n, c in contenders.items()
        if not c.ranges
    }
    notes.update(redirect_notes(contenders))
    headers = {"Range": f"bytes={first}-{last}"}

    def prepare(name: str) -> Sampler:
        client = contenders[name].app.test_client()
        url = upload(client, body)
        response = client.get(url, headers=headers)
        expect(response.status_code == 206, f"Range answered {response.status_code}")
        expect(response.get_data() == data[first : last + 1], "wrong range served")

        def get() -> None:
            response = fetch(client, url, headers)
            expect(response.status_code == 206, f"Range answered {response.status_code}")
            expect(response.received == last + 1 - first, "wrong range length")

        return batched(get, batch_size(get, 100))

    return interleaved(
        "range", "Range request, 64 KiB of a 1 MiB file", list(contenders), prepare, rounds, notes
    )


def collision_scenario(contenders: Mapping[str, Contender], saves: int = 1000) -> Result:
    """``saves`` uploads of one filename into one folder: first 100 against last 100.

    Values are the median seconds per upload of the first and of the last hundred; the
    ratio (last/first) shows whether a save gets dearer as the folder fills. The run takes a
    minute, long enough for the machine's load to drift, so each save is also divided by the
    baseline's save of the same index (taken right beside it, with no name to collide):
    ``name:relative`` is last/first of those quotients, the growth due to the contender alone.
    Every upload must get a URL of its own; the first and last files must keep their bytes.
    """
    data = random_bytes(KIB)
    body = Multipart.for_file("same.txt", KIB).body(data)
    result = Result("collisions", f"{saves} uploads of the same filename")
    clients: dict[str, FlaskClient] = {}
    timings: dict[str, list[float]] = {}
    urls: dict[str, list[str]] = {}
    for name, contender in contenders.items():
        contender.clear()
        clients[name] = contender.app.test_client()
        timings[name], urls[name] = [], []
    for index in range(saves):
        for name in rotated(list(contenders), index):
            if name in result.errors:
                continue
            start = time.perf_counter()
            try:
                urls[name].append(upload(clients[name], body))
            except Exception as exc:
                result.errors[name] = f"save {index}: {describe(exc)}"
                continue
            timings[name].append(time.perf_counter() - start)
    for name, contender in contenders.items():
        if name in result.errors:
            continue
        try:
            check_collisions(contender, clients[name], urls[name], data)
        except Exception as exc:
            result.errors[name] = describe(exc)
            continue
        times = timings[name]
        result.values[f"{name}:first"] = statistics.median(times[:100])
        result.values[f"{name}:last"] = statistics.median(times[-100:])
        result.values[name] = growth(times)
        if BASELINE not in result.errors and len(timings[BASELINE]) == saves:
            relative = [mine / base for mine, base in zip(times, timings[BASELINE], strict=True)]
            result.values[f"{name}:relative"] = growth(relative)
        contender.clear()
    return result


def growth(series: Sequence[float], window: int = 100) -> float:
    """Median of the last ``window`` values over the median of the first ``window``."""
    return statistics.median(series[-window:]) / statistics.median(series[:window])


def check_collisions(
    contender: Contender, client: FlaskClient, urls: list[str], data: bytes
) -> None:
    """Every save got its own URL, and the first and last still serve what was uploaded."""
    expect(len(set(urls)) == len(urls), f"{len(urls) - len(set(urls))} saves reused a URL")
    for url in (urls[0], urls[-1]):
        expect(contender.stored(client, url) == data, f"{url} does not hold the upload")
