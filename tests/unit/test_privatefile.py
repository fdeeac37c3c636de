"""keycask.privatefile: the one writer of owner-only files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from keycask import privatefile


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_new_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        privatefile.write_new(tmp_path / "secret", b"\x00key")
        privatefile.write_new(tmp_path / "text", "token\n", sync_dir=True)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "secret") == 0o600
    assert (tmp_path / "secret").read_bytes() == b"\x00key"
    assert (tmp_path / "text").read_text() == "token\n" and _mode(tmp_path / "text") == 0o600


def test_write_new_never_replaces(tmp_path: Path) -> None:
    target = tmp_path / "seal.json"
    target.write_text("the original")
    with pytest.raises(FileExistsError):
        privatefile.write_new(target, "another")
    assert target.read_text() == "the original"


def test_write_new_follows_no_symlink(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    link = tmp_path / "token"
    link.symlink_to(elsewhere)  # dangling: O_CREAT alone would create its target
    with pytest.raises(FileExistsError):
        privatefile.write_new(link, "secret")
    assert not elsewhere.exists()


def test_replace_is_atomic_and_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "credentials"
    target.write_text("old")
    target.chmod(0o644)
    # A temporary file left by a crash mid-write is not in the way.
    (tmp_path / "credentials.tmp").write_text("half written")
    inode = target.stat().st_ino
    privatefile.replace(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o600
    # A new file renamed over the old one (never the old one rewritten in place).
    assert target.stat().st_ino != inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials"]


def test_replace_creates_a_missing_file(tmp_path: Path) -> None:
    privatefile.replace(tmp_path / "config", b"[profile keycask]\n")
    assert (tmp_path / "config").read_bytes() == b"[profile keycask]\n"
    assert _mode(tmp_path / "config") == 0o600
