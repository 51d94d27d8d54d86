"""Zero-copy saves: large uploads spooled into the store's folder and named in place.

Spool files have no name (``O_TMPFILE``) until a save names them; where the file system
cannot make such files they are hidden named files, renamed into place. Tests that hold for
both run twice (``spool_kind``): the second time ``O_TMPFILE`` is refused as on such a file
system. The cross-file-system fallback is exercised for real where ``/dev/shm`` is a
different device from the test's temporary folder (a spool file made there cannot be linked
or renamed into the store), and, on every machine, by making the one ``linkat`` or
``os.rename`` that moves the spool fail with EXDEV.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Request, request
from werkzeug.datastructures import FileStorage

from flask_store import Store, unnamed_files
from flask_store.exceptions import FileExistsInStoreError
from flask_store.spooling import (
    IN_MEMORY_LIMIT,
    SMALL_SPOOLS_PER_REQUEST,
    TEMP_PREFIX,
    WRITE_BUFFER,
    SpoolFile,
)
from flask_store.stores.local import LocalStore
from tests.stores import run_python

BIG = os.urandom(3 * IN_MEMORY_LIMIT + 123)
SMALL = os.urandom(4096)


def temp_files(folder: Path) -> list[str]:
    """Every Flask-Store temporary file under ``folder``, however deep."""
    return sorted(
        os.path.join(dirpath, name)
        for dirpath, _, names in os.walk(folder)
        for name in names
        if name.startswith(TEMP_PREFIX)
    )


def other_device_folder(tmp_path: Path) -> Path | None:
    """A writable folder on another file system than ``tmp_path`` (``/dev/shm``), if any."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        return None
    if shm.stat().st_dev == tmp_path.stat().st_dev:
        return None
    return shm


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


def refuse_unnamed_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``O_TMPFILE`` fail as on a file system without it (vfat, older NFS, non-Linux):
    spool files are then hidden named files, and the store writes named temporary files."""

    def refused(folder: str, **options: Any) -> int:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP), folder)

    monkeypatch.setattr(unnamed_files, "open_unnamed", refused)


@pytest.fixture(params=["unnamed", "named"])
def spool_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each kind of spool file: unnamed, and named where the file system makes no unnamed."""
    if request.param == "named":
        refuse_unnamed_files(monkeypatch)
    return str(request.param)


#: Run a test with each kind of spool file (see ``spool_kind``).
BOTH_KINDS = pytest.mark.usefixtures("spool_kind")


