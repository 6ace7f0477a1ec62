"""Streaming multipart/form-data: the file part of an upload, as chunks, while the
body is read (never ``request.form()``, which spools the whole body to disk first).

The parser is python-multipart's push parser (the one Starlette uses), fed the
request body chunk by chunk as it arrives. :class:`MultipartFile` reads until
the headers of the first part that carries a file (``filename=...``) are in,
then yields that part's bytes as they are parsed; the size limit is applied by
the caller on those bytes while they stream. Every byte of the body that is not
the file (boundaries, part headers, other fields) counts against ``overhead``, so
a body padded with other parts is refused as well (413 `file_too_large`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ymera.errors import BadRequest
from ymera.files.errors import FileTooLarge

#: Bytes of a multipart body besides the file itself (boundaries, part headers,
#: small fields) that an upload may carry.
MULTIPART_OVERHEAD = 64 * 1024


class InvalidMultipart(BadRequest):
    code = "invalid_multipart"


def boundary_of(content_type: str | None) -> bytes | None:
    """The boundary of a ``multipart/form-data`` content type; None for any other type."""
    if not content_type:
        return None
    media, params = parse_options_header(content_type)
    if media != b"multipart/form-data":
        return None
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidMultipart("multipart/form-data without a boundary")
    return boundary


class MultipartFile:
    """The first file part of a multipart body read from ``body``."""

    def __init__(self, body: AsyncIterator[bytes], boundary: bytes, *, limit: int) -> None:
        self._body = body
        self._limit = limit
        self._received = 0
        self._in_file = False
        self._file_done = False
        self._seen_file = False
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._data: list[bytes] = []
        self._other = 0  # bytes parsed outside the file part
        self.filename: str | None = None
        self.field: str | None = None
        callbacks: Any = {
            "on_part_begin": self._part_begin,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_header_field": self._header_field_cb,
            "on_header_value": self._header_value_cb,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }
        self._parser = MultipartParser(boundary, callbacks)

    # --- parser callbacks (synchronous, inside parser.write) -----------------------------

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = b""
        self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if not self._seen_file and b"filename" in options:
            self._seen_file = True
            self._in_file = True
            self.filename = options[b"filename"].decode("utf-8", "replace")
            self.field = options.get(b"name", b"").decode("utf-8", "replace")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._data.append(data[start:end])
        else:
            self._other += end - start

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self._file_done = True

    # --- reading -------------------------------------------------------------------------

    async def _feed(self) -> bool:
        """Parse the next chunk of the body; False at its end."""
        chunk = await anext(self._body, None)
        if chunk is None:
            self._parser.finalize()
            return False
        self._received += len(chunk)
        if self._received > self._limit + MULTIPART_OVERHEAD or self._other > MULTIPART_OVERHEAD:
            raise FileTooLarge(
                f"The file is larger than the limit of {self._limit} bytes", limit=self._limit
            )
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise InvalidMultipart(f"Malformed multipart body: {exc}") from None
        return True

    async def open(self) -> None:
        """Read until the file part's headers are in (400 `invalid_multipart` when the
        body has no file part)."""
        while not self._seen_file:
            if not await self._feed():
                raise InvalidMultipart("The multipart body has no file part (filename=...)")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes, as parsed; then the rest of the body is read and ignored."""
        while True:
            if self._data:
                data, self._data = self._data, []
                for piece in data:
                    if piece:
                        yield piece
            if self._file_done:
                break
            if not await self._feed():
                raise InvalidMultipart("The multipart body ended inside the file part")
        while await self._feed():  # drain the other parts
            self._data.clear()
