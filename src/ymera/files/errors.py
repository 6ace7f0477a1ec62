"""Typed errors of the Files API."""

from __future__ import annotations

from ymera.errors import NotFound, Unprocessable, YmeraError


class FileNotFound(NotFound):
    code = "file_not_found"


class UnknownFile(Unprocessable):
    """A reference (a task's, a message's, a workspace's) to a file that does not
    exist, has expired, or that the referrer may not see."""

    code = "unknown_file"


class FileTooLarge(YmeraError):
    status_code = 413
    code = "file_too_large"


class QuotaExceeded(YmeraError):
    status_code = 413
    code = "quota_exceeded"


class TooManyFiles(YmeraError):
    status_code = 429
    code = "too_many_files"


class RangeNotSatisfiable(YmeraError):
    status_code = 416
    code = "range_not_satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(
            f"The range selects no byte of the file ({size} bytes)",
            headers={"Content-Range": f"bytes */{size}"},
            size=size,
        )
