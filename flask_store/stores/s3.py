"""S3Store: files in an Amazon S3 bucket or any S3-compatible server (MinIO, moto, R2...).

A file's key in the store (``FileWrapper.name``) is its object key without the ``STORE_PATH``
prefix. Saves never overwrite by accident: each candidate key is claimed with a conditional
write (``If-None-Match: *``), and a write that loses the race tries the next name. Servers
without conditional writes get a checked rename instead (``STORE_S3_CONDITIONAL_WRITES``).
Settings and their defaults are in ``docs/s3.rst``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib
import io
import itertools
import re
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Literal, NoReturn, TypeVar, cast
from urllib.parse import quote

from botocore.exceptions import ClientError
from s3transfer.manager import TransferConfig
from werkzeug.http import parse_options_header

from ..byteranges import Span, content_range_of, spans_to_serve, starts_and_covers
from ..config import Schema
from ..content_checks import SNIFF_BYTES, check_declared_type, check_type
from ..exceptions import (
    FileChangedError,
    FileNotFoundInStoreError,
    FileTypeRejectedError,
    InvalidArgumentError,
    InvalidKeyError,
    StoreUnavailableError,
    UnsupportedByServerError,
    UploadReadError,
    UploadRejectedError,
)
from ..file_wrapper import FileWrapper
from ..files import read_up_to
from ..headers import file_disposition, media_type, parse_content_type, served_content_type
from ..meta import FileInfo, FileMeta, guess_content_type
from ..naming import clean_key, join_key, secure_filename, with_unique_suffix
from ..sources import Upload
from .base import (
    BaseStore,
    ByteRange,
    Location,
    OpenedSpan,
    check_byte_range,
    first_free_key,
    skipped_to,
)
from .s3_bodies import Body, prepare_body, spool_body
from .s3_client import (
    CONDITION_FAILED_CODES,
    NOT_FOUND_CODES,
    ClientHolder,
    ConditionalTransferManager,
    ObjectBody,
    error_code,
    make_client,
    s3_errors,
    where,
)
from .s3_config import MAX_URL_EXPIRES, S3_STORE_SETTINGS, S3Settings, read_s3_settings
from .s3_probes import PROBE_MARK, facts_about, probe_conditional_writes
from .s3_staged import StagedObject
from .s3_uploads import (
    Confirmation,
    DirectUpload,
    UploadLimits,
    UploadSigner,
    UploadTicket,
    check_max_size,
    confirmed_copy_args,
    copy_body,
    copy_object,
    head_object,
    is_decimal,
    post_form,
    unquoted_etag,
    upload_secret,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3Store"]

T = TypeVar("T")

#: Object metadata holding the size of a gzip-encoded file before compression.
ORIGINAL_SIZE_META = "uncompressed-size"
#: Object metadata holding the file's content type when the object's ``Content-Type`` (what
#: S3 sends browsers on a redirect) differs from it: ``text/plain`` for a script, a charset
#: added to text. :meth:`S3Store.info` reports this one, as the other stores do.
CONTENT_TYPE_META = "file-content-type"
#: Ends the ETag of a gzip-encoded object (see :func:`_content_etag`).
GZIP_ETAG_MARK = "-gzip"
#: What an unquoted ETag may hold (RFC 9110 ``etagc``, ASCII only): no quote, space or control.
_ETAG_CHARS = re.compile(r"[\x21\x23-\x7e]*")


class S3Store(BaseStore):
    """Files in an S3 bucket, under the key prefix ``STORE_PATH``.

    Required settings: ``STORE_S3_BUCKET`` and ``STORE_S3_REGION``; the others are listed
    with their defaults in ``docs/s3.rst``. No request is sent until the store is used, and
    one boto3 client per process is shared by all threads and by copies from :meth:`at`.

    :raises NotConfiguredError: when a setting is missing or wrong.
    """

    schema: ClassVar[Schema] = S3_STORE_SETTINGS

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.settings: S3Settings = read_s3_settings(self.config)
        self.serve_by_redirect = self.settings.serve == "redirect"
        self.private_redirects = self.settings.presigned
        self._clients = ClientHolder(functools.partial(make_client, self.settings))
        # What this process learned about the bucket: shared by every store on it.
        self._facts = facts_about(self.settings.endpoint, self.bucket)
        self._transfer_config = TransferConfig(
            multipart_threshold=self.settings.multipart_threshold,
            multipart_chunksize=self.settings.multipart_chunksize,
            max_request_concurrency=self.settings.max_concurrency,
            # Parts read ahead of the network: bounds memory at concurrency x chunk size.
            max_in_memory_upload_chunks=self.settings.max_concurrency,
        )

    @property
    def client(self) -> S3Client:
        """The store's boto3 S3 client (made on first use), for anything not covered here."""
        return self._clients.get()

    @property
    def bucket(self) -> str:
        """The bucket's name."""
        return self.settings.bucket

    def location(self) -> Location:
        """The endpoint, bucket and key prefix: what names this store's objects (the
        region is in the endpoint when no ``S3_ENDPOINT_URL`` is set), and a digest of the
        access key id: on a multi-tenant server (Ceph RGW tenants) one bucket name is
        another bucket for each tenant's keys. The key id itself is not given out (the read
        cache writes locations into files); without ``S3_ACCESS_KEY`` (boto3's credential
        chain) that part is empty, as resolving credentials may ask the network.
        """
        access_key = self.settings.access_key
        key_id = hashlib.sha256(access_key.encode()).hexdigest()[:16] if access_key else ""
        return ("s3", self.settings.endpoint, self.bucket, self.settings.prefix, key_id)

    def object_key(self, key: str) -> str:
        """The bucket's object key for the store key ``key``: ``STORE_PATH/key``.

        :raises InvalidKeyError: when ``key`` would leave the store's prefix.
        """
        return join_key(self.settings.prefix, clean_key(key))

    def hidden_object_key(self, name: str) -> str:
        """The bucket's object key of ``name`` below ``STORE_PATH``, unchecked: for the
        store's own working objects (a probe's scratch object, a tus upload being
        assembled), whose names start with a ``.`` so that no store key, listing or serving
        route reaches them.
        """
        prefix = self.settings.prefix
        return f"{prefix}/{name}" if prefix else name

    def _errors(self, action: str, key: str) -> AbstractContextManager[None]:
        return s3_errors(self.settings, f"{action} {key!r}")

    # -- writing ----------------------------------------------------------------------------

    def _write(
        self, chunks: Iterator[bytes], keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        with spool_body(chunks, self._gzipped(meta)) as body:
            return self._write_body(body, keys, meta, overwrite)

    def _write_upload(
        self, upload: Upload, keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        staged = upload.stream
        if isinstance(staged, StagedObject) and self._copies_in_place(staged, meta):
            return self._write_copy(staged, keys, meta, overwrite)
        with prepare_body(upload, self._gzipped(meta)) as body:
            return self._write_body(body, keys, meta, overwrite)

    def _copies_in_place(self, staged: StagedObject, meta: FileMeta) -> bool:
        """Whether saving ``staged`` as ``meta`` copies it inside the bucket: it is an
        object of this bucket read with these very settings (so with rights to read it),
        wanted whole (nothing read of it yet), not a type stored compressed, and from
        ``STORE_S3_MULTIPART_THRESHOLD``: a copy in parts ends with the
        ``CompleteMultipartUpload`` that servers check ``If-None-Match`` on (some, moto
        among them, ignore it on ``CopyObject``), and a smaller file is cheap to send again.
        """
        return (
            staged.settings == self.settings
            and staged.size >= self.settings.multipart_threshold
            and staged.tell() == 0
            and not self._gzipped(meta)
        )

    def _gzipped(self, meta: FileMeta) -> bool:
        return media_type(meta.content_type) in self.settings.gzip_types

    def _write_body(
        self, body: Body, keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        args = self._upload_args(meta, body)

        def send(key: str, conditional: bool) -> tuple[str, datetime]:
            return self._send(body, key, args, conditional=conditional)

        large = body.size >= self.settings.multipart_threshold
        key, (etag, last_modified) = self._place(keys, overwrite, send, large=large)
        return FileInfo(
            key,
            body.original_size,
            meta.content_type,
            meta.filename,
            last_modified,
            _content_etag(etag, gzipped=body.gzipped),
        )

    def _write_copy(
        self, staged: StagedObject, keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        """:meth:`_write_body` for an object already in the bucket: a copy of it, stored
        as a save stores a file (its arguments replace every header and metadata of the
        staged object), under the same rules for keys."""
        args = confirmed_copy_args(self._upload_args(meta, copy_body()), {}, staged.etag)

        def send(key: str, conditional: bool) -> FileInfo:
            return self._copy(staged, key, args, conditional=conditional)

        return self._place(keys, overwrite, send, large=True)[1]

    def _place(
        self,
        keys: Iterator[str],
        overwrite: bool,
        send: Callable[[str, bool], T],
        *,
        large: bool,
    ) -> tuple[str, T]:
        """Write with ``send(key, conditional)`` under the first of ``keys`` no other file
        holds (the first, replaced, with ``overwrite``): the key and what ``send`` gave.

        :param large: whether a refused conditional write would cost much: a HEAD first.
        """
        sent: dict[str, T] = {}
        conditional = False

        def claim(key: str) -> bool:
            result = self._claim(key, send, conditional=conditional, large=large)
            if result is not None:
                sent[key] = result
            return result is not None

        first = next(keys)
        with self._errors("save", first):
            if overwrite:
                sent[first] = send(first, False)
                key = first
            else:
                conditional = self._claims_conditionally(first)
                key = first_free_key(itertools.chain([first], keys), claim)
        return key, sent[key]

    def _upload_args(self, meta: FileMeta, body: Body) -> dict[str, Any]:
        """Upload arguments: ``STORE_S3_OBJECT_PARAMS`` plus what is set for each file.

        The object gets the headers the serving route would send (:meth:`_object_type`,
        :meth:`_disposition`): a redirect hands the browser to S3, which sends them itself.
        """
        args = dict(self.settings.object_params)
        metadata = dict(args.pop("Metadata", {}))
        if body.gzipped:
            args["ContentEncoding"] = "gzip"
            metadata[ORIGINAL_SIZE_META] = str(body.original_size)
        object_type = self._object_type(meta.content_type)
        if object_type != meta.content_type:
            metadata[CONTENT_TYPE_META] = meta.content_type
        if metadata:
            args["Metadata"] = metadata
        if self.settings.acl:
            args["ACL"] = self.settings.acl
        args["ContentType"] = object_type
        args["ContentDisposition"] = self._disposition(meta.content_type, meta.filename)
        return args

    def _object_type(self, content_type: str) -> str:
        """The ``Content-Type`` an object of a file of ``content_type`` is stored with: the
        one the serving route would send (scripts as text, text with a charset)."""
        return served_content_type(content_type, scripts_as_text=self.scripts_as_text)

    def _disposition(self, content_type: str, filename: str) -> str:
        """Content-Disposition sent by S3 itself when browsers fetch the object directly:
        ``attachment`` for any type not on the inline allow-list."""
        return file_disposition(
            content_type, filename, inline_active_content=self.inline_active_content
        )

    def _claims_conditionally(self, key: str) -> bool:
        """Whether saves claim keys with ``If-None-Match: *`` (else a checked rename).

        ``STORE_S3_CONDITIONAL_WRITES = "probe"`` asks the server once per bucket and process
        (:func:`~.s3_probes.probe_conditional_writes`) before relying on it.

        :raises UnsupportedByServerError: when the server does not keep conditional writes:
            a save would risk overwriting another file, so none is attempted.
        """
        mode = self.settings.conditional_writes
        if mode != "probe":
            return mode == "trust"
        facts = self._facts
        if facts.conditional_writes is None:
            with facts.lock:
                if facts.conditional_writes is None:
                    scratch = PROBE_MARK + uuid.uuid4().hex
                    facts.conditional_writes = probe_conditional_writes(
                        self.client, self.bucket, self.hidden_object_key(scratch)
                    )
        if facts.conditional_writes:
            raise UnsupportedByServerError(
                f"Cannot save {key!r}: the server of the {where(self.settings)} does not keep "
                f"conditional writes ({facts.conditional_writes}), so a save could overwrite "
                "another file of the same name; nothing was stored. Set "
                'STORE_S3_CONDITIONAL_WRITES = "off" to accept a checked rename instead (two '
                "saves of one name at the same moment may still overwrite one another), or "
                'STORE_ON_CONFLICT = "overwrite".'
            )
        return True

    def _claim(
        self, key: str, send: Callable[[str, bool], T], *, conditional: bool, large: bool
    ) -> T | None:
        """``send(key, conditional)`` unless a file has ``key``: what it gave, or ``None``."""
        if not conditional:
            # Checked rename for servers without If-None-Match: a race can still overwrite.
            return None if self._head(key) else send(key, False)
        if large and self._head(key):
            return None  # spare a large upload that would be refused
        try:
            return send(key, True)
        except ClientError as exc:
            if error_code(exc) in CONDITION_FAILED_CODES:
                return None
            raise

    def _send(
        self, body: Body, key: str, args: dict[str, Any], *, conditional: bool
    ) -> tuple[str, datetime]:
        """Upload ``body`` as ``key``: one PUT below the multipart threshold, else multipart.

        What the server stored is checked against what was sent: after one PUT its ETag
        must be the MD5 of the bytes (unless KMS or SSE-C encryption makes it another
        value), after a multipart upload its size must be theirs.

        :raises UnsupportedByServerError: when the server stored other bytes (the object is
            deleted if no other write replaced it meanwhile).
        """
        extra = {**args, "IfNoneMatch": "*"} if conditional else args
        object_key = self.object_key(key)
        if body.size < self.settings.multipart_threshold:
            response = self.client.put_object(
                Bucket=self.bucket,
                Key=object_key,
                Body=body.rewind(),
                ContentLength=body.size,
                **extra,
            )
            etag = unquoted_etag(response)
            if _etag_is_md5(cast("Mapping[str, Any]", response)):
                md5 = body.md5()
                if etag != md5:
                    self._discard(key, etag, f"ETag {etag}, not the MD5 {md5} of the bytes sent")
            headers = response["ResponseMetadata"].get("HTTPHeaders", {})
            return etag, _http_date(headers.get("date"))
        with ConditionalTransferManager(self.client, self._transfer_config) as manager:
            manager.upload(body.rewind(), self.bucket, object_key, extra_args=extra).result()
        head = self.client.head_object(Bucket=self.bucket, Key=object_key)
        etag = unquoted_etag(head)
        if head["ContentLength"] != body.size:
            self._discard(key, etag, f"{head['ContentLength']} bytes, not the {body.size} sent")
        return etag, head["LastModified"]

    def _copy(
        self, staged: StagedObject, key: str, args: dict[str, Any], *, conditional: bool
    ) -> FileInfo:
        """Copy ``staged`` to ``key`` inside the bucket; the metadata of the copy.

        The copy names the staged object's ETag, checked by the HEAD of the source and by
        every part copied; ``CompleteMultipartUpload`` checks ``IfNoneMatch`` (the key):
        :meth:`_source_changed` tells which condition failed.

        :raises UploadReadError: when the staged object changed since it was checked.
        :raises UnsupportedByServerError: when the copy's size is not the staged object's.
        """
        extra = {**args, "IfNoneMatch": "*"} if conditional else args
        try:
            copy_object(
                self.client,
                self._transfer_config,
                self.bucket,
                staged.object_key,
                self.object_key(key),
                extra,
            )
        except ClientError as exc:
            if error_code(exc) in CONDITION_FAILED_CODES and self._source_changed(exc, key):
                raise UploadReadError(
                    f"The staged upload for {key!r} changed while it was saved."
                ) from exc
            raise
        copied = self._head(key)
        if copied is None:
            raise FileNotFoundInStoreError(f"The copy of the upload {key!r} is missing.")
        if copied["ContentLength"] != staged.size:
            problem = f"{copied['ContentLength']} bytes, not the {staged.size} copied"
            self._discard(key, unquoted_etag(copied), problem)
        return info_from_response(key, copied)

    def _source_changed(self, exc: ClientError, key: str) -> bool:
        """Whether a copy to ``key`` refused on a condition (:meth:`_copy`) was refused
        because its source changed, not because ``key`` is taken."""
        if exc.operation_name in {"HeadObject", "UploadPartCopy"}:
            return True
        if exc.operation_name == "CompleteMultipartUpload" and (
            error_code(exc) == "ConditionalRequestConflict"
        ):
            return False
        # A CopyObject checks both conditions. A 412 on completing with the key free says
        # neither: ending here keeps a server that always answers so from copying for ever.
        return self._head(key) is None

    def _discard(self, key: str, etag: str, problem: str) -> NoReturn:
        """Delete the object just written as ``key`` (ETag ``etag``) that holds other bytes
        than were sent, unless another write replaced it meanwhile, and say so.

        :raises UnsupportedByServerError: always.
        """
        head = self._head(key)
        if (
            head is not None
            and unquoted_etag(head) == etag
            and self._delete_version(key, head["ETag"])
        ):
            fate = "it was deleted"
        else:
            fate = "another write replaced it since, and that one was left alone"
        raise UnsupportedByServerError(
            f"Cannot save {key!r}: the server of the {where(self.settings)} stored other "
            f"bytes than were sent ({problem}); {fate}. Servers that do not understand "
            "botocore's checksums (sent aws-chunked over HTTPS) keep their framing as part "
            'of the file: set STORE_S3_CHECKSUM_CALCULATION = "when_required".'
        )

    # -- reading ----------------------------------------------------------------------------

    def _head(self, key: str) -> dict[str, Any] | None:
        """The object's HEAD response, or ``None`` when there is no such object.

        :raises ClientError: also when the bucket is missing (:meth:`_check_bucket`).
        """
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if error_code(exc) not in NOT_FOUND_CODES:
                raise
            self._check_bucket()
            return None
        self._facts.exists = True
        return cast("dict[str, Any]", response)

    def _check_bucket(self) -> None:
        """Make sure the bucket exists, once per process: S3 answers a HEAD of an object
        with the same bare 404 for a missing object and for a missing bucket.

        :raises ClientError: HeadBucket's 404, which :func:`s3_errors` reports as
            :class:`BucketNotFoundError`.
        """
        if self._facts.exists:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND_CODES or error_code(exc) == "NoSuchBucket":
                raise
            # Another refusal (403: not ours to list) still says that the bucket exists.
        self._facts.exists = True

    def open(self, key: str) -> BinaryIO:
        return self.open_with_info(key)[0]

    def open_with_info(self, key: str) -> tuple[BinaryIO, FileInfo]:
        object_key = self.object_key(key)
        with self._errors("open", key):
            response = self.client.get_object(Bucket=self.bucket, Key=object_key)
        return self._whole(response, key)

    def _whole(self, response: Mapping[str, Any], key: str) -> tuple[BinaryIO, FileInfo]:
        """The saved bytes and the metadata of a GET's answer with the whole object."""
        try:
            info = info_from_response(clean_key(key), response)
        except BaseException:
            response["Body"].close()
            raise
        body = self._body(response, key)
        if response.get("ContentEncoding") == "gzip":
            body = cast(BinaryIO, _GunzipReader(body, info.size, self._described(key)))
        return body, info

    def open_span_with_info(self, key: str, byte_range: ByteRange) -> OpenedSpan | None:
        """One ranged GET: the bytes of the range and the object's metadata come in one
        answer, the object's size in its ``Content-Range``.

        S3 cuts the range as a 206 would (a suffix longer than the object is all of it, a
        range running past the end stops there). Some cases take more requests, as
        :meth:`info` then :meth:`open_range` of that version: S3 refusing the range
        (``InvalidRange``: past the end of the object, or of a gzip-encoded object's
        compressed bytes); a gzip-encoded object, whose compressed bytes S3 cuts (read
        whole instead, with ``If-Match``, and unzipped up to the range; its metadata comes
        from the ranged GET); a server that cuts the range otherwise than a 206 would (s3rver
        reads ``bytes=-3`` as ``bytes=0-3``). A server that ignores ``Range`` and sends the
        whole object is read through to the range.

        :raises StoreUnavailableError: when the answer's ``Content-Range`` is missing or
            malformed, or states another length than the body's.
        :raises FileChangedError: when, in the cases that take more requests, the object
            was replaced between them (asking again opens the new version).
        """
        check_byte_range(byte_range)
        object_key = self.object_key(key)
        with self._errors("open", key):
            try:
                response = self.client.get_object(
                    Bucket=self.bucket, Key=object_key, Range=_range_header(byte_range)
                )
            except ClientError as exc:
                if error_code(exc) != "InvalidRange":
                    raise
                # Past the end of the object, or of a gzip-encoded object's compressed bytes.
                return self._open_span_of(self.info(key), byte_range)
        if response["ResponseMetadata"].get("HTTPStatusCode") == 200:
            stream, info = self._whole(response, key)  # the server ignored Range
            spans = spans_to_serve([byte_range], info.size)
            if not spans:
                stream.close()
                return OpenedSpan(info, None, None)
            return OpenedSpan(info, spans[0], skipped_to(stream, spans[0][0]))
        try:
            span, size = self._stated_span(response, key, byte_range)
            info = info_from_response(clean_key(key), {**response, "ContentLength": size})
        except BaseException:
            response["Body"].close()
            raise
        wanted = spans_to_serve([byte_range], size)
        if not wanted or not starts_and_covers(span, wanted[0]):
            # Cut otherwise: ask for the bytes by number, of the version HEAD names.
            response["Body"].close()
            return self._open_span_of(self.info(key), byte_range)
        if response.get("ContentEncoding") == "gzip":
            response["Body"].close()
            return self._open_span_of(info, byte_range)
        return OpenedSpan(info, wanted[0], self._body(response, key))

    def _open_span_of(self, info: FileInfo, byte_range: ByteRange) -> OpenedSpan:
        """The span of ``byte_range`` of the version ``info`` describes, opened by number
        with :meth:`open_range` (``If-Match``; a gzip-encoded object read whole, unzipped).

        :raises FileChangedError: when the object is no longer that version.
        """
        spans = spans_to_serve([byte_range], info.size)
        if not spans:
            return OpenedSpan(info, None, None)
        start, stop = spans[0]
        return OpenedSpan(info, spans[0], self.open_range(info.key, start, stop, etag=info.etag))

    def _stated_span(
        self, response: Mapping[str, Any], key: str, asked: ByteRange
    ) -> tuple[Span, int]:
        """The span a 206 answering the byte range ``asked`` carries, and the object's size,
        as its ``Content-Range`` states them.

        :raises StoreUnavailableError: when the ``Content-Range`` is missing or malformed,
            or states another length than the body's.
        """
        found = content_range_of(response.get("ContentRange"), response.get("ContentLength"))
        if found is None:
            raise self._range_error(response, key, asked)
        return found

    def _range_error(
        self, response: Mapping[str, Any], key: str, asked: ByteRange
    ) -> StoreUnavailableError:
        """The error for a 206 answering ``asked`` that does not describe the bytes asked for."""
        return StoreUnavailableError(
            f"The server of the {where(self.settings)} answered a GET of "
            f"{_range_header(asked)} of {key!r} with Content-Range "
            f"{str(response.get('ContentRange'))[:80]!r}, which does not describe the bytes "
            "asked for; none of them was used."
        )

    def _body(self, response: Mapping[str, Any], key: str) -> BinaryIO:
        """The response's body, its read failures raised as :class:`StoreUnavailableError`."""
        return cast(BinaryIO, ObjectBody(response["Body"], self._described(key)))

    def _described(self, key: str) -> str:
        """``key`` and where it is read from, for messages."""
        return f"{key!r} from the bucket {self.bucket!r} at {self.settings.endpoint}"

    def open_range(self, key: str, start: int, stop: int, *, etag: str | None = None) -> BinaryIO:
        """A ranged GET: only bytes ``start`` to ``stop - 1`` of ``key`` cross the network.

        With ``etag`` the GET carries ``If-Match``, so S3 itself refuses another version
        (no extra request). A gzip-encoded object (``STORE_S3_GZIP_TYPES``) holds fewer bytes
        than it serves, so S3 cannot cut its range (S3 answers with compressed bytes, or
        refuses a range beyond their end): it is read whole instead, unzipped, up to ``start``.
        Its ETag tells so (:func:`_content_etag`), and then no ranged GET is tried first.

        :raises InvalidArgumentError: for an empty or negative range.
        :raises FileChangedError: when ``key`` no longer has the ETag ``etag``.
        """
        if not 0 <= start < stop:
            raise InvalidArgumentError(f"The byte range {start}-{stop} is empty or negative.")
        if etag is not None and etag.endswith(GZIP_ETAG_MARK):
            return super().open_range(key, start, stop, etag=etag)
        object_key = self.object_key(key)
        condition: dict[str, Any] = {"IfMatch": f'"{etag}"'} if etag else {}
        with self._errors("open", key):
            try:
                response = self.client.get_object(
                    Bucket=self.bucket,
                    Key=object_key,
                    Range=f"bytes={start}-{stop - 1}",
                    **condition,
                )
            except ClientError as exc:
                if error_code(exc) in CONDITION_FAILED_CODES:
                    raise FileChangedError(
                        f"The file stored as {key!r} has changed (ETag {etag!r})."
                    ) from None
                if error_code(exc) != "InvalidRange":
                    raise
                return super().open_range(key, start, stop, etag=etag)
        if etag is not None and unquoted_etag(response) != etag:
            # Servers that ignore If-Match answer with whatever version they have.
            response["Body"].close()
            raise FileChangedError(f"The file stored as {key!r} has changed (ETag {etag!r}).")
        if response.get("ContentEncoding") == "gzip":
            response["Body"].close()
            return super().open_range(key, start, stop, etag=etag)
        if response["ResponseMetadata"].get("HTTPStatusCode") == 200:
            # The server ignored Range: the whole object, read through to ``start``.
            return skipped_to(self._body(response, key), start)
        try:
            span, size = self._stated_span(response, key, (start, stop))
            if not starts_and_covers(span, (start, min(stop, size))):
                raise self._range_error(response, key, (start, stop))
        except BaseException:
            response["Body"].close()
            raise
        return self._body(response, key)

    def info(self, key: str) -> FileInfo:
        with self._errors("read the metadata of", key):
            response = self._head(key)
        if response is None:
            raise FileNotFoundInStoreError(f"No file is stored as {key!r}.")
        return info_from_response(clean_key(key), response)

    def exists(self, key: str) -> bool:
        try:
            self.object_key(key)
        except InvalidKeyError:
            return False
        with self._errors("look up", key):
            return self._head(key) is not None

    def delete(self, key: str, *, if_etag: str | None = None) -> bool:
        """Delete ``key``'s object; with ``if_etag``, only that version of it.

        A conditional delete compares the ETag of a HEAD, then sends the DELETE with
        ``If-Match``: S3 refuses it when another version was written in between. A server
        that ignores ``If-Match`` on DELETE (some S3-compatible ones do; none is sent with
        ``STORE_S3_CONDITIONAL_WRITES = "off"``) leaves that short gap open: a version
        written between the HEAD and the DELETE can be deleted.
        """
        object_key = self.object_key(key)
        with self._errors("delete", key):
            # DeleteObject succeeds for missing keys too; HEAD tells whether there was one.
            head = self._head(key)
            if head is None:
                return False
            if if_etag is None:
                self.client.delete_object(Bucket=self.bucket, Key=object_key)
                return True
            if info_from_response(clean_key(key), head).etag != if_etag:
                return False
            return self._delete_version(key, head["ETag"])

    def _delete_version(self, key: str, etag: str) -> bool:
        """Delete ``key``'s object if its ETag (as S3 sends it, quoted) is still ``etag``.

        ``False`` when S3 answers that another version, or none, is there now.
        """
        condition: dict[str, Any] = {}
        if self.settings.conditional_writes != "off":
            condition["IfMatch"] = etag
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key), **condition)
        except ClientError as exc:
            if error_code(exc) in CONDITION_FAILED_CODES | NOT_FOUND_CODES:
                return False
            raise
        return True

    def keys(self, prefix: str = "") -> Iterator[str]:
        root = f"{self.settings.prefix}/" if self.settings.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=root + prefix
        )
        # S3 lists keys in UTF-8 byte order, which is code point order: already sorted.
        with self._errors("list", prefix):
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][len(root) :]
                    if _is_store_key(key):
                        yield key

    def clear(self, prefix: str = "") -> int:
        """Delete every file whose key starts with ``prefix``, as listed by :meth:`keys`.

        Keys go :data:`DELETE_BATCH` at a time in one DeleteObjects request each (S3's
        limit is 1000 per request) instead of a DELETE per file.

        :raises StoreUnavailableError: (or a subclass) when S3 refuses a key of a batch;
            the message names that key. Files of earlier batches stay deleted.
        """
        deleted = 0
        keys = self.keys(prefix)
        while batch := list(itertools.islice(keys, DELETE_BATCH)):
            self._delete_objects(batch)
            deleted += len(batch)
        return deleted

    def _delete_objects(self, keys: list[str]) -> None:
        """Delete ``keys`` in one DeleteObjects request; a key S3 refused raises its error."""
        by_object = {self.object_key(key): key for key in keys}
        objects: list[Any] = [{"Key": object_key} for object_key in by_object]
        with self._errors("delete", keys[0]):
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            )
        for problem in response.get("Errors", [])[:1]:
            key = by_object.get(problem.get("Key", ""), keys[0])
            with self._errors("delete", key):
                # Mapped as if S3 had answered the request with it: one table of errors.
                code, message = problem.get("Code", ""), problem.get("Message", "")
                raise ClientError({"Error": {"Code": code, "Message": message}}, "DeleteObjects")

    # -- URLs and access --------------------------------------------------------------------

    def direct_url(self, key: str, expires: int | None = None) -> str:
        """The object's URL: presigned when ``STORE_S3_PRESIGNED`` or ``expires`` is given,
        else on ``STORE_DOMAIN`` or the bucket's own address."""
        if expires is not None or self.settings.presigned:
            return self.presigned_url(key, expires)
        return public_url(self.settings, self.domain, self.object_key(key))

    def presigned_url(self, key: str, expires: int | None = None) -> str:
        """A presigned GET URL for ``key``, valid ``expires`` seconds (``STORE_S3_URL_EXPIRES``).

        Signing happens locally; no request is sent.

        :raises InvalidArgumentError: for a lifetime that is not 1 second to 7 days.
        """
        seconds = _check_expires(self.settings.url_expires if expires is None else expires)
        object_key = self.object_key(key)
        with self._errors("sign a URL for", key):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": object_key}, ExpiresIn=seconds
            )

    def make_public(self, key: str) -> None:
        """Let anyone read ``key`` through its bucket URL (the ``public-read`` ACL).

        :raises ACLNotSupportedError: when the bucket has ACLs disabled.
        """
        self._set_acl(key, "public-read")

    def make_private(self, key: str) -> None:
        """Let only the bucket owner read ``key`` (the ``private`` ACL).

        :raises ACLNotSupportedError: when the bucket has ACLs disabled.
        """
        self._set_acl(key, "private")

    def _set_acl(self, key: str, acl: Literal["public-read", "private"]) -> None:
        object_key = self.object_key(key)
        with self._errors(f"make {acl}", key):
            self.client.put_object_acl(Bucket=self.bucket, Key=object_key, ACL=acl)

    # -- direct uploads ---------------------------------------------------------------------

    def presigned_upload(
        self,
        filename: str,
        *,
        max_size: int,
        content_type: str | None = None,
        expires: int | None = None,
    ) -> DirectUpload:
        """A presigned POST that lets a browser send one file straight to the bucket.

        The store chooses the file's key (:attr:`DirectUpload.key`): the filename made safe,
        inside :attr:`destination`, with a unique suffix unless ``ON_CONFLICT`` is
        ``overwrite``. The form itself writes to a hidden staging key that nothing serves;
        :meth:`confirm_upload` checks the object there and copies it to the file's key, which
        no form can write to. The limits travel in the form, signed with
        ``STORE_S3_UPLOAD_SECRET`` (else the app's ``SECRET_KEY``), so a server that does not
        enforce the POST policy cannot be used to forge them. Signing happens locally; no
        request is sent.

        :param filename: the client's filename, recorded as the original filename.
        :param max_size: the largest file accepted, in bytes (S3 allows up to 5 GiB).
        :param content_type: the content type the file must have (default: from the name);
            one media type, stored normalised.
        :param expires: seconds the form stays valid (default ``STORE_S3_URL_EXPIRES``).
        :raises InvalidArgumentError: for a size, lifetime or content type out of range.
        :raises NotConfiguredError: when there is no secret to sign the form with.
        :raises FileTypeRejectedError: when ``STORE_ALLOWED_TYPES`` does not allow the
            content type; nothing is signed.
        """
        max_size = check_max_size(max_size)
        seconds = _check_expires(self.settings.url_expires if expires is None else expires)
        safe_name = secure_filename(filename)
        if content_type is None:
            content_type = guess_content_type(safe_name)
        content_type = parse_content_type(content_type)
        allowed = self.content_rules.allowed_types
        if allowed is not None:
            check_declared_type(content_type, allowed, filename)
        signer = self._upload_signer()
        key = join_key(self.destination, safe_name)
        if self.on_conflict != "overwrite":
            key = with_unique_suffix(key)
        object_key = self.object_key(key)
        ticket = signer.new_ticket(
            object_key,
            max_size=max_size,
            content_type=content_type,
            disposition=self._disposition(content_type, filename),
            expires=seconds,
        )
        fields, conditions = post_form(
            ticket,
            signer.metadata(ticket),
            acl=self.settings.acl,
            object_params=self.settings.object_params,
        )
        with self._errors("sign an upload form for", key):
            post = self.client.generate_presigned_post(
                Bucket=self.bucket,
                Key=self.hidden_object_key(signer.staging_name(object_key)),
                Fields=fields,
                Conditions=conditions,
                ExpiresIn=seconds,
            )
        return DirectUpload(post["url"], post["fields"], key, max_size, content_type, seconds)

    def confirm_upload(
        self, key: str, *, max_size: int | None = None, content_type: str | None = None
    ) -> FileWrapper:
        """Check a direct upload, make it a file of the store, and return its
        :class:`~flask_store.FileWrapper`.

        The object the form wrote must carry the form's signature, and its real size and
        type (read from the bucket, not from the form) must keep the signed limits, and
        ``max_size`` / ``content_type`` too when given. It is then copied to ``key`` (never
        over another file unless ``ON_CONFLICT`` is ``overwrite``) with the content type and
        filename of the form, and the staging object is deleted. Confirming a confirmed key
        again returns the same file; a form used again after confirmation cannot change it.

        An object at ``key`` that was not made this way (saved by :meth:`save`) is only
        checked against ``max_size`` / ``content_type``, when given.

        .. versionchanged:: 0.2
            The form writes to a staging key and confirming copies it to ``key``; its limits
            are signed and checked against the object itself.

        :raises FileNotFoundInStoreError: when nothing was uploaded for ``key``.
        :raises FileTooLargeError: when the file is larger than its limit (an upload is deleted).
        :raises FileTypeRejectedError: when the file has another type, or its first bytes are
            of no type ``STORE_ALLOWED_TYPES`` allows (an upload is deleted).
        :raises UploadRejectedError: when the upload's signature is missing or wrong, it came
            after its form expired, or it reuses the form of a confirmed file (the upload is
            deleted; a confirmed file is kept); or when an object not made by
            :meth:`presigned_upload` is given no limits to check, or breaks them (it is
            kept: it may be a file :meth:`save` stored under a key a client named).
        :raises NotConfiguredError: when there is no secret to check signatures with.
        """
        name = clean_key(key)
        limits = UploadLimits(
            None if max_size is None else check_max_size(max_size, post=False),
            None if content_type is None else parse_content_type(content_type),
        )
        signer = self._upload_signer()
        object_key = self.object_key(name)
        staging = self.hidden_object_key(signer.staging_name(object_key))
        with self._errors("confirm the upload", name):
            staged = head_object(self.client, self.bucket, staging)
            if staged is None:
                return self._confirmed_file(name, signer, limits)
            ticket = signer.verified(object_key, staged)
            if ticket is None:
                self._refuse(
                    name,
                    [staging],
                    UploadRejectedError(
                        "it carries no valid signature of this store's forms (a signed form "
                        "field was changed or left out, or another secret signed it)"
                    ),
                )
            size, staged_type = int(staged["ContentLength"]), staged.get("ContentType")
            breach = ticket.breach(size, staged_type, staged["LastModified"]) or limits.breach(
                size, staged_type
            )
            if breach is not None:
                self._refuse(name, [staging], breach)
            self._check_staged_type(name, staging, staged, ticket)
            existing = self._head(name)
            if existing is not None:
                settled = self._settle_existing(name, staging, staged, ticket, existing, signer)
                if settled is not None:
                    return settled
            info = self._copy_staged(name, staging, staged, ticket, signer)
            breach = ticket.limits.breach(info.size, info.content_type) or limits.breach(
                info.size, info.content_type
            )
            if breach is not None:
                # The staging object changed between the check and the copy, on a server that
                # ignores CopySourceIfMatch: the copy is of bytes nobody checked.
                self._refuse(name, [object_key, staging], breach)
            self.client.delete_object(Bucket=self.bucket, Key=staging)
        return FileWrapper(self, name, info=info)

    def _check_staged_type(
        self, name: str, staging: str, staged: Mapping[str, Any], ticket: UploadTicket
    ) -> None:
        """Refuse (and delete) a staging object whose first bytes, or signed type, are of no
        type ``STORE_ALLOWED_TYPES`` allows, as :meth:`save` refuses such a file.

        The bytes read are of the version checked (``If-Match`` its ETag), the one the copy
        takes (``CopySourceIfMatch``): a form posted again in between is refused.
        """
        allowed = self.content_rules.allowed_types
        if allowed is None:
            return
        etag = unquoted_etag(staged)
        head = b""
        if int(staged["ContentLength"]):
            try:
                response = self.client.get_object(
                    Bucket=self.bucket,
                    Key=staging,
                    Range=f"bytes=0-{SNIFF_BYTES - 1}",
                    IfMatch=f'"{etag}"',
                )
            except ClientError as exc:
                if error_code(exc) not in CONDITION_FAILED_CODES:
                    raise
                response = None
            if response is not None:
                with self._body(response, name) as body:
                    head = read_up_to(body, SNIFF_BYTES)
            if response is None or unquoted_etag(response) != etag:
                self._refuse(name, [staging], UploadRejectedError("it changed meanwhile"))
        try:
            check_type(head, ticket.content_type, allowed, _ticket_filename(ticket, name))
        except FileTypeRejectedError as exc:
            self._refuse(name, [staging], exc)

    def _upload_signer(self) -> UploadSigner:
        """The signer of this store's upload forms.

        :raises NotConfiguredError: without ``STORE_S3_UPLOAD_SECRET`` or an app's SECRET_KEY.
        """
        secret = upload_secret(self.settings.upload_secret)
        if secret is None:
            raise self.config.error(
                "S3_UPLOAD_SECRET",
                "is needed to sign and check direct upload forms: set it to a long random "
                "value, or use the store inside a Flask app that has a SECRET_KEY.",
            )
        return UploadSigner(secret, self.bucket)

    def _refuse(self, name: str, object_keys: list[str], reason: UploadRejectedError) -> NoReturn:
        """Delete ``object_keys`` and raise ``reason`` (of its own class) about ``name``."""
        for object_key in object_keys:
            self.client.delete_object(Bucket=self.bucket, Key=object_key)
        raise type(reason)(
            f"The upload {name!r} was refused and deleted: {str(reason).rstrip('.')}."
        )

    def _confirmed_file(self, name: str, signer: UploadSigner, limits: UploadLimits) -> FileWrapper:
        """Confirm ``name`` when no upload is waiting: a file confirmed before (a retry) as it
        is, or one stored otherwise checked against ``limits``, which must be given.

        A file stored otherwise is never deleted, whatever limit it breaks: an app that
        confirms the key its client sends back would let a client name any file
        :meth:`save` stored, and that file is not the client's to delete.
        """
        existing = self._head(name)
        if existing is None:
            raise FileNotFoundInStoreError(f"No file was uploaded as {name!r}.")
        info = info_from_response(name, existing)
        if signer.confirmation(self.object_key(name), existing) is not None:
            return FileWrapper(self, name, info=info)
        if limits == UploadLimits(None, None):
            raise UploadRejectedError(
                f"{name!r} was not uploaded through presigned_upload(); pass max_size= "
                "to confirm_upload() to check it anyway."
            )
        breach = limits.breach(info.size, info.content_type)
        if breach is not None:
            raise type(breach)(
                f"The file {name!r} was refused and kept (it was not uploaded through "
                f"presigned_upload()): {str(breach).rstrip('.')}."
            )
        return FileWrapper(self, name, info=info)

    def _settle_existing(
        self,
        name: str,
        staging: str,
        staged: Mapping[str, Any],
        ticket: UploadTicket,
        existing: Mapping[str, Any],
        signer: UploadSigner,
    ) -> FileWrapper | None:
        """Decide a checked upload whose key already holds a file: that file when it is this
        very upload (a retry), ``None`` when it may be replaced (``ON_CONFLICT`` is
        ``overwrite``); otherwise the upload is deleted and refused."""
        confirmation = signer.confirmation(self.object_key(name), existing)
        if confirmation is not None and confirmation.nonce == ticket.nonce:
            if confirmation.source_etag == unquoted_etag(staged):
                self.client.delete_object(Bucket=self.bucket, Key=staging)
                return FileWrapper(self, name, info=info_from_response(name, existing))
            self._refuse(
                name,
                [staging],
                UploadRejectedError(
                    "its form was used again after the file was already confirmed (the "
                    "confirmed file is unchanged)"
                ),
            )
        if self.on_conflict != "overwrite":
            self._refuse(
                name, [staging], UploadRejectedError("another file is stored under its key")
            )
        return None

    def _copy_staged(
        self,
        name: str,
        staging: str,
        staged: Mapping[str, Any],
        ticket: UploadTicket,
        signer: UploadSigner,
    ) -> FileInfo:
        """Copy the checked staging object to ``name``, stored as :meth:`save` would store
        it; the metadata of the copy."""
        meta = FileMeta(_ticket_filename(ticket, name), ticket.content_type)
        source_etag = unquoted_etag(staged)
        object_key = self.object_key(name)
        args = confirmed_copy_args(
            self._upload_args(meta, copy_body()),
            signer.confirmation_metadata(object_key, Confirmation(ticket.nonce, source_etag)),
            source_etag,
        )
        if self.on_conflict != "overwrite" and self._claims_conditionally(name):
            args["IfNoneMatch"] = "*"
        try:
            copy_object(self.client, self._transfer_config, self.bucket, staging, object_key, args)
        except ClientError as exc:
            if error_code(exc) not in CONDITION_FAILED_CODES:
                raise
            # The form was used again during the check, or another call confirmed it first.
            self._refuse(
                name,
                [staging],
                UploadRejectedError("it changed, or was confirmed by another call, meanwhile"),
            )
        copied = self._head(name)
        if copied is None:
            raise FileNotFoundInStoreError(f"The copy of the upload {name!r} is missing.")
        return info_from_response(name, copied)


