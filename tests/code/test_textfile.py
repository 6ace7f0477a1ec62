"""Text files round-trip byte for byte; binary and oversized files are refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ymera.code.errors import (
    BinaryFile,
    FileNotFound,
    InvalidText,
    NotAFile,
    TooLarge,
    Unencodable,
)
from ymera.code.textfile import (
    atomic_create,
    atomic_write,
    decode_bytes,
    dominant_newline,
    encode_text,
    read_text_file,
    sha256_hex,
    split_lines,
    to_newline,
    uniform_newline,
)


@pytest.mark.parametrize(
    ("data", "encoding", "text"),
    [
        (b"a\r\nb\r\n", "utf-8", "a\r\nb\r\n"),
        (b"a\nb", "utf-8", "a\nb"),
        (b"a\rb\r", "utf-8", "a\rb\r"),
        (b"a\r\nb\nc\r", "utf-8", "a\r\nb\nc\r"),
        (b"\ttab\t\n", "utf-8", "\ttab\t\n"),
        ("h\u00e9llo\n".encode(), "utf-8", "h\u00e9llo\n"),
        (b"\xef\xbb\xbfbom\r\n", "utf-8", "bom\r\n"),
        (b"\xff\xfe" + "h\u00e9\r\n".encode("utf-16-le"), "utf-16-le", "h\u00e9\r\n"),
        (b"\xfe\xff" + "x\n".encode("utf-16-be"), "utf-16-be", "x\n"),
        (b"caf\xe9 cr\xe8me\n", "latin-1", "caf\u00e9 cr\u00e8me\n"),
        (b"", "utf-8", ""),
    ],
)
def test_decode_round_trips(data: bytes, encoding: str, text: str) -> None:
    tf = decode_bytes(data)
    assert (tf.text, tf.encoding) == (text, encoding)
    assert tf.encode(tf.text) == data
    assert tf.sha256 == sha256_hex(data)
    assert tf.data == data


@pytest.mark.parametrize(
    "data",
    [
        b"abc\x00def",  # NUL byte
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",  # an image header
        b"\x1f\x8b\x08\x00\x9c\x83\xa0\x81",  # gzip-like bytes, no NUL, C1 controls
        b"caf\xe9\x01\x02",  # not UTF-8, and C0 controls: not safe Latin-1
        b"\xff\xfe\x00\xd8",  # UTF-16 BOM then a lone surrogate
    ],
)
def test_binary_is_refused(data: bytes) -> None:
    with pytest.raises(BinaryFile) as info:
        decode_bytes(data, path="blob")
    assert (info.value.code, info.value.status_code) == ("binary", 415)


def test_nul_past_the_sniff_window_is_still_refused() -> None:
    with pytest.raises(BinaryFile):
        decode_bytes(b"a" * 9000 + b"\x00")


def test_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * 101)
    with pytest.raises(TooLarge) as info:
        read_text_file(path, max_bytes=100)
    assert (info.value.code, info.value.status_code) == ("too_large", 413)
    assert info.value.details["limit"] == 100
    assert read_text_file(path, max_bytes=101).text == "x" * 101


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFound):
        read_text_file(tmp_path / "missing")
    with pytest.raises(NotAFile):
        read_text_file(tmp_path)
    (tmp_path / "a.txt").write_bytes(b"x")
    with pytest.raises(FileNotFound) as below_a_file:  # the parent is a file
        read_text_file(tmp_path / "a.txt" / "x", name="a.txt/x")
    assert (below_a_file.value.status_code, below_a_file.value.details) == (
        404,
        {"path": "a.txt/x"},
    )


def test_latin1_file_rejects_unencodable_text() -> None:
    tf = decode_bytes(b"caf\xe9\n")
    with pytest.raises(Unencodable):
        tf.encode("\u2603 snowman\n")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le", "latin-1"])
def test_lone_surrogates_are_invalid_text_in_any_encoding(encoding: str) -> None:
    with pytest.raises(InvalidText) as info:
        encode_text("ab\udc80", encoding)
    assert (info.value.code, info.value.status_code) == ("invalid_text", 422)
    assert info.value.details == {"offset": 2}


def test_line_helpers() -> None:
    assert split_lines("a\r\nb\rc\nd") == ["a\r\n", "b\r", "c\n", "d"]
    assert split_lines("form\x0cfeed\u2028sep\n") == ["form\x0cfeed\u2028sep\n"]
    assert split_lines("") == []
    assert dominant_newline("a\r\nb\r\nc\n") == "\r\n"
    assert dominant_newline("no newline") == "\n"
    assert uniform_newline("a\r\nb\r\n") == "\r\n"
    assert uniform_newline("a\r\nb\n") is None
    assert to_newline("a\nb\r\nc\r", "\r\n") == "a\r\nb\r\nc\r\n"


def test_atomic_write_keeps_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "script.sh"
    path.write_bytes(b"old\n")
    path.chmod(0o750)
    atomic_write(path, b"new\n")
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o750
    assert os.listdir(tmp_path) == ["script.sh"]


def test_atomic_create_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    assert atomic_create(path, b"one")
    assert not atomic_create(path, b"two")
    assert path.read_bytes() == b"one"
    assert os.listdir(tmp_path) == ["f.txt"]
