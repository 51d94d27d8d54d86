"""Copying files between stores: one file with its metadata, or whatever a target lacks.

The work behind ``flask store cp`` and ``flask store sync``, for scripts and jobs that want
it without the command line. Every copy is a :meth:`~flask_store.stores.base.BaseStore.put`,
so it appears whole or not at all and is safe to interrupt and run again.
"""

from __future__ import annotations

from .exceptions import FileNotFoundInStoreError
from .file_wrapper import FileWrapper
from .meta import recorded_md5
from .stores.base import BaseStore, md5_of

__all__ = ["copy_between", "needs_copy", "sync_file"]


def sync_file(
    source: BaseStore,
    target: BaseStore,
    key: str,
    *,
    present: bool = True,
    checksum: bool = False,
    dry_run: bool = False,
) -> bool:
    """Copy ``key`` from ``source`` to ``target`` unless it is there already; ``True`` if
    it was (or, with ``dry_run``, would be) copied.

    :param present: whether a listing of ``target`` showed the key; when it did not, the
        comparison is skipped.
    """
    if present and not needs_copy(source, target, key, checksum):
        return False
    if not dry_run:
        copy_between(source, key, target, key, overwrite=True)
    return True


def copy_between(
    source: BaseStore, key: str, target: BaseStore, target_key: str, overwrite: bool = False
) -> FileWrapper:
    """Stream the file ``key`` of ``source`` into ``target`` as ``target_key``, with metadata."""
    stream, info = source.open_with_info(key)
    with stream:
        return target.put(
            target_key,
            stream,
            filename=info.filename,
            content_type=info.content_type,
            overwrite=overwrite,
        )


def needs_copy(source: BaseStore, target: BaseStore, key: str, checksum: bool = False) -> bool:
    """Whether ``target`` lacks ``key`` or holds a different file under it.

    Files differ when their sizes or content types differ, or their MD5s where both stores
    record one (S3 single-part uploads, MemoryStore). With ``checksum``, a missing MD5 is
    computed by reading the file in chunks, so every pair of files is compared by content.
    """
    try:
        theirs = target.info(key)
    except FileNotFoundInStoreError:
        return True
    ours = source.info(key)
    if ours.size != theirs.size or ours.content_type != theirs.content_type:
        return True
    our_md5, their_md5 = recorded_md5(ours), recorded_md5(theirs)
    if checksum:
        our_md5 = our_md5 or md5_of(source, key)
        their_md5 = their_md5 or md5_of(target, key)
    return our_md5 is not None and their_md5 is not None and our_md5 != their_md5
