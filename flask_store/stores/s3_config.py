"""The settings of an S3 store: read once, checked at ``init_app``, never touching the network.

Every option is one ``STORE_S3_*`` key with a documented default (``docs/s3.rst``), in the
manner of django-storages: :data:`S3_SETTINGS` checks each one when the store is built, and
:func:`read_s3_settings` turns the checked values into a frozen :class:`S3Settings`, checking
how they combine, naming the offending key in every :class:`NotConfiguredError`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

from s3transfer.manager import TransferManager

from ..config import (
    COMMON_SETTINGS,
    Check,
    Schema,
    Setting,
    SettingValueError,
    StoreConfig,
    all_of,
    holds,
    of_type,
    one_of,
)
from ..exceptions import InvalidKeyError
from ..naming import join_key

__all__ = [
    "CONNECT_TIMEOUT",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MAX_POOL_CONNECTIONS",
    "MAX_URL_EXPIRES",
    "MIB",
    "MIN_PART_SIZE",
    "S3_DEFAULTS",
    "S3_SETTINGS",
    "S3_STORE_SETTINGS",
    "ChecksumMode",
    "ConditionalWrites",
    "S3Settings",
    "ServeMode",
    "read_s3_settings",
]

MIB = 1024 * 1024
#: S3 refuses multipart parts smaller than this (except the last one).
MIN_PART_SIZE = 5 * MIB
#: S3 refuses multipart parts larger than this.
MAX_PART_SIZE = 5 * 1024 * MIB
#: S3 allows at most this many parts in one multipart upload.
MAX_PARTS = 10_000
#: The longest lifetime a SigV4 presigned URL may have: seven days.
MAX_URL_EXPIRES = 7 * 24 * 3600
#: Connections kept open to the endpoint; enough for many threads saving at once.
MAX_POOL_CONNECTIONS = 50
#: Seconds to wait for a TCP connection to the endpoint. botocore waits 60 by default, which
#: with its three attempts keeps a request hanging for minutes when a host drops packets.
CONNECT_TIMEOUT = 10

ChecksumMode = Literal["when_supported", "when_required"]
ServeMode = Literal["redirect", "proxy"]
#: How saves that must not overwrite claim their key (``STORE_S3_CONDITIONAL_WRITES``):
#: ``probe`` checks once per bucket and process that the server refuses a second
#: ``If-None-Match: *`` PUT and refuses to save where it does not; ``trust`` sends
#: conditional writes without checking; ``off`` sends none (a checked rename, racy).
ConditionalWrites = Literal["probe", "trust", "off"]
ADDRESSING_STYLES = ("auto", "path", "virtual")
CHECKSUM_MODES: tuple[ChecksumMode, ...] = ("when_supported", "when_required")
SERVE_MODES: tuple[ServeMode, ...] = ("redirect", "proxy")
CONDITIONAL_WRITE_MODES: tuple[ConditionalWrites, ...] = ("probe", "trust", "off")
CANNED_ACLS = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
)
# Upload arguments the store sets itself for every file; OBJECT_PARAMS may not override them.
_PER_FILE_ARGS = frozenset({"ContentType", "ContentDisposition", "ContentEncoding", "ACL"})
# Upload arguments that would break the store if sent with every file: a customer-provided
# key (SSE-C) must also be sent on every HEAD and GET, which the store does not do, and a
# checksum or size value describes one object, not all of them.
_UNUSABLE_ARGS = frozenset(
    {"SSECustomerAlgorithm", "SSECustomerKey", "SSECustomerKeyMD5", "MpuObjectSize"}
    | {arg for arg in TransferManager.ALLOWED_UPLOAD_ARGS if arg.startswith("Checksum")}
) - {"ChecksumAlgorithm", "ChecksumType"}
_OBJECT_PARAMS = frozenset(TransferManager.ALLOWED_UPLOAD_ARGS) - _PER_FILE_ARGS - _UNUSABLE_ARGS


def _text(value: Any) -> str:
    if not isinstance(value, str) or value.strip() != value:
        raise SettingValueError(f"must be a string without surrounding blanks, not {value!r}.")
    return value


def _credential(value: Any) -> str:
    """A key id or secret: a string. The value itself is never echoed."""
    if not isinstance(value, str):
        raise SettingValueError(f"must be a string, not a {type(value).__name__}.")
    return value


def _endpoint_url(value: Any) -> str | None:
    if value == "":
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise SettingValueError(f"must be an http(s):// URL, not {value!r}.")
    return value.rstrip("/")


def _whole_number(low: int, high: int | None = None) -> Check:
    limit = f"from {low} to {high}" if high is not None else f"at least {low}"
    in_range = holds(
        lambda value: value >= low and (high is None or value <= high),
        f"must be a whole number {limit}, not {{value!r}}.",
    )
    return all_of(of_type(int), in_range)


def _conditional_writes(value: Any) -> ConditionalWrites:
    """``S3_CONDITIONAL_WRITES``; the booleans of 0.1 mean ``"probe"`` and ``"off"``."""
    if value is True or value is False:
        return "probe" if value else "off"
    mode: ConditionalWrites = one_of(CONDITIONAL_WRITE_MODES)(value)
    return mode


def key_prefix(path: Any) -> str:
    """``STORE_PATH`` as a clean key prefix: ``"/some/place/"`` -> ``"some/place"``."""
    if path == "" or path == "/":
        return ""
    if not isinstance(path, str):
        raise SettingValueError(f"must be a key prefix such as 'uploads', not {path!r}.")
    try:
        return join_key(path)
    except InvalidKeyError as exc:
        raise SettingValueError(f"is not a usable key prefix: {exc}") from exc


def _object_params(params: Any) -> Mapping[str, Any]:
    if not isinstance(params, Mapping):
        raise SettingValueError(f"must be a dict, not {type(params).__name__}.")
    unusable = sorted(set(params) & _UNUSABLE_ARGS)
    if unusable:
        raise SettingValueError(
            f"cannot hold {unusable}: customer-provided encryption keys (SSE-C) and "
            "per-object checksums are not supported; use 'ServerSideEncryption' "
            "('AES256' or 'aws:kms') for encryption at rest."
        )
    unknown = sorted(set(params) - _OBJECT_PARAMS)
    if unknown:
        raise SettingValueError(
            f"has keys boto3 uploads do not take or the store sets per file: {unknown}; "
            "use names such as 'CacheControl', 'ServerSideEncryption', 'StorageClass'."
        )
    if not isinstance(params.get("Metadata", {}), Mapping):
        raise SettingValueError("['Metadata'] must be a dict of strings.")
    return MappingProxyType(dict(params))


def _gzip_types(types: Any) -> Any:
    if not isinstance(types, (list, tuple, set, frozenset)) or not all(
        isinstance(t, str) for t in types
    ):
        raise SettingValueError("must be a list of content types such as 'text/css'.")
    return types


def _upload_secret(secret: Any) -> str | bytes:
    """A non-empty ``str`` or ``bytes``. The value itself is never echoed: it is a secret."""
    if isinstance(secret, (str, bytes)) and secret:
        return secret
    found = "empty" if isinstance(secret, (str, bytes)) else f"a {type(secret).__name__}"
    raise SettingValueError(
        "must be a non-empty str or bytes (a long random value), or unset to sign direct "
        f"uploads with the app's SECRET_KEY; it is {found}."
    )


#: The S3-specific settings (``STORE_S3_*``), read by S3Store and S3GeventStore alike; each
#: is explained at length in ``docs/s3.rst``.
S3_SETTINGS = Schema(
    [
        Setting(
            "S3_BUCKET",
            None,
            "The bucket name (required; a key prefix goes in PATH).",
            all_of(
                _text,
                holds(
                    lambda value: "/" not in value,
                    "is a bucket name only; put a key prefix in STORE_PATH.",
                ),
            ),
        ),
        Setting("S3_REGION", None, "The bucket's region (required).", _text),
        Setting("S3_ACCESS_KEY", None, "The access key id (unset: boto3's chain).", _credential),
        Setting("S3_SECRET_KEY", None, "The secret access key.", _credential),
        Setting("S3_ENDPOINT_URL", None, "An S3-compatible server's URL.", _endpoint_url),
        Setting(
            "S3_ADDRESSING_STYLE",
            "auto",
            "Path or virtual-host bucket addressing.",
            one_of(ADDRESSING_STYLES),
        ),
        Setting(
            "S3_ACL",
            None,
            "A canned ACL sent with every upload (unset: none).",
            holds(
                lambda value: value in CANNED_ACLS,
                f"must be None or one of {', '.join(CANNED_ACLS)}.",
            ),
        ),
        Setting("S3_PRESIGNED", False, "Hand out presigned GET URLs.", of_type(bool)),
        Setting(
            "S3_URL_EXPIRES",
            3600,
            "Seconds presigned URLs and upload forms last.",
            _whole_number(1, MAX_URL_EXPIRES),
        ),
        Setting(
            "S3_OBJECT_PARAMS",
            MappingProxyType({}),
            "Extra upload arguments for every object.",
            _object_params,
        ),
        Setting(
            "S3_GZIP_TYPES",
            (
                "text/css",
                "text/javascript",
                "application/javascript",
                "application/x-javascript",
            ),
            "Content types stored gzip-compressed.",
            _gzip_types,
        ),
        Setting(
            "S3_CHECKSUM_CALCULATION",
            "when_supported",
            "boto3's request_checksum_calculation.",
            one_of(CHECKSUM_MODES),
        ),
        Setting(
            "S3_CHECKSUM_VALIDATION",
            "when_supported",
            "boto3's response_checksum_validation.",
            one_of(CHECKSUM_MODES),
        ),
        Setting("S3_SERVE", "redirect", "Redirect to the bucket or proxy.", one_of(SERVE_MODES)),
        Setting(
            "S3_CONDITIONAL_WRITES",
            "probe",
            "How saves claim their key: probe, trust or off.",
            _conditional_writes,
        ),
        Setting(
            "S3_MULTIPART_THRESHOLD",
            8 * MIB,
            "Files from this size on are uploaded in parts.",
            _whole_number(MIN_PART_SIZE),
        ),
        Setting(
            "S3_MULTIPART_CHUNKSIZE",
            8 * MIB,
            "The size of each part.",
            _whole_number(MIN_PART_SIZE),
        ),
        Setting(
            "S3_MAX_CONCURRENCY", 4, "Parts of one file uploaded at once.", _whole_number(1, 64)
        ),
        Setting(
            "S3_UPLOAD_SECRET",
            None,
            "Signs direct-upload forms (unset: the app's SECRET_KEY).",
            _upload_secret,
        ),
    ]
)

#: The settings of an :class:`~flask_store.stores.s3.S3Store`: the common ones, ``PATH`` as
#: the key prefix in the bucket, and :data:`S3_SETTINGS`.
S3_STORE_SETTINGS = Schema(
    COMMON_SETTINGS,
    [Setting("PATH", None, "The key prefix inside the bucket (unset: its root).", key_prefix)],
    S3_SETTINGS,
)

#: Defaults of the S3-specific settings (unprefixed), read-only (from :data:`S3_SETTINGS`).
S3_DEFAULTS: Mapping[str, Any] = S3_SETTINGS.defaults


@dataclass(frozen=True)
class S3Settings:
    """Everything an :class:`~flask_store.stores.s3.S3Store` needs to reach its bucket.

    :param prefix: the object key prefix (``STORE_PATH`` cleaned), ``""`` for the bucket root.
    :param addressing_style: ``path`` or ``virtual``, resolved from ``auto``.
    """

    bucket: str
    region: str
    prefix: str
    access_key: str | None
    secret_key: str | None
    endpoint_url: str | None
    addressing_style: str
    acl: str | None
    presigned: bool
    url_expires: int
    object_params: Mapping[str, Any]
    gzip_types: frozenset[str]
    checksum_calculation: ChecksumMode
    checksum_validation: ChecksumMode
    serve: ServeMode
    conditional_writes: ConditionalWrites
    multipart_threshold: int
    multipart_chunksize: int
    max_concurrency: int
    #: Signs direct upload forms (``STORE_S3_UPLOAD_SECRET``); ``None``: the app's SECRET_KEY.
    upload_secret: bytes | None = field(repr=False)

    @property
    def endpoint(self) -> str:
        """The endpoint requests go to, for URLs and error messages."""
        return self.endpoint_url or f"https://s3.{self.region}.amazonaws.com"


def read_s3_settings(config: StoreConfig) -> S3Settings:
    """Collect the S3 settings of ``config``, a store's checked settings
    (:attr:`~flask_store.stores.base.BaseStore.config`), and check how they combine.

    :raises NotConfiguredError: naming the first key that is missing or wrong.
    """
    bucket: str = config.required("S3_BUCKET")
    region: str = config.required("S3_REGION")
    access_key = config.value("S3_ACCESS_KEY")
    secret_key = config.value("S3_SECRET_KEY")
    if bool(access_key) != bool(secret_key):
        missing = "S3_SECRET_KEY" if access_key else "S3_ACCESS_KEY"
        raise config.error(
            missing,
            "must be set together with its pair, or both left unset to use boto3's "
            "credential chain (environment, ~/.aws, instance role).",
        )
    endpoint_url: str | None = config.value("S3_ENDPOINT_URL")
    style: str = config.value("S3_ADDRESSING_STYLE")
    if style == "auto":
        # Custom endpoints (MinIO, moto) rarely have wildcard DNS; dotted names break TLS.
        style = "path" if endpoint_url or "." in bucket else "virtual"
    if style == "virtual" and endpoint_url and _is_ip_address(endpoint_url):
        raise config.error(
            "S3_ADDRESSING_STYLE",
            "is 'virtual', which puts the bucket name in the host name (bucket.host), but "
            f"S3_ENDPOINT_URL {endpoint_url!r} is an IP address, which cannot have one; use "
            "'path' (or 'auto').",
        )
    secret = config.value("S3_UPLOAD_SECRET")
    return S3Settings(
        bucket=bucket,
        region=region,
        prefix=config.value("PATH") or "",
        access_key=access_key or None,
        secret_key=secret_key or None,
        endpoint_url=endpoint_url,
        addressing_style=style,
        acl=config.value("S3_ACL"),
        presigned=config.value("S3_PRESIGNED"),
        url_expires=config.value("S3_URL_EXPIRES"),
        object_params=config.value("S3_OBJECT_PARAMS"),
        gzip_types=frozenset(t.lower() for t in config.value("S3_GZIP_TYPES")),
        checksum_calculation=config.value("S3_CHECKSUM_CALCULATION"),
        checksum_validation=config.value("S3_CHECKSUM_VALIDATION"),
        serve=config.value("S3_SERVE"),
        conditional_writes=config.value("S3_CONDITIONAL_WRITES"),
        multipart_threshold=config.value("S3_MULTIPART_THRESHOLD"),
        multipart_chunksize=config.value("S3_MULTIPART_CHUNKSIZE"),
        max_concurrency=config.value("S3_MAX_CONCURRENCY"),
        upload_secret=secret.encode() if isinstance(secret, str) else secret,
    )


def _is_ip_address(url: str) -> bool:
    try:
        ipaddress.ip_address(urlsplit(url).hostname or "")
    except ValueError:
        return False
    return True