#: The most keys one DeleteObjects request names: S3 refuses more than 1000.
DELETE_BATCH = 1000


def info_from_response(key: str, response: Mapping[str, Any]) -> FileInfo:
    """A :class:`FileInfo` from a HEAD or GET response for the object of ``key``.

    The content type is the one recorded in :data:`CONTENT_TYPE_META`, else the object's
    own; either may have been written by another program (or by a client that rewrote a
    presigned form) and is normalised by :class:`FileInfo`: a bad one reads as
    ``application/octet-stream``.
    """
    metadata = response.get("Metadata", {})
    size = int(response["ContentLength"])
    encoded = response.get("ContentEncoding") == "gzip"
    if encoded:
        # Readers get the bytes that were saved; S3 holds them compressed. Without the
        # recorded size (an object another tool wrote) the size is unknown: the compressed
        # length would make the serving route send that many bytes as the whole file.
        recorded = metadata.get(ORIGINAL_SIZE_META)
        if not is_decimal(recorded):
            raise StoreUnavailableError(
                f"The object of {key!r} is gzip-encoded and its {ORIGINAL_SIZE_META} metadata "
                f"is not a size in bytes: {recorded!r}."
            )
        size = int(cast(str, recorded))
    etag = unquoted_etag(response)
    if not _ETAG_CHARS.fullmatch(etag):
        # Quotes, commas or controls inside: no header can carry it on, nor a condition.
        raise StoreUnavailableError(f"The object of {key!r} has a malformed ETag: {etag[:80]!r}.")
    basename = key.rpartition("/")[2]
    _, options = parse_options_header(response.get("ContentDisposition"))
    return FileInfo(
        key=key,
        size=size,
        content_type=(
            metadata.get(CONTENT_TYPE_META)
            or response.get("ContentType")
            or guess_content_type(basename)
        ),
        filename=options.get("filename") or basename,
        last_modified=response["LastModified"],
        etag=_content_etag(etag, gzipped=encoded),
    )


