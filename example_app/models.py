"""The example app's database models: photos on rows, their files in the ``photos`` store.

The row holds a small JSON document describing the image and its thumbnail; the files
follow the transaction (:mod:`flask_store.sqla`): a photo whose insert rolls back leaves
no file behind, and a deleted photo's files go once the delete is committed.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy.orm import Mapped, mapped_column

from flask_store.sqla import StoredImage

from .extensions import db

#: The thumbnails the gallery shows: each fits in its box, aspect ratio kept.
THUMBNAILS = {"small": (320, 320)}


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Photo(db.Model):  # type: ignore[name-defined,misc]
    """An uploaded image: only real images are accepted (judged from their bytes)."""

    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(primary_key=True)
    image: Mapped[Any] = mapped_column(StoredImage(store="photos", thumbnails=THUMBNAILS))
    uploaded_at: Mapped[datetime] = mapped_column(default=_now)
