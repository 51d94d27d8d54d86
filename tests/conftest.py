"""Shared fixtures, and the rule that a skipped test fails under ``CI=true``.

Locally a missing system program (redis-server, chromium) skips its tests with a reason; on CI
the same skip would hide a missing install step, so it is reported as a failure instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from flask_store.stores.base import BaseStore
from tests.stores import STORE_KINDS, StoreKind

# No time limit per example: on a shared, loaded machine a slow example is no failure (the
# project keeps timings out of tests), and Hypothesis's 200 ms deadline made one flaky. Under
# CI=true Hypothesis's own "ci" profile (derandomised, no deadline) stays the parent.
settings.register_profile("flask_store", parent=settings.default, deadline=None)
settings.load_profile("flask_store")

ON_CI = os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if ON_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"Skipped under CI=true, which must run every test: {reason}"


@pytest.fixture(autouse=True)
def _isolated_aws(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test may read real AWS credentials or config, or reach AWS."""
    empty = tmp_path_factory.getbasetemp() / "no-aws-config"
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(params=sorted(STORE_KINDS))
def store_kind(request: pytest.FixtureRequest) -> StoreKind:
    """Every kind of store in turn: the contract suite runs against each."""
    kind: StoreKind = STORE_KINDS[request.param]
    return kind


@pytest.fixture
def store(store_kind: StoreKind, request: pytest.FixtureRequest) -> Iterator[BaseStore]:
    """A fresh, empty store of each kind."""
    with store_kind.make(request) as made:
        yield made
