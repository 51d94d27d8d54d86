"""What an S3 server is found to do, learned once per bucket and process, never assumed.

S3-compatible servers differ from S3 in ways that do not show as errors: some accept
``If-None-Match: *`` and then overwrite anyway. Before a store relies on a conditional write
it asks the server once (:func:`probe_conditional_writes`), and remembers the answer for the
bucket in :class:`BucketFacts`, shared by every store of this process on that bucket (named
stores, copies from ``at()``, stores rebuilt per job by a worker).

A bucket's existence is remembered too: S3 answers a HEAD of a missing object and a HEAD of
an object in a missing bucket alike (a bare 404), so the first 404 asks about the bucket
itself, and later ones need not.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from .s3_client import CONDITION_FAILED_CODES, FEATURE_ERROR_CODES, error_code

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["PROBE_MARK", "BucketFacts", "facts_about", "probe_conditional_writes"]

log = logging.getLogger(__name__)

#: Starts the name of the scratch object a probe writes (and deletes) below ``STORE_PATH``:
#: a hidden name, so never listed as a file of the store.
PROBE_MARK = ".flask-store-probe-"


@dataclass
class BucketFacts:
    """What this process has learned about one bucket of one server.

    :param exists: the bucket was seen to exist (a later 404 is a missing object).
    :param conditional_writes: ``None`` until probed; then ``""`` when the server refuses a
        second conditional write as S3 does, else why it cannot be relied on.
    """

    exists: bool = False
    conditional_writes: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


_facts: dict[tuple[int, str, str], BucketFacts] = {}
_facts_lock = threading.Lock()


def facts_about(endpoint: str, bucket: str) -> BucketFacts:
    """The facts of ``bucket`` at ``endpoint`` in this process (empty at first).

    Keyed by process too: a child made by ``fork`` learns afresh rather than inherit a lock
    that a thread of its parent may have held.
    """
    key = (os.getpid(), endpoint, bucket)
    with _facts_lock:
        facts = _facts.get(key)
        if facts is None:
            facts = _facts[key] = BucketFacts()
        return facts


def probe_conditional_writes(client: S3Client, bucket: str, scratch_key: str) -> str:
    """Whether the server keeps its promise of conditional writes: ``""`` when it does, else
    why not.

    Writes ``scratch_key`` (empty) with ``If-None-Match: *`` twice: S3 stores the first and
    refuses the second with ``412 Precondition Failed``. A server that stores both ignores
    the condition, and one that refuses the header does not have it. The scratch object is
    deleted afterwards.

    :raises ClientError: for any other refusal (a missing bucket, access denied...).
    :raises BotoCoreError: when the server cannot be reached.
    """
    try:
        client.put_object(Bucket=bucket, Key=scratch_key, Body=b"", IfNoneMatch="*")
    except ClientError as exc:
        code = error_code(exc)
        if code in FEATURE_ERROR_CODES:
            return f"it refuses If-None-Match: {code}"
        if code in CONDITION_FAILED_CODES:
            return f"it refused a conditional write of a new key: {code}"
        raise
    try:
        client.put_object(Bucket=bucket, Key=scratch_key, Body=b"", IfNoneMatch="*")
    except ClientError as exc:
        if error_code(exc) in CONDITION_FAILED_CODES:
            return ""
        raise
    finally:
        _remove_scratch(client, bucket, scratch_key)
    return "it ignored If-None-Match: * and wrote over an object"


def _remove_scratch(client: S3Client, bucket: str, scratch_key: str) -> None:
    try:
        client.delete_object(Bucket=bucket, Key=scratch_key)
    except (ClientError, BotoCoreError) as exc:
        # Harmless (hidden from keys() and empty), but say where it is.
        log.warning("Could not delete the probe's scratch object %r: %s", scratch_key, exc)