def public_url(settings: S3Settings, domain: str | None, object_key: str) -> str:
    """The plain URL of ``object_key``: on ``domain`` (a CDN) if set, else the bucket's."""
    path = quote(object_key, safe="/~")
    if domain:
        base = domain if "://" in domain or domain.startswith("//") else f"https://{domain}"
        return f"{base.rstrip('/')}/{path}"
    if settings.addressing_style == "virtual":
        scheme, _, host = settings.endpoint.partition("://")
        return f"{scheme}://{settings.bucket}.{host}/{path}"
    return f"{settings.endpoint}/{settings.bucket}/{path}"


class _GunzipReader(io.RawIOBase):
    """The saved bytes of a gzip-encoded object, exactly ``size`` of them (its recorded
    size, which the serving route sends as ``Content-Length``); closing it also closes the
    HTTP stream.

    :raises StoreUnavailableError: from a read, when the body is no gzip stream, is cut, or
        unzips to more or fewer bytes than ``size``: the server's answer is not the file.
    """

    def __init__(self, raw: BinaryIO, size: int, description: str) -> None:
        super().__init__()
        self._raw = raw
        self._gzip = gzip.GzipFile(fileobj=raw, mode="rb")
        self._left = size
        self._size = size
        self._ended = False
        self._description = description

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._left)
        data = self._unzipped(wanted) if wanted else b""
        if wanted and not data:
            raise self._wrong_size(str(self._size - self._left))
        self._left -= len(data)
        # At the recorded size, before its last bytes are handed on (a reader may stop
        # there: the serving route reads as many as it announced), one more is asked for.
        if self._left == 0 and not self._ended:
            self._ended = True
            if self._unzipped(1):
                raise self._wrong_size(self._measured_beyond())
        view[: len(data)] = data
        return len(data)

    def _measured_beyond(self) -> str:
        """The unzipped size of a body found longer than recorded: read on (to a point:
        a gzip bomb is not unzipped whole) for the message."""
        extra, limit = 1, self._MEASURED_EXTRA
        while extra <= limit and (chunk := self._unzipped(min(1024**2, limit + 1 - extra))):
            extra += len(chunk)
        return f"more than {self._size + limit}" if extra > limit else str(self._size + extra)

    #: How far past its recorded size a body is unzipped to measure it, for the message.
    _MEASURED_EXTRA = 16 * 1024**2

    def _unzipped(self, size: int) -> bytes:
        try:
            return self._gzip.read(size)
        except (OSError, EOFError, zlib.error) as exc:
            if isinstance(exc, StoreUnavailableError):
                raise
            raise self._wrong(f"it is stored gzip-encoded but is no gzip stream ({exc})") from exc

    def _wrong_size(self, size: str) -> StoreUnavailableError:
        return self._wrong(
            f"it is stored gzip-encoded, and its unzipped size is {size} bytes but metadata "
            f"says {self._size}"
        )

    def _wrong(self, problem: str) -> StoreUnavailableError:
        return StoreUnavailableError(f"Reading {self._description} failed: {problem}.")

    def close(self) -> None:
        try:
            self._gzip.close()
        finally:
            try:
                self._raw.close()
            finally:
                super().close()


