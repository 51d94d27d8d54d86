"""Direct uploads: a browser sends a large file straight to the bucket with a presigned POST.

The store chooses the key and signs a policy that fixes the form fields (content type, original
filename, the limits) and the allowed size. S3 enforces the policy; ``confirm_upload()`` checks
the object again against the limits recorded with it, which also covers S3-compatible servers
that do not enforce POST policies, and deletes what breaks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import InvalidArgumentError
from ..serving import media_type
from .base import FileInfo

#: Object metadata holding a direct upload's limits (bound by the signed policy).
MAX_SIZE_META = "upload-max-size"
TYPE_META = "upload-content-type"
#: The largest object S3 accepts in one POST.
MAX_POST_SIZE = 5 * 1024**3

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


@dataclass(frozen=True)
class DirectUpload:
    """A presigned POST: how a browser sends one file straight to the bucket.

    Send a ``multipart/form-data`` POST to :attr:`url` with every entry of :attr:`fields`
    first and the file last, in a field called ``file``; then call
    ``store.confirm_upload(upload.key)``.

    :param url: where to POST the form.
    :param fields: form fields to send unchanged, before the file.
    :param key: the file's key in the store once uploaded.
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

    max_size: int
    content_type: str | None

    @classmethod
    def recorded(
        cls, metadata: Mapping[str, str], max_size: int | None, content_type: str | None
    ) -> UploadLimits | None:
        """The limits given, else those recorded with the object; ``None`` if neither."""
        if max_size is None:
            try:
                max_size = int(metadata[MAX_SIZE_META])
            except (KeyError, ValueError):
                return None
        return cls(max_size, content_type or metadata.get(TYPE_META))

    def problem(self, info: FileInfo) -> str | None:
        """Why ``info`` breaks these limits, or ``None`` when it keeps them."""
        if info.size > self.max_size:
            return f"it has {info.size} bytes, more than the {self.max_size} allowed"
        if self.content_type and media_type(info.content_type) != media_type(self.content_type):
            return f"its type is {info.content_type!r}, not {self.content_type!r}"
        return None


def check_max_size(max_size: object) -> int:
    """``max_size`` checked to be a whole number of bytes S3 accepts in one POST."""
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size <= 0:
        raise InvalidArgumentError(
            f"max_size must be a positive number of bytes, not {max_size!r}."
        )
    if max_size > MAX_POST_SIZE:
        raise InvalidArgumentError(
            f"max_size {max_size} is above S3's {MAX_POST_SIZE}-byte limit for one POST upload."
        )
    return max_size


def post_form(
    *,
    content_type: str,
    disposition: str,
    max_size: int,
    acl: str | None,
    object_params: Mapping[str, Any],
) -> tuple[dict[str, str], list[Any]]:
    """The form fields of a direct upload and the policy conditions that pin each of them."""
    fields = {
        "Content-Type": content_type,
        "Content-Disposition": disposition,
        f"x-amz-meta-{MAX_SIZE_META}": str(max_size),
        f"x-amz-meta-{TYPE_META}": content_type,
    }
    if acl:
        fields["acl"] = acl
    for param, field in _POST_FIELDS.items():
        if param in object_params:
            fields[field] = str(object_params[param])
    for name, value in object_params.get("Metadata", {}).items():
        fields[f"x-amz-meta-{name}"] = str(value)
    conditions: list[Any] = [{name: value} for name, value in fields.items()]
    conditions.append(["content-length-range", 0, max_size])
    return fields, conditions
