"""Every path stays inside the workspace, symlinks included."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ymera.code.errors import OutsideWorkspace
from ymera.code.paths import relative_key, resolve_inside


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "a.py").write_text("x\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("s\n")
    return ws


def test_relative_paths_resolve_inside(root: Path) -> None:
    real = root.resolve()
    assert resolve_inside(root, "src/a.py") == real / "src" / "a.py"
    assert resolve_inside(root, "") == real
    assert resolve_inside(root, ".") == real
    assert resolve_inside(root, "src/../src/a.py") == real / "src" / "a.py"
    assert resolve_inside(root, "new/dir/file.txt") == real / "new" / "dir" / "file.txt"


@pytest.mark.parametrize(
    "rel", ["../x", "src/../../x", "../ws/../outside/secret.txt", "new/../../x"]
)
def test_dotdot_escapes_are_refused(root: Path, rel: str) -> None:
    with pytest.raises(OutsideWorkspace) as info:
        resolve_inside(root, rel)
    assert info.value.code == "outside_workspace"
    assert info.value.status_code == 400


@pytest.mark.parametrize("rel", ["/etc/passwd", "/", "//x"])
def test_absolute_paths_are_refused(root: Path, rel: str) -> None:
    with pytest.raises(OutsideWorkspace, match="Absolute"):
        resolve_inside(root, rel)


def test_nul_byte_is_refused(root: Path) -> None:
    with pytest.raises(OutsideWorkspace, match="NUL"):
        resolve_inside(root, "src/a\x00.py")


def test_symlinked_file_pointing_outside(root: Path) -> None:
    os.symlink(root.parent / "outside" / "secret.txt", root / "link.txt")
    with pytest.raises(OutsideWorkspace):
        resolve_inside(root, "link.txt")


def test_dangling_symlink_pointing_outside(root: Path) -> None:
    os.symlink(root.parent / "outside" / "not-yet.txt", root / "dangling.txt")
    with pytest.raises(OutsideWorkspace):
        resolve_inside(root, "dangling.txt")


def test_symlinked_directory_pointing_outside(root: Path) -> None:
    os.symlink(root.parent / "outside", root / "linkdir")
    with pytest.raises(OutsideWorkspace):
        resolve_inside(root, "linkdir/secret.txt")
    with pytest.raises(OutsideWorkspace):  # a file about to be created below it
        resolve_inside(root, "linkdir/new/file.txt")


def test_intermediate_symlink_pointing_outside(root: Path) -> None:
    os.symlink(root.parent / "outside", root / "src" / "up")
    with pytest.raises(OutsideWorkspace):
        resolve_inside(root, "src/up/secret.txt")


def test_symlink_staying_inside_is_followed(root: Path) -> None:
    os.symlink("src", root / "alias")
    assert resolve_inside(root, "alias/a.py") == root.resolve() / "src" / "a.py"


def test_symlink_loop_is_refused(root: Path) -> None:
    os.symlink("loop", root / "loop")
    with pytest.raises(OutsideWorkspace):
        resolve_inside(root, "loop")


def test_symlinked_root_is_resolved(tmp_path: Path, root: Path) -> None:
    link = tmp_path / "ws-link"
    os.symlink(root, link)
    assert resolve_inside(link, "src/a.py") == root.resolve() / "src" / "a.py"
    assert relative_key(link, resolve_inside(link, "src/a.py")) == "src/a.py"
