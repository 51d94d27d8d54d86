"""The boto3 side of an S3 store: one lazily made client, conditional multipart writes, errors.

- :class:`ClientHolder` makes the store's client on first use, once per process (a client
  made before a fork is not reused after it), and is shared by every copy of the store.
- boto3's transfer manager does not pass ``IfNoneMatch`` through a multipart upload.
  :class:`ConditionalTransferManager` accepts it, and two event handlers on the store's own
  client (nothing global is patched) move it from ``CreateMultipartUpload``, which does not
  take it, to the ``CompleteMultipartUpload`` of the same upload, where S3 checks it.
- :func:`s3_errors` turns botocore errors into Flask-Store exceptions that name the bucket
  and the endpoint, and for a feature the server lacks, the setting that avoids it
  (:func:`feature_hint`).
"""

from __future__ import annotations

import functools
import io
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.utils import parse_timestamp
from s3transfer.futures import NonThreadedExecutor
from s3transfer.manager import TransferConfig, TransferManager
from urllib3.exceptions import HTTPError as Urllib3Error

from ..exceptions import (
    ACLNotSupportedError,
    BucketNotFoundError,
    FileNotFoundInStoreError,
    StoreAccessDeniedError,
    StoreUnavailableError,
    UnsupportedByServerError,
)
from .s3_config import CONNECT_TIMEOUT, MAX_POOL_CONNECTIONS, S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "CONDITION_FAILED_CODES",
    "FEATURE_ERROR_CODES",
    "NOT_FOUND_CODES",
    "ClientHolder",
    "ConditionalTransferManager",
    "MalformedAnswerError",
    "ObjectBody",
    "check_header_values",
    "error_code",
    "feature_hint",
    "make_client",
    "s3_errors",
    "where",
]

#: Error codes meaning "these credentials may not do this".
ACCESS_DENIED_CODES = frozenset(
    {
        "403",
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
    }
)
#: Error codes meaning "no such object" (HEAD answers a bare 404).
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
#: A conditional write lost: the key exists (412), or another write to it is under way (409).
CONDITION_FAILED_CODES = frozenset({"412", "PreconditionFailed", "ConditionalRequestConflict"})
#: Error codes meaning "this server does not take part of the request": a header, a
#: parameter or an operation that S3 has and it lacks (HEAD answers a bare status).
FEATURE_ERROR_CODES = frozenset(
    {
        "400",
        "501",
        "NotImplemented",
        "InvalidRequest",
        "InvalidArgument",
        "BadRequest",
        "InvalidDigest",
        "BadDigest",
        "XAmzContentSHA256Mismatch",
        "MissingContentLength",
        "InvalidStorageClass",
        "InvalidEncryptionAlgorithmError",
        "UnsupportedHeader",
    }
)
#: Words of an error message, or operations, and the setting that avoids what they name.
_CHECKSUMS = (
    'STORE_S3_CHECKSUM_CALCULATION = "when_required" (with STORE_S3_CHECKSUM_VALIDATION = '
    '"when_required")'
)
_CONDITIONS = 'STORE_S3_CONDITIONAL_WRITES = "off" (read its caveat)'
_ACLS = "STORE_S3_ACL = None, with presigned URLs (STORE_S3_PRESIGNED = True) instead of ACLs"
_OBJECT_PARAMS = "fewer STORE_S3_OBJECT_PARAMS"
_ADDRESSING = 'STORE_S3_ADDRESSING_STYLE = "path"'
_CLUES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        (
            "checksum",
            "crc32",
            "crc64",
            "sha256",
            "aws-chunked",
            "trailer",
            "content-encoding",
            "decoded-content-length",
            "streaming",
        ),
        _CHECKSUMS,
    ),
    (("if-none-match", "if-match", "conditional", "precondition"), _CONDITIONS),
    (("acl", "grant", "putobjectacl"), _ACLS),
    (
        ("storage class", "storageclass", "encryption", "kms", "tagging", "object lock"),
        _OBJECT_PARAMS,
    ),
    (("virtual", "subdomain"), _ADDRESSING),
)
_NETWORK_ERRORS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)
_CONDITION_CONTEXT_KEY = "flask_store_if_none_match"


def error_code(exc: ClientError) -> str:
    """The S3 error code of ``exc`` (``"NoSuchBucket"``, or the HTTP status for HEAD)."""
    code = exc.response.get("Error", {}).get("Code")
    if code:
        return str(code)
    return str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def make_client(settings: S3Settings) -> S3Client:
    """A new S3 client for ``settings``; no request is sent."""
    s3_options: Any = {"addressing_style": settings.addressing_style}
    config = Config(
        region_name=settings.region,
        # botocore presigns with SigV2 in older regions unless told otherwise; buckets made
        # since June 2020 refuse SigV2, and SigV4 is what caps URL lifetimes at seven days.
        signature_version="s3v4",
        s3=s3_options,
        request_checksum_calculation=settings.checksum_calculation,
        response_checksum_validation=settings.checksum_validation,
        max_pool_connections=MAX_POOL_CONNECTIONS,
        connect_timeout=CONNECT_TIMEOUT,
        retries={"mode": "standard"},
        user_agent_extra="flask-store",
    )
    # A session of its own: boto3's default session is not safe to build clients from threads.
    core = botocore.session.Session()
    # Dates are parsed once: check_header_values reads each date header first.
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=_parse_timestamp
    )
    session = boto3.session.Session(botocore_session=core)
    return session.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key,
        aws_secret_access_key=settings.secret_key,
        config=config,
    )


