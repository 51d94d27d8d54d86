"""An object already in a bucket, handed to ``save()`` as an upload: copied, never re-sent.

A resumable (tus) upload to an S3 store is assembled in the bucket, under a hidden staging
key. Saving it through ``save()`` keeps every rule of a save (naming, conflicts, content
checks); reading it back to do so would move the whole file through the web process twice
and spool it to its disk. A :class:`StagedObject` is the object as a seekable stream (each
read a ranged GET, so content checks read only the head); an
:class:`~flask_store.stores.s3.S3Store` with the same settings copies it inside the bucket
instead (from its multipart threshold, when the type is not stored compressed), and any
other store reads it like any stream.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ..byteranges import content_range_of, starts_and_covers
from ..exceptions import UploadReadError
from .s3_config import S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["StagedObject"]


class StagedObject(io.RawIOBase):
    """``size`` bytes of the object ``object_key`` (ETag ``etag``) in the bucket of
    ``settings``, read through ``client``.

    A read sends one ranged GET from the position to the end and reads on from its answer;
    a seek elsewhere drops that answer. Every GET names the ETag, so the bytes read are of
    the version that was checked, or the read fails.
    """

    def __init__(
        self, client: S3Client, settings: S3Settings, object_key: str, size: int, etag: str
    ) -> None:
        super().__init__()
        self.client = client
        self.settings = settings
        self.object_key = object_key
        self.size = size
        self.etag = etag
        self._position = 0
        self._answer: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        bases = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}
        if whence not in bases:
            raise ValueError(f"invalid whence ({whence!r})")
        base = bases[whence]
        position = base + offset
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        if position != self._position:
            self._drop_answer()
            self._position = position
        return position

    def readinto(self, buffer: Any) -> int:
        self._check_open()
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self.size - self._position)
        if wanted <= 0:
            return 0
        try:
            if self._answer is None:
                self._answer = self._ranged_body()
            data = self._answer.read(wanted)
        except UploadReadError:
            raise
        except (BotoCoreError, ClientError, OSError) as exc:
            self._drop_answer()
            raise UploadReadError(f"Reading the staged upload failed part-way: {exc}") from exc
        if not data:
            self._drop_answer()
            raise UploadReadError(
                f"The staged upload ended {self.size - self._position} bytes early."
            )
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _ranged_body(self) -> Any:
        """The body of a GET from the position to the end, its answer checked: a server
        that ignores ``Range`` (or answers other bytes) would hand on the wrong ones.

        :raises UploadReadError: when the answer does not hold exactly those bytes.
        """
        answer = self.client.get_object(
            Bucket=self.settings.bucket,
            Key=self.object_key,
            Range=f"bytes={self._position}-{self.size - 1}",
            IfMatch=f'"{self.etag}"',
        )
        sent = content_range_of(answer.get("ContentRange"), answer.get("ContentLength"))
        whole = answer.get("ContentRange") is None and answer.get("ContentLength") == self.size
        if whole and self._position == 0:
            return answer["Body"]
        if (
            sent is None
            or sent[1] != self.size
            or not starts_and_covers(sent[0], (self._position, self.size))
        ):
            answer["Body"].close()
            raise UploadReadError(
                f"The server answered a read of bytes {self._position}- of the staged upload "
                f"with others (Content-Range {answer.get('ContentRange')!r})."
            )
        return answer["Body"]

    def close(self) -> None:
        self._drop_answer()
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed staged object")

    def _drop_answer(self) -> None:
        if self._answer is not None:
            answer, self._answer = self._answer, None
            answer.close()
