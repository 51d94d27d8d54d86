"""The ``gevent`` executor, in a child process that monkey-patches before importing anything.

Patching must happen first in a real gevent app, so it cannot happen inside the pytest
process (whose threads and sockets already exist); each test runs a small app in a child.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAFETY_NET = 120  # seconds before a hung child counts as a failure (not a speed check)

GEVENT_APP = """
from gevent import monkey

monkey.patch_all()

import io
import json
import sys
import threading

from flask import Flask, request

from flask_store import Store
from tests.queued_remotes import BlockingStore

folder = sys.argv[1]
gate = threading.Event()  # patched: a gevent event
app = Flask(__name__, instance_path=folder + "/instance")
app.config.update(
    STORE_PROVIDER="queued",
    STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": folder + "/local"},
    STORE_QUEUED_REMOTE={"PROVIDER": BlockingStore, "GATE": gate},
    STORE_TRANSFER_EXECUTOR="gevent",
)
store = Store(app)


@app.post("/upload")
def upload():
    return store.Provider().save(request.files["afile"]).name


client = app.test_client()
names = [
    client.post("/upload", data={"afile": (io.BytesIO(b"x%d" % i), f"f{i}.bin")}).text
    for i in range(5)
]
with app.app_context():
    queued = store.Provider()
    report = {
        "names": names,
        "executor": type(queued.executor).__name__,
        # Yields to the transfer greenlets, which run into the frozen remote.
        "entered": queued.remote.entered.wait(60),
        "states_while_frozen": [queued.state(n) for n in names],
        "served_while_frozen": client.get("/flaskstore/f3.bin").data.decode(),
    }
    gate.set()
    report["joined"] = queued.join(60)
    report["states"] = [queued.state(n) for n in names]
    report["remote"] = {k: queued.remote.read(k).decode() for k in queued.remote.keys()}
print(json.dumps(report))
"""


def run_child(script: str, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SAFETY_NET,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_greenlets_upload_after_the_request_returned(tmp_path: Path) -> None:
    report = run_child(GEVENT_APP, str(tmp_path))
    names = [f"f{i}.bin" for i in range(5)]
    assert report["names"] == names
    assert report["executor"] == "GeventExecutor"
    assert report["entered"]  # uploads had started, and were frozen
    assert report["states_while_frozen"] == ["pending"] * 5
    assert report["served_while_frozen"] == "x3"  # from the local copy
    assert report["joined"]
    assert report["states"] == ["done"] * 5
    assert report["remote"] == {name: f"x{i}" for i, name in enumerate(names)}