class ClientHolder:
    """Makes a store's client on first use and hands the same one to every thread.

    Copies of a store (``store.at("avatars")``) share the holder, hence the client and its
    connection pool. After a fork the child makes its own client: connections must not be
    shared between processes.
    """

    def __init__(self, factory: Callable[[], S3Client]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._made: tuple[int, S3Client] | None = None
        # Multipart uploads started with IfNoneMatch, by upload id: their value.
        self._conditions: dict[str, str] = {}

    def get(self) -> S3Client:
        """The client of this process, made on the first call."""
        made = self._made
        if made is not None and made[0] == os.getpid():
            return made[1]
        with self._lock:
            if self._made is None or self._made[0] != os.getpid():
                client = self._factory()
                self._register_condition_handlers(client)
                self._made = (os.getpid(), client)
            return self._made[1]

    def _register_condition_handlers(self, client: S3Client) -> None:
        events = client.meta.events
        events.register("before-parse.s3", check_header_values)
        events.register(
            "before-parameter-build.s3.CreateMultipartUpload", self._hold_create_condition
        )
        events.register("after-call.s3.CreateMultipartUpload", self._remember_condition)
        events.register("before-parameter-build.s3.CompleteMultipartUpload", self._apply_condition)
        events.register("before-call.s3.AbortMultipartUpload", self._forget_condition)

    def _hold_create_condition(
        self, params: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        condition = params.pop("IfNoneMatch", None)
        if condition is not None:
            context[_CONDITION_CONTEXT_KEY] = condition

    def _remember_condition(
        self, parsed: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        condition = context.get(_CONDITION_CONTEXT_KEY)
        if condition is not None and "UploadId" in parsed:
            with self._lock:
                self._conditions[parsed["UploadId"]] = condition

    def _apply_condition(self, params: dict[str, Any], **_: Any) -> None:
        with self._lock:
            condition = self._conditions.pop(params.get("UploadId", ""), None)
        if condition is not None:
            params["IfNoneMatch"] = condition

    def _forget_condition(self, params: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self._conditions.pop(params.get("UploadId", ""), None)


class MalformedAnswerError(BotoCoreError):
    """A header of the server's answer that botocore cannot parse (a ``Content-Length`` that
    is no number, a ``Last-Modified`` that is no date): raised before botocore's parser
    meets it, which would raise a bare ``ValueError``."""

    fmt = "the server answered {operation} with a malformed {header} header: {value}"


def check_header_values(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
    """Refuse an answer whose number or date headers botocore would fail to parse.

    :raises MalformedAnswerError: naming the header and its value (cut short, escaped).
    """
    shape = operation_model.output_shape
    headers = response_dict.get("headers") or {}
    if shape is None or not headers:
        return
    for member in shape.members.values():
        name = member.serialization.get("name")
        if member.serialization.get("location") != "header" or name == "Expires":
            continue  # botocore keeps an Expires it cannot read as ExpiresString
        value = headers.get(name)
        if value is None or _parses_as(member.type_name, value):
            continue
        raise MalformedAnswerError(
            operation=operation_model.name, header=name, value=repr(value[:80])
        )


#: botocore's date parser (dateutil, about 0.1 ms a date), remembering recent dates: the
#: clients' parser reads a date header again right after :func:`check_header_values`.
_parse_timestamp = functools.lru_cache(maxsize=256)(parse_timestamp)


def _parses_as(type_name: str, value: str) -> bool:
    """Whether botocore's parser reads the header ``value`` as a ``type_name``."""
    try:
        if type_name in ("integer", "long"):
            int(value)
        elif type_name == "timestamp":
            _parse_timestamp(value)
    except (ValueError, OverflowError, RuntimeError):
        return False
    return True


class ConditionalTransferManager(TransferManager):
    """boto3's transfer manager, also accepting ``IfNoneMatch`` (see :class:`ClientHolder`)."""

    # A plain list, as in the base class (a ClassVar annotation would clash with its stubs).
    ALLOWED_UPLOAD_ARGS = [*TransferManager.ALLOWED_UPLOAD_ARGS, "IfNoneMatch"]  # noqa: RUF012

    def __init__(self, client: S3Client, config: TransferConfig) -> None:
        # As boto3's own factory does: boto3's TransferConfig(use_threads=False) (gevent) sends
        # every part from the calling thread or greenlet, without a thread pool.
        threads = getattr(config, "use_threads", True)
        super().__init__(client, config, executor_cls=None if threads else NonThreadedExecutor)


def where(settings: S3Settings) -> str:
    """The bucket and endpoint, for messages: ``bucket 'files' at https://...``."""
    return f"bucket {settings.bucket!r} at {settings.endpoint}"


def feature_hint(settings: S3Settings, message: str, operation: str = "") -> str:
    """The settings that avoid the feature a server refused, from the words of its error
    message and the operation; without a clue, every setting in use that asks the server
    for something it may lack."""
    text = f"{message} {operation}".lower()
    named = [setting for words, setting in _CLUES if any(word in text for word in words)]
    if not named:
        in_use = [
            (settings.checksum_calculation == "when_supported", _CHECKSUMS),
            (settings.conditional_writes != "off", _CONDITIONS),
            (settings.acl is not None, _ACLS),
            (bool(settings.object_params), _OBJECT_PARAMS),
            (settings.addressing_style == "virtual" and settings.endpoint_url, _ADDRESSING),
        ]
        named = [setting for used, setting in in_use if used]
    if not named:
        return "No setting in use asks for more than plain S3; the server lacks this operation."
    return f"Settings that avoid it: {'; or '.join(named)}."


@contextmanager
def s3_errors(settings: S3Settings, action: str) -> Iterator[None]:
    """Turn botocore errors raised in the block into Flask-Store exceptions.

    :param action: what was being done, for the message: ``"save 'a.jpg'"``.
    :raises BucketNotFoundError: the bucket does not exist.
    :raises ACLNotSupportedError: an ACL was sent to a bucket with ACLs disabled.
    :raises UnsupportedByServerError: the server lacks a feature of the request; the message
        names the settings that avoid it.
    :raises StoreAccessDeniedError: the credentials may not do this.
    :raises FileNotFoundInStoreError: no such object.
    :raises StoreUnavailableError: the endpoint cannot be reached, or S3 refused otherwise.
    """
    bucket = where(settings)
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message") or code
        # HEAD has no body: a missing bucket is a bare 404 there, told apart by asking
        # about the bucket itself (HeadBucket).
        if code == "NoSuchBucket" or (
            exc.operation_name == "HeadBucket" and code in NOT_FOUND_CODES
        ):
            raise BucketNotFoundError(
                f"Cannot {action}: the {bucket} does not exist; create it or fix STORE_S3_BUCKET."
            ) from exc
        if code == "AccessControlListNotSupported":
            raise ACLNotSupportedError(
                f"Cannot {action}: the {bucket} has ACLs disabled (Object Ownership: bucket "
                "owner enforced); leave STORE_S3_ACL unset and grant access with a bucket "
                "policy or presigned URLs (STORE_S3_PRESIGNED) instead of per-file ACLs."
            ) from exc
        if code in ACCESS_DENIED_CODES:
            raise StoreAccessDeniedError(
                f"Cannot {action}: access to the {bucket} was denied ({code}: {message}); check "
                "the credentials and the bucket policy."
            ) from exc
        if code in NOT_FOUND_CODES:
            raise FileNotFoundInStoreError(
                f"Cannot {action}: no such file in the {bucket}."
            ) from exc
        if code in FEATURE_ERROR_CODES:
            hint = feature_hint(settings, message, exc.operation_name)
            raise UnsupportedByServerError(
                f"Cannot {action}: the server of the {bucket} refused part of the request "
                f"({code}: {message}). {hint}"
            ) from exc
        raise StoreUnavailableError(
            f"Cannot {action}: the {bucket} answered {code}: {message}."
        ) from exc
    except NoCredentialsError as exc:
        raise StoreAccessDeniedError(
            f"Cannot {action} in the {bucket}: no AWS credentials found; set "
            "STORE_S3_ACCESS_KEY and STORE_S3_SECRET_KEY or configure boto3's credential chain."
        ) from exc
    except _NETWORK_ERRORS as exc:
        raise StoreUnavailableError(
            f"Cannot {action}: the {bucket} is unreachable ({exc})."
        ) from exc
    except BotoCoreError as exc:
        raise StoreUnavailableError(f"Cannot {action} in the {bucket}: {exc}") from exc


class ObjectBody(io.RawIOBase):
    """An object's HTTP body whose failures arrive as :class:`StoreUnavailableError`.

    A connection that breaks off mid-body raises botocore or urllib3 errors, which are not
    ``OSError``; wrapped, every reader (the serving route, the read cache, a copy) can
    handle a broken read the way it handles any other I/O failure.
    """

    def __init__(self, body: Any, description: str) -> None:
        super().__init__()
        self._body = body
        self._description = description

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            data: bytes = self._body.read(None if size is None or size < 0 else size)
        except (BotoCoreError, Urllib3Error) as exc:
            raise StoreUnavailableError(f"Reading {self._description} broke off: {exc}") from exc
        return data

    def readall(self) -> bytes:
        return self.read()

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._body.close()
        finally:
            super().close()