def _ticket_filename(ticket: UploadTicket, name: str) -> str:
    """The original filename a direct upload form signed (in its ``Content-Disposition``),
    else the last part of its key ``name``."""
    _, options = parse_options_header(ticket.disposition)
    return options.get("filename") or name.rpartition("/")[2]


def _check_expires(seconds: object) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise InvalidArgumentError(f"expires must be a number of seconds, not {seconds!r}.")
    if not 0 < seconds <= MAX_URL_EXPIRES:
        raise InvalidArgumentError(
            f"expires must be from 1 to {MAX_URL_EXPIRES} seconds (7 days), not {seconds}."
        )
    return seconds


def _range_header(byte_range: ByteRange) -> str:
    """The ``Range`` header asking for ``byte_range``."""
    start, stop = byte_range
    if stop is not None:
        return f"bytes={start}-{stop - 1}"
    return f"bytes={start}" if start < 0 else f"bytes={start}-"


def _etag_is_md5(response: Mapping[str, Any]) -> bool:
    """Whether the ETag of a PUT's response is the MD5 of the object's bytes, as S3 makes
    it unless the object is encrypted with KMS or a customer-provided key (SSE-C)."""
    encryption = str(response.get("ServerSideEncryption", ""))
    return not encryption.startswith("aws:kms") and "SSECustomerAlgorithm" not in response


def _is_store_key(key: str) -> bool:
    """Whether an object below the prefix is a file of the store (not hidden, not odd)."""
    try:
        return clean_key(key) == key
    except InvalidKeyError:
        return False


def _content_etag(etag: str, *, gzipped: bool) -> str:
    """The file's ETag. A gzip-encoded object's is marked: S3's is the MD5 of the compressed
    bytes, which must not pass for the MD5 of the bytes readers get (verify, sync)."""
    return f"{etag}{GZIP_ETAG_MARK}" if gzipped else etag


def _http_date(value: str | None) -> datetime:
    """The server's ``Date`` header (S3's clock, close to LastModified), else now."""
    if value:
        try:
            return parsedate_to_datetime(value)
        except (TypeError, ValueError):
            pass
    return datetime.now(timezone.utc)


def __getattr__(name: str) -> Any:
    """``S3GeventStore``, the original provider path, loaded from :mod:`.s3_gevent` on use."""
    if name == "S3GeventStore":
        # s3_gevent builds on this module (and on the queued store), so it is found on use.
        return importlib.import_module(".s3_gevent", __package__).S3GeventStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
