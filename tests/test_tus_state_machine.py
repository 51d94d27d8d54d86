"""Random sequences of tus requests, checked against the protocol's rules by a model.

Hypothesis drives creations, PATCHes (right and wrong offsets, content types, checksums,
sizes), HEADs and DELETEs on several uploads at once; after every step the server must
answer what the spec says and its offsets must be the model's. A finished upload must be
saved whole, exactly once.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from flask_store import Store
from flask_store.tus.protocol import OFFSET_CONTENT_TYPE

TUS = {"Tus-Resumable": "1.0.0"}
MAX_SIZE = 64


@dataclass
class Model:
    """What the server should know of one upload."""

    url: str
    length: int | None
    data: bytes = b""
    alive: bool = True
    saved_as: str | None = None
    saved: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.length is not None and len(self.data) == self.length


class TusMachine(RuleBasedStateMachine):
    uploads = Bundle("uploads")

    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.TemporaryDirectory()
        root = Path(self.folder.name)
        self.app = Flask(__name__, instance_path=str(root / "instance"))
        self.app.config.update(
            STORE_PATH=str(root / "uploads"),
            STORE_TUS_URL_PREFIX="/files",
            STORE_TUS_ALLOW_ANONYMOUS=True,
            STORE_TUS_MAX_SIZE=MAX_SIZE,
        )
        self.store = Store(self.app)
        self.completed: list[str] = []
        self.store.on_upload_complete(lambda file, upload: self.completed.append(file.key))
        self.client: FlaskClient = self.app.test_client()
        self.models: list[Model] = []
        self.counter = 0

    def teardown(self) -> None:
        self.folder.cleanup()

    @rule(target=uploads, length=st.integers(0, MAX_SIZE) | st.none())
    def create(self, length: int | None) -> Model:
        self.counter += 1
        name = f"f{self.counter}.bin"
        headers = {**TUS, "Upload-Metadata": f"filename {base64.b64encode(name.encode()).decode()}"}
        if length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(length)
        answer = self.client.post("/files/", headers=headers)
        assert answer.status_code == 201
        model = Model(answer.headers["Location"], length, saved_as=name)
        if model.complete:  # an empty file is saved at once: clients send it no PATCH
            model.saved.append(answer.headers["Flask-Store-File"])
        self.models.append(model)
        return model

    @rule(
        model=uploads,
        size=st.integers(0, 40),
        offset_shift=st.sampled_from([0, 0, 0, -1, 1, 7]),
        content_type=st.sampled_from([OFFSET_CONTENT_TYPE] * 4 + ["application/octet-stream"]),
        checksum=st.sampled_from(["none", "none", "right", "wrong"]),
        set_length=st.booleans(),
    )
    def patch(
        self,
        model: Model,
        size: int,
        offset_shift: int,
        content_type: str,
        checksum: str,
        set_length: bool,
    ) -> None:
        offset = len(model.data) + offset_shift
        body = bytes((offset + i) % 251 for i in range(size))
        headers = {**TUS, "Content-Type": content_type, "Upload-Offset": str(max(offset, 0))}
        if checksum != "none":
            digest = hashlib.sha256(body if checksum == "right" else body + b"!").digest()
            headers["Upload-Checksum"] = f"sha256 {base64.b64encode(digest).decode()}"
        declared_length = None
        if set_length and model.length is None:
            declared_length = min(max(offset, 0) + size, MAX_SIZE)
            headers["Upload-Length"] = str(declared_length)
        answer = self.client.patch(model.url, headers=headers, data=body)
        status = answer.status_code

        if content_type != OFFSET_CONTENT_TYPE:
            assert status == 415
            return
        if not model.alive:
            assert status == 404
            return
        if max(offset, 0) != len(model.data):
            assert status == 409
            return
        length = model.length if model.length is not None else declared_length
        room = (MAX_SIZE if length is None else length) - len(model.data)
        if size > room:
            assert status == 413, answer.data  # nothing kept, a length it set included
            return
        if checksum == "wrong" and not model.complete:
            assert status == 460
            return
        assert status == 204, answer.data
        if declared_length is not None:
            model.length = declared_length
        model.data += body
        assert answer.headers["Upload-Offset"] == str(len(model.data))
        if model.complete and not model.saved:
            model.saved.append(answer.headers["Flask-Store-File"])

    @rule(model=uploads)
    def head(self, model: Model) -> None:
        answer = self.client.head(model.url, headers=TUS)
        if not model.alive:
            assert answer.status_code == 404
            return
        assert answer.status_code == 200
        assert answer.headers["Upload-Offset"] == str(len(model.data))
        if model.length is None:
            assert answer.headers["Upload-Defer-Length"] == "1"
        else:
            assert answer.headers["Upload-Length"] == str(model.length)
        if model.complete:  # "every byte arrived" means the file is saved
            assert answer.headers["Flask-Store-File"] == model.saved[0]

    @rule(model=uploads)
    def delete(self, model: Model) -> None:
        answer = self.client.delete(model.url, headers=TUS)
        assert answer.status_code == (204 if model.alive else 404)
        model.alive = False

    @invariant()
    def finished_files_are_whole_and_saved_once(self) -> None:
        expected = sorted(m.saved_as for m in self.models if m.saved and m.saved_as)
        assert sorted(self.completed) == expected
        with self.app.app_context():
            store = self.store.Provider()
            assert sorted(store.keys()) == expected
            for model in self.models:
                if model.saved and model.saved_as:
                    assert store.read(model.saved_as) == model.data


TusMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_tus_state_machine = TusMachine.TestCase