@pytest.fixture
def named_spools(monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_unnamed_files(monkeypatch)


@pytest.fixture
def seen() -> dict[str, Any]:
    """What the upload view observed about the stream Werkzeug gave it."""
    return {}


def make_app(root: Path, seen: dict[str, Any], **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(STORE_PATH=str(root), **config)
    store = Store(app)

    @app.post("/upload")
    def upload() -> str:
        upload = request.files["file"]
        stream = upload.stream
        seen["spooled"] = isinstance(stream, SpoolFile)
        if isinstance(stream, SpoolFile):
            spooled = os.fstat(stream.fileno())
            seen["inode"], seen["links"] = spooled.st_ino, spooled.st_nlink
        provider = store.Provider(
            request.form.get("store") or None, destination=request.form.get("folder") or None
        )
        saved = provider.save(upload)
        seen["stream"] = stream
        seen["size"] = saved.size
        return saved.name

    @app.post("/ignore")
    def ignore() -> str:
        seen["spooled"] = isinstance(request.files["file"].stream, SpoolFile)
        return "not saved"

    return app


def post(app: Flask, path: str, data: bytes, **form: str) -> tuple[int, str]:
    client = app.test_client()
    response = client.post(path, data={"file": (io.BytesIO(data), "big.bin"), **form})
    return response.status_code, response.get_data(as_text=True)


def test_large_upload_is_moved_not_copied(
    root: Path, seen: dict[str, Any], spool_kind: str
) -> None:
    app = make_app(root, seen)
    status, key = post(app, "/upload", BIG)
    assert status == 200, key
    assert seen["spooled"] is True
    assert seen["links"] == (0 if spool_kind == "unnamed" else 1)  # no name until saved
    stored = root / key
    assert stored.read_bytes() == BIG
    # The very file Werkzeug wrote became the stored file: no second copy was made.
    assert stored.stat().st_ino == seen["inode"]
    assert stored.stat().st_nlink == 1
    assert temp_files(root) == []
    assert LocalStore(path=str(root)).file(key).filename == "big.bin"


@BOTH_KINDS
def test_upload_smaller_than_the_write_buffer_is_moved_whole(
    root: Path, seen: dict[str, Any]
) -> None:
    # Spooled, yet small enough to sit in the spool's write buffer until the move.
    data = BIG[: (IN_MEMORY_LIMIT + WRITE_BUFFER) // 2]
    app = make_app(root, seen)
    status, key = post(app, "/upload", data)
    assert status == 200, key
    assert seen["spooled"] is True
    assert (root / key).read_bytes() == data
    assert (root / key).stat().st_ino == seen["inode"]
    assert seen["size"] == len(data)  # the size recorded at save time, after the flush
    assert temp_files(root) == []


@BOTH_KINDS
def test_pieces_of_odd_sizes_are_moved_byte_for_byte(root: Path) -> None:
    """As Werkzeug's parser writes: pieces cut wherever a boundary might start."""
    data = os.urandom(3 * WRITE_BUFFER + 12345)
    sizes = [65531, 1, 4093, WRITE_BUFFER + 3, 70000]
    with SpoolFile(str(root.parent)) as spool:
        inode = os.fstat(spool.fileno()).st_ino
        offset = 0
        while offset < len(data):
            size = sizes[offset % len(sizes)]
            spool.write(data[offset : offset + size])
            offset += size
        spool.seek(0)
        saved = LocalStore(path=str(root)).save(FileStorage(spool, "odd.bin"))
    assert saved.size == len(data)
    assert Path(saved.absolute_path()).read_bytes() == data
    assert os.stat(saved.absolute_path()).st_ino == inode
    assert temp_files(root.parent) == []


@BOTH_KINDS
def test_moved_upload_into_a_subfolder(root: Path, seen: dict[str, Any]) -> None:
    app = make_app(root, seen)
    status, key = post(app, "/upload", BIG, folder="a/b")
    assert status == 200, key
    assert key == "a/b/big.bin"
    assert (root / key).read_bytes() == BIG
    assert (root / key).stat().st_ino == seen["inode"]
    assert temp_files(root) == []


@BOTH_KINDS
def test_colliding_moved_uploads_get_their_own_files(root: Path, seen: dict[str, Any]) -> None:
    app = make_app(root, seen)
    keys = [post(app, "/upload", BIG[:-i] if i else BIG)[1] for i in range(3)]
    assert len(set(keys)) == 3
    assert [len((root / key).read_bytes()) for key in keys] == [len(BIG) - i for i in range(3)]
    assert temp_files(root) == []


@pytest.fixture
def names_given(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the target of every ``os.link`` and ``os.rename`` that succeeds: each name a
    save gives."""
    given: list[str] = []
    link, rename = os.link, os.rename

    def recording_link(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        link(src, dst, *args, **kwargs)
        given.append(os.fspath(dst))

    def recording_rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        rename(src, dst, *args, **kwargs)
        given.append(os.fspath(dst))

    monkeypatch.setattr(os, "link", recording_link)
    monkeypatch.setattr(os, "rename", recording_rename)
    return given


@pytest.mark.parametrize("folder", [None, "new/sub"], ids=["top", "new-subfolder"])
def test_an_unnamed_spool_is_named_straight_under_its_key(
    root: Path, names_given: list[str], folder: str | None
) -> None:
    """Saved without replacing a file, an unnamed spool gets one name, its key: no hidden
    name that a worker killed inside save() would leave behind, and one link less."""
    store = LocalStore(path=str(root))  # its probe of the file system names a file
    if not store.unnamed_writes:
        pytest.skip("this file system makes no unnamed files")
    names_given.clear()
    with spool_with(root, BIG) as spool:
        inode = os.fstat(spool.fileno()).st_ino
        saved = (store.at(folder) if folder else store).save(FileStorage(spool, "big.bin"))
        assert names_given == [saved.absolute_path()]
    stored = os.stat(saved.absolute_path())
    assert (stored.st_ino, stored.st_nlink, stored.st_mode & 0o777) == (
        inode,
        1,
        store.file_mode,
    )
    assert saved.read() == BIG and store.file(saved.key).filename == "big.bin"
    assert temp_files(root) == []


def test_an_unnamed_spool_whose_key_is_taken_is_named_under_the_next(
    root: Path, names_given: list[str]
) -> None:
    store = LocalStore(path=str(root))
    if not store.unnamed_writes:
        pytest.skip("this file system makes no unnamed files")
    taken = store.save(b"first", name="big.bin")
    names_given.clear()  # the probe's name and the first file's
    with spool_with(root, BIG) as spool:
        saved = store.save(FileStorage(spool, "big.bin"))
    assert saved.key != taken.key
    assert names_given == [saved.absolute_path()]
    assert saved.read() == BIG and taken.read() == b"first"
    assert temp_files(root) == []


@BOTH_KINDS
def test_an_overwriting_save_of_a_spool_replaces_the_file(root: Path) -> None:
    store = LocalStore(path=str(root), on_conflict="overwrite")
    store.save(b"old", name="big.bin")
    with spool_with(root, BIG) as spool:
        inode = os.fstat(spool.fileno()).st_ino
        saved = store.save(FileStorage(spool, "big.bin"))
    assert saved.key == "big.bin" and saved.read() == BIG
    assert os.stat(saved.absolute_path()).st_ino == inode
    assert temp_files(root) == []


@BOTH_KINDS
def test_saved_stream_is_read_only_and_at_its_end(root: Path, seen: dict[str, Any]) -> None:
    app = make_app(root, seen)
    post(app, "/upload", BIG)
    stream = seen["stream"]
    assert stream.closed  # Flask closed the request's files at the end of the request
    spool = SpoolFile(str(root))
    spool.write(BIG)
    spool.seek(0)
    saved = LocalStore(path=str(root)).save(FileStorage(spool, "x.bin"))
    assert spool.tell() == len(BIG)
    with pytest.raises(io.UnsupportedOperation):
        spool.write(b"change the stored file")
    spool.close()
    assert saved.read() == BIG
    assert temp_files(root) == []


def test_small_upload_keeps_werkzeug_behaviour(root: Path, seen: dict[str, Any]) -> None:
    app = make_app(root, seen)
    status, key = post(app, "/upload", SMALL)
    assert status == 200
    assert seen["spooled"] is False
    assert (root / key).read_bytes() == SMALL
    assert temp_files(root) == []


def count_spools(app: Flask, seen: dict[str, Any]) -> None:
    """Add ``/parts`` to ``app``: it records how many of the files posted were spooled."""

    @app.post("/parts")
    def parts() -> str:
        files = request.files.getlist("file")
        seen["spooled"] = sum(isinstance(upload.stream, SpoolFile) for upload in files)
        seen["sizes"] = {len(upload.read()) for upload in files}
        return str(len(files))


def test_a_flood_of_small_file_parts_is_left_to_werkzeug(root: Path, seen: dict[str, Any]) -> None:
    """A request over the in-memory limit whose parts declare no size: each part could be
    large, so it is spooled, but a client sending hundreds of tiny ones must not make the
    worker hold a descriptor (and a write buffer) for each, where Werkzeug keeps them in
    memory: once a few spooled parts turned out small, the rest are Werkzeug's."""
    app = make_app(root, seen)
    count_spools(app, seen)
    files = [(io.BytesIO(b"tiny"), f"{number}.bin") for number in range(300)]
    pad = (io.BytesIO(BIG[:IN_MEMORY_LIMIT]), "pad.bin")  # a form field that large is refused
    response = app.test_client().post("/parts", data={"pad": pad, "file": files})
    assert response.get_data(as_text=True) == "300"
    assert seen["sizes"] == {4}
    assert 0 < seen["spooled"] <= SMALL_SPOOLS_PER_REQUEST


def test_many_large_file_parts_are_all_spooled(root: Path, seen: dict[str, Any]) -> None:
    app = make_app(root, seen)
    count_spools(app, seen)
    count = SMALL_SPOOLS_PER_REQUEST + 2
    files = [(io.BytesIO(BIG[: IN_MEMORY_LIMIT + 1]), f"{n}.bin") for n in range(count)]
    response = app.test_client().post("/parts", data={"file": files})
    assert response.get_data(as_text=True) == str(count)
    assert seen["sizes"] == {IN_MEMORY_LIMIT + 1}
    assert seen["spooled"] == count


@BOTH_KINDS
def test_unsaved_spool_is_removed_when_the_request_ends(root: Path, seen: dict[str, Any]) -> None:
    app = make_app(root, seen)
    status, _ = post(app, "/ignore", BIG)
    assert status == 200
    assert seen["spooled"] is True
    assert temp_files(root) == []


class SnapshotsMidBody(io.BytesIO):
    """A request body that lists ``folder`` once half of it has been read."""

    def __init__(self, body: bytes, folder: Path) -> None:
        super().__init__(body)
        self.half = len(body) // 2
        self.folder = folder
        self.listed: list[str] | None = None

    def readinto(self, buffer: Any, /) -> int:  # how Werkzeug's LimitedStream reads
        if self.listed is None and self.tell() >= self.half:
            self.listed = sorted(name for _, _, names in os.walk(self.folder) for name in names)
        return super().readinto(buffer)


def test_no_file_has_a_name_while_the_body_is_spooled(root: Path, seen: dict[str, Any]) -> None:
    app = make_app(root, seen)
    builder_data = {"file": (io.BytesIO(BIG), "big.bin")}
    with app.test_request_context(method="POST", data=builder_data) as context:
        body = SnapshotsMidBody(context.request.get_data(), root)
        content_type = context.request.content_type
    response = app.test_client().post(
        "/upload", input_stream=body, content_type=content_type, content_length=len(body.getvalue())
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert seen["spooled"] is True
    assert body.listed == []  # half the file spooled, and nothing in the folder has a name
    assert sorted(os.listdir(root)) == ["big.bin"]


KILLED_MID_BODY = textwrap.dedent(
    """
    import io, os, signal, sys
    from flask import Flask, request
    from werkzeug.test import EnvironBuilder
    from flask_store import Store

    class DiesMidBody(io.BytesIO):
        def readinto(self, buffer):  # how Werkzeug's LimitedStream reads
            if self.tell() > len(self.getbuffer()) // 2:
                os.kill(os.getpid(), signal.SIGKILL)  # the worker is killed mid-body
            return super().readinto(buffer)

    app = Flask(__name__)
    app.config["STORE_PATH"] = sys.argv[1]
    store = Store(app)

    @app.post("/upload")
    def upload():
        return store.Provider().save(request.files["file"]).key

    data = {"file": (io.BytesIO(os.urandom(4 * 1024 * 1024)), "big.bin")}
    environ = EnvironBuilder(path="/upload", method="POST", data=data).get_environ()
    environ["wsgi.input"] = DiesMidBody(environ["wsgi.input"].read())
    app.wsgi_app(environ, lambda status, headers: None)
    sys.exit("the request was not killed")
    """
)


def test_a_worker_killed_mid_body_leaves_nothing(root: Path) -> None:
    child = run_python(KILLED_MID_BODY, root)
    assert child.returncode == -9, child.stderr
    # Not even a hidden spool file: the kernel freed the unnamed file with the process.
    assert [name for _, _, names in os.walk(root) for name in names] == []


SPOOL_PAST_FILE_SIZE_LIMIT = textwrap.dedent(
    """
    import os, resource, signal, sys
    from flask_store.exceptions import StorageFullError
    from flask_store.spooling import SpoolFile

    root, kind = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, 1024 * 1024))
    spool = SpoolFile(root, unnamed=kind == "unnamed")
    try:
        while True:
            spool.write(b"x" * 65536)
    except StorageFullError:
        pass
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            held.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:
            pass  # the descriptor listdir itself used
    print("HELD", [path for path in held if path.startswith(root)])
    print("LEFT", os.listdir(root))
    """
)


@pytest.mark.parametrize("kind", ["unnamed", "named"])
def test_a_full_disk_frees_the_partial_spool_at_once(tmp_path: Path, kind: str) -> None:
    """No name left, and no descriptor either: the file's blocks are freed, not just hidden."""
    child = run_python(SPOOL_PAST_FILE_SIZE_LIMIT, tmp_path, kind)
    assert child.returncode == 0, child.stderr
    assert child.stdout.splitlines() == ["HELD []", "LEFT []"]


def test_dropped_spool_file_is_removed(tmp_path: Path, spool_kind: str) -> None:
    spool = SpoolFile(str(tmp_path))
    spool.write(b"data")
    assert len(temp_files(tmp_path)) == (0 if spool_kind == "unnamed" else 1)
    del spool
    assert temp_files(tmp_path) == []


@BOTH_KINDS
def test_refused_save_leaves_nothing_behind(root: Path, seen: dict[str, Any]) -> None:
    app = make_app(root, seen, STORE_ON_CONFLICT="error")

    @app.errorhandler(FileExistsInStoreError)
    def conflict(exc: FileExistsInStoreError) -> tuple[str, int]:
        return "taken", 409

    assert post(app, "/upload", BIG[:1000] * 600)[0] == 200
    status, _ = post(app, "/upload", BIG)
    assert status == 409
    assert (root / "big.bin").read_bytes() == BIG[:1000] * 600
    assert temp_files(root) == []


def test_spooling_can_be_switched_off(root: Path, seen: dict[str, Any]) -> None:
    app = make_app(root, seen, STORE_SPOOL_UPLOADS=False)
    assert app.request_class is Request
    status, key = post(app, "/upload", BIG)
    assert status == 200
    assert seen["spooled"] is False
    assert (root / key).read_bytes() == BIG


def test_spooling_keeps_the_apps_own_request_class(root: Path) -> None:
    class MyRequest(Request):
        marker = "mine"

    app = Flask(__name__)
    app.request_class = MyRequest
    app.config["STORE_PATH"] = str(root)
    Store(app)
    assert issubclass(app.request_class, MyRequest)
    assert app.request_class is not MyRequest


def test_non_local_store_does_not_spool(seen: dict[str, Any]) -> None:
    app = Flask(__name__)
    app.config["STORE_PROVIDER"] = "memory"
    Store(app)
    assert app.request_class is Request


# -- what is never moved -------------------------------------------------------------------


def test_a_users_own_file_is_copied_never_moved(tmp_path: Path, root: Path) -> None:
    source = tmp_path / "mine.bin"
    source.write_bytes(BIG)
    store = LocalStore(path=str(root))
    with source.open("rb") as handle:
        saved = store.save(FileStorage(handle, "mine.bin"))
    assert source.read_bytes() == BIG
    assert os.stat(saved.absolute_path()).st_ino != source.stat().st_ino
    assert saved.read() == BIG


@pytest.mark.usefixtures("named_spools")
def test_a_spool_replaced_on_disk_is_copied(root: Path) -> None:
    store = LocalStore(path=str(root))
    spool = SpoolFile(str(root))
    spool.write(BIG)
    spool.seek(0)
    (name,) = temp_files(root)
    os.unlink(name)
    Path(name).write_bytes(b"someone else's file")
    saved = store.save(FileStorage(spool, "x.bin"))
    assert saved.read() == BIG
    assert Path(name).read_bytes() == b"someone else's file"
    spool.close()
    assert temp_files(root) == [name]


def test_an_unnamed_spool_someone_else_named_is_copied(root: Path, tmp_path: Path) -> None:
    store = LocalStore(path=str(root))
    spool = spool_with(root, BIG)
    theirs = tmp_path / "theirs.bin"
    assert unnamed_files.link_unnamed(spool.fileno(), str(theirs))  # via /proc/self/fd
    saved = store.save(FileStorage(spool, "x.bin"))
    assert saved.read() == BIG
    assert os.stat(saved.absolute_path()).st_ino != theirs.stat().st_ino
    spool.close()
    assert theirs.read_bytes() == BIG and theirs.stat().st_nlink == 1
    assert temp_files(root) == []


@BOTH_KINDS
def test_a_partly_read_spool_is_copied_from_its_position(root: Path) -> None:
    store = LocalStore(path=str(root))
    with SpoolFile(str(root)) as spool:
        spool.write(BIG)
        spool.seek(10)
        saved = store.save(FileStorage(spool, "x.bin"))
        assert saved.read() == BIG[10:]
    assert temp_files(root) == []


# -- across file systems ------------------------------------------------------------------


@pytest.fixture
def exdev_moves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the moves of spool files fail with EXDEV, as between two file systems: every
    ``os.rename`` (a named spool's), and every ``linkat`` naming an unnamed spool (not the
    store's own ``linkat`` of its unnamed writes). Records the sources of the failed calls."""
    calls: list[str] = []
    link = os.link

    def rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(os.fspath(src))
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), src, dst)

    def link_unless_spool(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if names_a_spool(os.fspath(src)):
            calls.append(os.fspath(src))
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), src, dst)
        link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "link", link_unless_spool)
    return calls


def names_a_spool(source: str) -> bool:
    """Whether ``os.link(source, ...)`` names an unnamed spool file: ``source`` is a link in
    ``/proc/self/fd`` to a file open for reading and writing (the store's own unnamed writes
    are open for writing only)."""
    if not source.startswith("/proc/self/fd/"):
        return False
    flags = fcntl.fcntl(int(source.rpartition("/")[2]), fcntl.F_GETFL)
    return flags & os.O_ACCMODE == os.O_RDWR


def spool_with(folder: Path, data: bytes) -> SpoolFile:
    spool = SpoolFile(str(folder))
    spool.write(data)
    spool.seek(0)
    return spool


SpoolMaker = Callable[[], SpoolFile]


@pytest.fixture
def spool_elsewhere(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Path, SpoolMaker]]:
    """A folder for spool files on another file system than the store, real or simulated."""
    other = other_device_folder(tmp_path)
    if other is None:
        request.getfixturevalue("exdev_moves")
        other = tmp_path / "elsewhere"
        other.mkdir()
    made: list[SpoolFile] = []

    def make() -> SpoolFile:
        made.append(spool_with(other, BIG))
        return made[-1]

    yield other, make
    for spool in made:
        spool.close()


def test_across_file_systems_the_upload_is_copied(
    root: Path, spool_elsewhere: tuple[Path, SpoolMaker], spool_kind: str
) -> None:
    other, make = spool_elsewhere
    store = LocalStore(path=str(root))
    spool = make()
    inode = os.fstat(spool.fileno()).st_ino
    spooled = [path for path in temp_files(other) if os.stat(path).st_ino == inode]
    assert len(spooled) == (0 if spool_kind == "unnamed" else 1)
    saved = store.save(FileStorage(spool, "far.bin"))
    assert saved.read() == BIG
    assert os.stat(saved.absolute_path()).st_ino != inode
    assert temp_files(root) == []
    # The spool still belongs to its request (no name was given to it) and goes with it.
    assert os.fstat(spool.fileno()).st_nlink == len(spooled)
    assert all(os.path.exists(path) for path in spooled)
    spool.close()
    assert not any(os.path.exists(path) for path in spooled)


@pytest.fixture
def far_folder(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A folder on another file system than ``tmp_path``: real where ``/dev/shm`` is one,
    else a sibling folder with spool moves failing as they would between file systems."""
    other = other_device_folder(tmp_path)
    if other is None:
        request.getfixturevalue("exdev_moves")
        yield tmp_path / "far"
        return
    folder = Path(tempfile.mkdtemp(prefix="flask-store-test-", dir=other))
    yield folder / "far"
    shutil.rmtree(folder)


@BOTH_KINDS
def test_upload_saved_into_a_store_on_another_file_system_is_copied(
    root: Path, far_folder: Path, seen: dict[str, Any]
) -> None:
    # Uploads spool into the default store's folder; saving into the other store must copy.
    app = make_app(root, seen, STORE_STORES={"far": {"PROVIDER": "local", "PATH": str(far_folder)}})
    status, key = post(app, "/upload", BIG, store="far")
    assert status == 200, key
    assert seen["spooled"] is True
    stored = far_folder / key
    assert stored.read_bytes() == BIG
    assert stored.stat().st_ino != seen["inode"]
    assert stored.stat().st_nlink == 1
    assert seen["size"] == len(BIG)
    assert temp_files(root) == []  # the spool went with its request
    assert temp_files(far_folder) == []


@BOTH_KINDS
def test_exdev_on_the_move_falls_back_to_a_copy(root: Path, exdev_moves: list[str]) -> None:
    store = LocalStore(path=str(root))
    with spool_with(root, BIG) as spool:
        saved = store.at("sub").save(FileStorage(spool, "far.bin"))
        assert len(exdev_moves) == 1  # the move was tried, failed, and the copy took over
        assert saved.read() == BIG
        assert os.stat(saved.absolute_path()).st_ino != os.fstat(spool.fileno()).st_ino
    assert temp_files(root) == []


# -- a file lent by its owner (a finished tus upload's partial file) -------------------------


def lent_file(folder: Path, data: bytes = BIG) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "owner.part"
    path.write_bytes(data)
    return path


def test_a_lent_file_is_linked_into_the_store_and_its_owners_name_stays(root: Path) -> None:
    owned = lent_file(root / ".owner")
    inode = owned.stat().st_ino
    store = LocalStore(path=str(root))
    spool = SpoolFile.lend(str(owned))
    saved = store.save(FileStorage(spool, "lent.bin"))
    spool.close()
    stored = root / saved.key
    assert stored.stat().st_ino == inode  # taken over without a copy
    assert owned.read_bytes() == BIG  # and the owner still has it, until it lets go
    assert stored.stat().st_nlink == 2
    assert temp_files(root) == []
    owned.unlink()
    assert stored.read_bytes() == BIG and stored.stat().st_nlink == 1


def test_a_lent_file_outlives_a_save_that_fails_after_taking_it(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owned = lent_file(root / ".owner")

    def disk_full(*args: Any, **kwargs: Any) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalStore, "_place", disk_full)
    store = LocalStore(path=str(root))
    with SpoolFile.lend(str(owned)) as spool, pytest.raises(Exception, match="space"):
        store.save(FileStorage(spool, "lent.bin"))
    assert owned.read_bytes() == BIG  # nothing of it lost
    assert owned.stat().st_nlink == 1
    assert temp_files(root) == [] and list(store.keys()) == []


def test_a_lent_file_is_never_deleted_by_its_spool(tmp_path: Path) -> None:
    owned = lent_file(tmp_path)
    SpoolFile.lend(str(owned)).close()
    spool = SpoolFile.lend(str(owned))
    spool.discard()
    del spool
    assert owned.read_bytes() == BIG


def test_a_lent_file_that_cannot_be_linked_is_copied(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owned = lent_file(root / ".owner")

    def no_links(source: Any, target: Any, **kwargs: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")  # a file system without links

    monkeypatch.setattr(os, "link", no_links)
    store = LocalStore(path=str(root))
    with SpoolFile.lend(str(owned)) as spool:
        saved = store.save(FileStorage(spool, "lent.bin"))
    assert saved.read() == BIG
    assert (root / saved.key).stat().st_ino != owned.stat().st_ino
    assert owned.read_bytes() == BIG
