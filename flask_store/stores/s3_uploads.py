"""Direct uploads: a browser sends a large file straight to the bucket with a presigned POST.

Nothing the browser sends back is trusted, because many S3-compatible servers (and moto) do not
enforce a POST policy: a client can rewrite every field of the form.

- **Signed limits.** The form carries its limits (the largest size, the content type, the
  expiry, the ``Content-Disposition``, a nonce) as ``x-amz-meta-upload-*`` fields, with an
  HMAC-SHA256 over them, the bucket and the final key, made with the upload secret
  (``STORE_S3_UPLOAD_SECRET``, else the app's ``SECRET_KEY``). ``confirm_upload()`` checks the
  signature, then the limits against the object's *real* size and type.
- **A staging key.** The form writes to ``STORE_PATH/.direct-uploads/<token>``, where the token
  is an HMAC of the final key: unguessable, and hidden, so no store key, listing or serving
  route reaches it. Confirming copies the checked object to its final key, which no form can
  target, and deletes the staging object. A form used again after confirmation writes to the
  staging key only, and a later confirmation refuses it: a confirmed file never changes.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import BotoCoreError, ClientError
from flask import current_app, has_app_context
from s3transfer.manager import TransferConfig, TransferManager

from ..exceptions import (
    FileTooLargeError,
    FileTypeRejectedError,
    InvalidArgumentError,
    UploadRejectedError,
)
from ..headers import media_type, normalise_content_type
from .s3_bodies import Body
from .s3_client import NOT_FOUND_CODES, ConditionalTransferManager, error_code

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "Confirmation",
    "DirectUpload",
    "UploadLimits",
    "UploadSigner",
    "UploadTicket",
    "check_max_size",
    "confirmed_copy_args",
    "copy_body",
    "copy_object",
    "head_object",
    "is_decimal",
    "post_form",
    "unix_time",
    "unquoted_etag",
    "upload_secret",
]

log = logging.getLogger(__name__)

#: Object metadata holding a direct upload's signed limits (``x-amz-meta-<name>``).
MAX_SIZE_META = "upload-max-size"
TYPE_META = "upload-content-type"
EXPIRES_META = "upload-expires"
NONCE_META = "upload-nonce"
SIGNATURE_META = "upload-signature"
#: On a confirmed file: the ETag of the staging object it was copied from, and a signature
#: over it, the nonce of its form and its key, which only :meth:`S3Store.confirm_upload` makes.
SOURCE_ETAG_META = "upload-etag"
CONFIRMED_META = "upload-confirmed"
#: The hidden folder (below ``STORE_PATH``) that upload forms write to.
STAGING_FOLDER = ".direct-uploads"
#: The largest object S3 accepts in one POST.
MAX_POST_SIZE = 5 * 1024**3
#: Clocks of the app and the server may differ this much (S3 allows 15 minutes too).
CLOCK_SKEW = 15 * 60
#: An upload started before its form expired is accepted if it went at least this fast
#: (bytes per second, about 1 Mbit/s): a form's deadline is its expiry plus the time to send
#: ``max_size`` bytes at this rate, plus :data:`CLOCK_SKEW`.
SLOWEST_UPLOAD_RATE = 128 * 1024

# Separates these signatures from any other use of the same secret (sessions, tokens).
_SIGNING_CONTEXT = b"flask-store: S3 direct upload v1"

# STORE_S3_OBJECT_PARAMS entries that have a POST form field; others apply to save() only.
_POST_FIELDS = {
    "CacheControl": "Cache-Control",
    "ContentLanguage": "Content-Language",
    "Expires": "Expires",
    "ServerSideEncryption": "x-amz-server-side-encryption",
    "SSEKMSKeyId": "x-amz-server-side-encryption-aws-kms-key-id",
    "StorageClass": "x-amz-storage-class",
    "WebsiteRedirectLocation": "x-amz-website-redirect-location",
}


def unix_time() -> int:
    """Now, in whole seconds since the epoch (the clock forms' expiry is counted on)."""
    return int(time.time())


@dataclass(frozen=True)
class DirectUpload:
    """A presigned POST: how a browser sends one file straight to the bucket.

    Send a ``multipart/form-data`` POST to :attr:`url` with every entry of :attr:`fields`
    first and the file last, in a field called ``file``; then call
    ``store.confirm_upload(upload.key)``. The form writes to a hidden staging key
    (``fields["key"]``); :attr:`key` is where the file is once confirmed.

    :param url: where to POST the form.
    :param fields: form fields to send unchanged, before the file.
    :param key: the file's key in the store once confirmed.
    :param max_size: the largest file accepted, in bytes.
    :param content_type: the content type the file must be sent with.
    :param expires: seconds the form stays valid.
    """

    url: str
    fields: Mapping[str, str]
    key: str
    max_size: int
    content_type: str
    expires: int


@dataclass(frozen=True)
class UploadLimits:
    """What a direct upload may be: at most ``max_size`` bytes of ``content_type``."""

    max_size: int | None
    content_type: str | None

    def breach(self, size: int, content_type: str | None) -> UploadRejectedError | None:
        """How an object of ``size`` bytes and ``content_type`` breaks these limits (an
        error to raise once the object is deleted), or ``None`` when it keeps them. Types
        are compared by media type, parameters aside."""
        if self.max_size is not None and size > self.max_size:
            return FileTooLargeError(f"it has {size} bytes, more than the {self.max_size} allowed")
        if self.content_type is None:
            return None
        actual = normalise_content_type(content_type)
        if media_type(actual) != media_type(self.content_type):
            return FileTypeRejectedError(f"its type is {actual!r}, not {self.content_type!r}")
        return None


@dataclass(frozen=True)
class UploadTicket:
    """What one form allows, every part of it covered by the form's signature.

    :param object_key: the bucket key the file gets once confirmed (not the staging key).
    :param disposition: the ``Content-Disposition`` (the original filename) it is stored with.
    :param expires: when the form expires, in seconds since the epoch.
    :param nonce: random, so that no two forms are alike (replays are told from new forms).
    """

    object_key: str
    max_size: int
    content_type: str
    disposition: str
    expires: int
    nonce: str

    @property
    def limits(self) -> UploadLimits:
        """The size and type limits of this ticket."""
        return UploadLimits(self.max_size, self.content_type)

    def deadline(self) -> float:
        """The latest time (epoch seconds, the server's clock) the upload may have ended."""
        return self.expires + CLOCK_SKEW + self.max_size / SLOWEST_UPLOAD_RATE

    def breach(
        self, size: int, content_type: str | None, sent: datetime
    ) -> UploadRejectedError | None:
        """How an object of ``size`` bytes and ``content_type``, stored at ``sent``, breaks
        this ticket, or ``None`` when it keeps it."""
        if sent.timestamp() > self.deadline():
            return UploadRejectedError("its form had expired before it was sent")
        return self.limits.breach(size, content_type)


@dataclass(frozen=True)
class Confirmation:
    """What a confirmed file records of the upload it came from.

    :param nonce: the nonce of the form it was sent with.
    :param source_etag: the ETag of the staging object it was copied from.
    """

    nonce: str
    source_etag: str


class UploadSigner:
    """Signs and checks direct upload forms with one secret, for one bucket.

    The key used is derived from the secret for this purpose only, so a signature here can
    never pass for a session cookie or another token signed with the same ``SECRET_KEY``.
    """

    def __init__(self, secret: bytes, bucket: str) -> None:
        self._key = hmac.new(secret, _SIGNING_CONTEXT, hashlib.sha256).digest()
        self._bucket = bucket

    def _mac(self, *parts: object) -> str:
        message = json.dumps([self._bucket, *parts]).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def staging_name(self, object_key: str) -> str:
        """The hidden name (below the store's ``STORE_PATH``,
        :meth:`~flask_store.stores.s3.S3Store.hidden_object_key`) the form for
        ``object_key`` writes to."""
        return f"{STAGING_FOLDER}/{self._mac('staging', object_key)[:32]}"

    def new_ticket(
        self, object_key: str, *, max_size: int, content_type: str, disposition: str, expires: int
    ) -> UploadTicket:
        """A ticket for a form valid ``expires`` seconds from now."""
        return UploadTicket(
            object_key=object_key,
            max_size=max_size,
            content_type=content_type,
            disposition=disposition,
            expires=unix_time() + expires,
            nonce=secrets.token_hex(16),
        )

    def signature(self, ticket: UploadTicket) -> str:
        return self._mac(
            "ticket",
            ticket.object_key,
            ticket.max_size,
            ticket.content_type,
            ticket.disposition,
            ticket.expires,
            ticket.nonce,
        )

    def metadata(self, ticket: UploadTicket) -> dict[str, str]:
        """The object metadata carrying ``ticket`` and its signature."""
        return {
            MAX_SIZE_META: str(ticket.max_size),
            TYPE_META: ticket.content_type,
            EXPIRES_META: str(ticket.expires),
            NONCE_META: ticket.nonce,
            SIGNATURE_META: self.signature(ticket),
        }

    def verified(self, object_key: str, head: Mapping[str, Any]) -> UploadTicket | None:
        """The ticket recorded with an object (a HEAD response) for ``object_key``, if its
        signature is there and right; ``None`` otherwise."""
        metadata = head.get("Metadata", {})
        max_size, expires = metadata.get(MAX_SIZE_META, ""), metadata.get(EXPIRES_META, "")
        if not (is_decimal(max_size) and is_decimal(expires)):
            return None
        ticket = UploadTicket(
            object_key=object_key,
            max_size=int(max_size),
            content_type=str(metadata.get(TYPE_META, "")),
            disposition=str(head.get("ContentDisposition", "")),
            expires=int(expires),
            nonce=str(metadata.get(NONCE_META, "")),
        )
        signature = str(metadata.get(SIGNATURE_META, ""))
        if not hmac.compare_digest(signature.encode(), self.signature(ticket).encode()):
            return None
        return ticket

    def confirmation_metadata(self, object_key: str, confirmation: Confirmation) -> dict[str, str]:
        """The object metadata that marks ``object_key`` as confirmed from an upload."""
        return {
            NONCE_META: confirmation.nonce,
            SOURCE_ETAG_META: confirmation.source_etag,
            CONFIRMED_META: self._confirmation_mac(object_key, confirmation),
        }

    def confirmation(self, object_key: str, head: Mapping[str, Any]) -> Confirmation | None:
        """What the object at ``object_key`` (a HEAD response) records of the upload it was
        confirmed from, or ``None`` if it was not confirmed from one."""
        metadata = head.get("Metadata", {})
        confirmation = Confirmation(
            nonce=str(metadata.get(NONCE_META, "")),
            source_etag=str(metadata.get(SOURCE_ETAG_META, "")),
        )
        mac = str(metadata.get(CONFIRMED_META, ""))
        expected = self._confirmation_mac(object_key, confirmation)
        return confirmation if hmac.compare_digest(mac.encode(), expected.encode()) else None

    def _confirmation_mac(self, object_key: str, confirmation: Confirmation) -> str:
        return self._mac("confirmed", object_key, confirmation.nonce, confirmation.source_etag)


def upload_secret(configured: bytes | None) -> bytes | None:
    """The secret that signs direct uploads: the store's own, else the current Flask app's
    ``SECRET_KEY``; ``None`` when there is neither."""
    if configured:
        return configured
    if not has_app_context():
        return None
    secret = current_app.config.get("SECRET_KEY")
    if isinstance(secret, str) and secret:
        return secret.encode()
    if isinstance(secret, bytes) and secret:
        return secret
    return None


def check_max_size(max_size: object, *, post: bool = True) -> int:
    """``max_size`` checked to be a positive whole number of bytes, and with ``post`` one S3
    accepts in one POST."""
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size <= 0:
        raise InvalidArgumentError(
            f"max_size must be a positive number of bytes, not {max_size!r}."
        )
    if post and max_size > MAX_POST_SIZE:
        raise InvalidArgumentError(
            f"max_size {max_size} is above S3's {MAX_POST_SIZE}-byte limit for one POST upload."
        )
    return max_size


def post_form(
    ticket: UploadTicket,
    signed: Mapping[str, str],
    *,
    acl: str | None,
    object_params: Mapping[str, Any],
) -> tuple[dict[str, str], list[Any]]:
    """The form fields of a direct upload and the policy conditions that pin each of them.

    :param signed: the ticket's metadata with its signature (:meth:`UploadSigner.metadata`).
    """
    fields = {"Content-Type": ticket.content_type, "Content-Disposition": ticket.disposition}
    fields.update({f"x-amz-meta-{name}": value for name, value in signed.items()})
    if acl:
        fields["acl"] = acl
    for param, field in _POST_FIELDS.items():
        if param in object_params:
            fields[field] = str(object_params[param])
    for name, value in object_params.get("Metadata", {}).items():
        fields.setdefault(f"x-amz-meta-{name}", str(value))
    conditions: list[Any] = [{name: value} for name, value in fields.items()]
    conditions.append(["content-length-range", 0, ticket.max_size])
    return fields, conditions


def confirmed_copy_args(
    upload_args: Mapping[str, Any], confirmation: Mapping[str, str], source_etag: str
) -> dict[str, Any]:
    """Arguments of the copy that makes a checked staging object a confirmed file.

    :param upload_args: what :meth:`S3Store.save` would store the file with (content type,
        disposition, ACL, ``STORE_S3_OBJECT_PARAMS``); they replace everything the staging
        object had, so nothing a client added to the form survives (no ``Content-Encoding``,
        no extra metadata).
    :param confirmation: :meth:`UploadSigner.confirmation_metadata`, added to the metadata.
    :param source_etag: the ETag of the staging object that was checked: the copy takes
        that version's bytes or fails.
    """
    args: dict[str, Any] = {
        param: value
        for param, value in upload_args.items()
        if param in TransferManager.ALLOWED_COPY_ARGS
    }
    if "Tagging" in args:
        args["TaggingDirective"] = "REPLACE"
    args.update(
        MetadataDirective="REPLACE",
        Metadata={**upload_args.get("Metadata", {}), **confirmation},
        CopySourceIfMatch=f'"{source_etag}"',
    )
    return args


class _CopyManager(ConditionalTransferManager):
    """The transfer manager, also taking ``IfNoneMatch`` for copies: on ``CopyObject`` for
    a small object, on ``CompleteMultipartUpload`` for a copy in parts."""

    ALLOWED_COPY_ARGS = [*TransferManager.ALLOWED_COPY_ARGS, "IfNoneMatch"]  # noqa: RUF012


def copy_object(
    client: S3Client,
    config: TransferConfig,
    bucket: str,
    source: str,
    target: str,
    args: Mapping[str, Any],
) -> None:
    """Copy ``source`` to ``target`` in ``bucket``: one ``CopyObject`` below the multipart
    threshold, parts copied in parallel (``UploadPartCopy``) above it.

    s3transfer HEADs the source first, though callers know its size and ETag. That HEAD is
    kept on purpose: it carries ``args``' ``CopySourceIfMatch`` as ``If-Match``, the one
    check of the source's version that servers ignoring the copy-source conditions of
    ``UploadPartCopy`` (moto among them) still enforce.

    A copy in parts cannot carry ``args``' ``Tagging``: s3transfer completes it, then sets
    the tags in a call of its own. When the server refuses that call, the completed object
    is deleted before the error is raised, so a copy that failed leaves no untagged file.
    """
    with _CopyManager(client, config) as manager:
        source_object = {"Bucket": bucket, "Key": source}
        try:
            manager.copy(source_object, bucket, target, extra_args=dict(args)).result()
        except ClientError as exc:
            if exc.operation_name == "PutObjectTagging":
                _delete_after_failed_copy(client, bucket, target)
            raise


def _delete_after_failed_copy(client: S3Client, bucket: str, target: str) -> None:
    """Delete the object a failed copy completed; a failure to do so is logged, not raised:
    the caller gets the copy's own error."""
    try:
        client.delete_object(Bucket=bucket, Key=target)
    except (ClientError, BotoCoreError):
        log.warning("Could not delete %r, left behind by a failed copy.", target, exc_info=True)


def head_object(client: S3Client, bucket: str, object_key: str) -> dict[str, Any] | None:
    """The HEAD response for any object key (hidden ones too), or ``None`` when missing."""
    try:
        return cast("dict[str, Any]", client.head_object(Bucket=bucket, Key=object_key))
    except ClientError as exc:
        if error_code(exc) in NOT_FOUND_CODES:
            return None
        raise


def unquoted_etag(head: Mapping[str, Any]) -> str:
    """The ETag of an S3 response without its quotes; ``""`` when the server sent none (a
    value no MD5 or stored ETag equals, so a check against it fails rather than crashes)."""
    return str(head.get("ETag", "")).strip('"')


def is_decimal(value: object) -> bool:
    """Whether ``value`` is a plain decimal number (no sign, space or ``_``)."""
    return isinstance(value, str) and value.isascii() and value.isdigit()


def copy_body() -> Body:
    """The ``body`` for working out a file's upload arguments when its bytes are copied
    inside the bucket, not sent: no bytes, none of them compressed."""
    return Body(io.BytesIO(), start=0, size=0, original_size=0, gzipped=False)
