"""The media storage: a file is written whole under its name or not at all.

Django's ``FileSystemStorage`` opens the final name and streams into it, so a write that
fails (the disk full, a quota spent) leaves a zero-byte or cut-short file that no row
references, and a preview cache would serve it. Here the bytes go to a hidden temporary
name in the same folder and are linked under the final name only once they are all
written; on any failure the temporary file is removed. A full disk is raised as
``StorageFull``, which pages and the API answer with 507.

A file written inside a transaction that then rolls back is removed by the verb that
wrote it (``intake.actions`` deletes what it wrote when its transaction fails). The file
appears before the commit rather than at it: a process lost between the two leaves a
file no row names, never a row whose film is missing.
"""

from __future__ import annotations

import errno
import os
import tempfile
from typing import Any

from django.core.files.storage import FileSystemStorage
from django.utils.deconstruct import deconstructible

from .errors import StorageFull

NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
PARTIAL_PREFIX = ".partial-"


def storage_error(error: OSError) -> OSError | StorageFull:
    """The error to raise for a failed write: ``StorageFull`` when the disk had no room."""
    if error.errno in NO_SPACE:
        return StorageFull("The image storage is full: nothing was stored.")
    return error


@deconstructible(path="screening.storage.MediaStorage")
class MediaStorage(FileSystemStorage):
    def _save(self, name: str, content: Any) -> str:
        folder = os.path.dirname(self.path(name))
        os.makedirs(folder, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=PARTIAL_PREFIX, dir=folder)
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in content.chunks():
                    out.write(chunk if isinstance(chunk, bytes) else chunk.encode())
            if self.file_permissions_mode is not None:
                os.chmod(partial, self.file_permissions_mode)
            else:  # mkstemp makes it 0600; give it what a plain open would (umask applies)
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(partial, 0o666 & ~umask)
            name = self._link(partial, name)
        except OSError as error:
            raise storage_error(error) from error
        finally:
            try:
                os.unlink(partial)
            except FileNotFoundError:
                pass
        return name

    def _link(self, partial: str, name: str) -> str:
        """Give the written file its final name; never replace a file already there."""
        while True:
            try:
                os.link(partial, self.path(name))
            except FileExistsError:
                name = self.get_available_name(name)
                continue
            return os.path.relpath(self.path(name), self.location).replace("\\", "/")
