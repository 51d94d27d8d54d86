"""The settings of an S3 store: read once, checked at ``init_app``, never touching the network.

Every option is one ``STORE_S3_*`` key with a documented default (``docs/s3.rst``), in the
manner of django-storages. :func:`read_s3_settings` turns a :class:`StoreConfig` into a frozen
:class:`S3Settings`, naming the offending key in every :class:`NotConfiguredError`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

from s3transfer.manager import TransferManager

from ..config import StoreConfig
from ..exceptions import InvalidKeyError
from ..naming import join_key

__all__ = [
    "CONNECT_TIMEOUT",
    "MAX_POOL_CONNECTIONS",
    "MAX_URL_EXPIRES",
    "MIB",
    "S3_DEFAULTS",
    "ChecksumMode",
    "ConditionalWrites",
    "S3Settings",
    "ServeMode",
    "read_s3_settings",
]

MIB = 1024 * 1024
#: S3 refuses multipart parts smaller than this (except the last one).
MIN_PART_SIZE = 5 * MIB
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

#: Defaults of the S3-specific settings (unprefixed), applied by ``init_app``.
S3_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "S3_BUCKET": None,
        "S3_REGION": None,
        "S3_ACCESS_KEY": None,
        "S3_SECRET_KEY": None,
        "S3_ENDPOINT_URL": None,
        "S3_ADDRESSING_STYLE": "auto",
        "S3_ACL": None,
        "S3_PRESIGNED": False,
        "S3_URL_EXPIRES": 3600,
        "S3_OBJECT_PARAMS": MappingProxyType({}),
        "S3_GZIP_TYPES": (
            "text/css",
            "text/javascript",
            "application/javascript",
            "application/x-javascript",
        ),
        "S3_CHECKSUM_CALCULATION": "when_supported",
        "S3_CHECKSUM_VALIDATION": "when_supported",
        "S3_SERVE": "redirect",
        "S3_CONDITIONAL_WRITES": "probe",
        "S3_MULTIPART_THRESHOLD": 8 * MIB,
        "S3_MULTIPART_CHUNKSIZE": 8 * MIB,
        "S3_MAX_CONCURRENCY": 4,
        "S3_UPLOAD_SECRET": None,
    }
)


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
    """Check and collect the S3 settings of ``config``.

    :raises NotConfiguredError: naming the first key that is missing or wrong.
    """
    bucket = _text(config, "S3_BUCKET")
    if "/" in bucket:
        raise config.error("S3_BUCKET", "is a bucket name only; put a key prefix in STORE_PATH.")
    region = _text(config, "S3_REGION")
    access_key = config.setting("S3_ACCESS_KEY")
    secret_key = config.setting("S3_SECRET_KEY")
    if bool(access_key) != bool(secret_key):
        missing = "S3_SECRET_KEY" if access_key else "S3_ACCESS_KEY"
        raise config.error(
            missing,
            "must be set together with its pair, or both left unset to use boto3's "
            "credential chain (environment, ~/.aws, instance role).",
        )
    endpoint_url = _endpoint_url(config)
    style = config.choice("S3_ADDRESSING_STYLE", ADDRESSING_STYLES, "auto")
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
    acl = config.setting("S3_ACL")
    if acl is not None and acl not in CANNED_ACLS:
        raise config.error("S3_ACL", f"must be None or one of {', '.join(CANNED_ACLS)}.")
    return S3Settings(
        bucket=bucket,
        region=region,
        prefix=_prefix(config),
        access_key=access_key or None,
        secret_key=secret_key or None,
        endpoint_url=endpoint_url,
        addressing_style=style,
        acl=acl,
        presigned=config.typed("S3_PRESIGNED", bool, False),
        url_expires=_number(config, "S3_URL_EXPIRES", 1, MAX_URL_EXPIRES),
        object_params=_object_params(config),
        gzip_types=_gzip_types(config),
        checksum_calculation=config.choice(
            "S3_CHECKSUM_CALCULATION", CHECKSUM_MODES, "when_supported"
        ),
        checksum_validation=config.choice(
            "S3_CHECKSUM_VALIDATION", CHECKSUM_MODES, "when_supported"
        ),
        serve=config.choice("S3_SERVE", SERVE_MODES, "redirect"),
        conditional_writes=_conditional_writes(config),
        multipart_threshold=_number(config, "S3_MULTIPART_THRESHOLD", MIN_PART_SIZE),
        multipart_chunksize=_number(config, "S3_MULTIPART_CHUNKSIZE", MIN_PART_SIZE),
        max_concurrency=_number(config, "S3_MAX_CONCURRENCY", 1, 64),
        upload_secret=_upload_secret(config),
    )


def _text(config: StoreConfig, key: str) -> str:
    value = config.required(key)
    if not isinstance(value, str) or value.strip() != value:
        raise config.error(key, f"must be a string without surrounding blanks, not {value!r}.")
    return value


def _endpoint_url(config: StoreConfig) -> str | None:
    value = config.setting("S3_ENDPOINT_URL")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise config.error("S3_ENDPOINT_URL", f"must be an http(s):// URL, not {value!r}.")
    return value.rstrip("/")


def _is_ip_address(url: str) -> bool:
    try:
        ipaddress.ip_address(urlsplit(url).hostname or "")
    except ValueError:
        return False
    return True


def _conditional_writes(config: StoreConfig) -> ConditionalWrites:
    """``S3_CONDITIONAL_WRITES``; the booleans of 0.1 mean ``"probe"`` and ``"off"``."""
    value = config.setting("S3_CONDITIONAL_WRITES", "probe")
    if value is True or value is False:
        return "probe" if value else "off"
    return config.choice("S3_CONDITIONAL_WRITES", CONDITIONAL_WRITE_MODES, "probe")


def _prefix(config: StoreConfig) -> str:
    """``STORE_PATH`` as a clean key prefix: ``"/some/place/"`` -> ``"some/place"``."""
    path = config.setting("PATH")
    if path is None or path == "" or path == "/":
        return ""
    if not isinstance(path, str):
        raise config.error("PATH", f"must be a key prefix such as 'uploads', not {path!r}.")
    try:
        return join_key(path)
    except InvalidKeyError as exc:
        raise config.error("PATH", f"is not a usable key prefix: {exc}") from exc


def _number(config: StoreConfig, key: str, low: int, high: int | None = None) -> int:
    value = config.typed(key, int, low)
    if value < low or (high is not None and value > high):
        limit = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise config.error(key, f"must be a whole number {limit}, not {value!r}.")
    return value


def _object_params(config: StoreConfig) -> Mapping[str, Any]:
    params = config.setting("S3_OBJECT_PARAMS", {})
    if not isinstance(params, Mapping):
        raise config.error("S3_OBJECT_PARAMS", f"must be a dict, not {type(params).__name__}.")
    unusable = sorted(set(params) & _UNUSABLE_ARGS)
    if unusable:
        raise config.error(
            "S3_OBJECT_PARAMS",
            f"cannot hold {unusable}: customer-provided encryption keys (SSE-C) and "
            "per-object checksums are not supported; use 'ServerSideEncryption' "
            "('AES256' or 'aws:kms') for encryption at rest.",
        )
    unknown = sorted(set(params) - _OBJECT_PARAMS)
    if unknown:
        raise config.error(
            "S3_OBJECT_PARAMS",
            f"has keys boto3 uploads do not take or the store sets per file: {unknown}; "
            "use names such as 'CacheControl', 'ServerSideEncryption', 'StorageClass'.",
        )
    metadata = params.get("Metadata", {})
    if not isinstance(metadata, Mapping):
        raise config.error("S3_OBJECT_PARAMS", "['Metadata'] must be a dict of strings.")
    return MappingProxyType(dict(params))


def _gzip_types(config: StoreConfig) -> frozenset[str]:
    types = config.setting("S3_GZIP_TYPES", ())
    if not isinstance(types, (list, tuple, set, frozenset)) or not all(
        isinstance(t, str) for t in types
    ):
        raise config.error("S3_GZIP_TYPES", "must be a list of content types such as 'text/css'.")
    return frozenset(t.lower() for t in types)


def _upload_secret(config: StoreConfig) -> bytes | None:
    """``S3_UPLOAD_SECRET`` as bytes: a non-empty ``str`` or ``bytes``, or unset."""
    secret = config.setting("S3_UPLOAD_SECRET")
    if secret is None:
        return None
    if isinstance(secret, str) and secret:
        return secret.encode()
    if isinstance(secret, bytes) and secret:
        return secret
    # The value itself is never echoed: it is a secret.
    found = "empty" if isinstance(secret, (str, bytes)) else f"a {type(secret).__name__}"
    raise config.error(
        "S3_UPLOAD_SECRET",
        "must be a non-empty str or bytes (a long random value), or unset to sign direct "
        f"uploads with the app's SECRET_KEY; it is {found}.",
    )
