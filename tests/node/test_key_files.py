"""Private key files: one writer, 0600 from the start, never left loose.

Every private key ``net init`` writes (the CA key, each node's TLS and
consensus keys, each organisation's transaction key) goes through
:func:`node.sdk.files.write_private_file`; these tests check that no key
file on disk came from anywhere else, that each kind ends up 0600 whatever
the umask, and that a key file someone loosened is replaced, not rewritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.ops.netinit import init_network
from node.sdk import files
from node.sdk.files import PRIVATE_FILE_MODE, write_private_file

# The kinds of private key a network directory holds, by path pattern.
KEY_KINDS = ("ca/ca.key", "nodes/*/tls.key", "nodes/*/node.key", "orgs/*.key")


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Umask 000, as in many containers: a file left to it would be world-readable."""
    previous = os.umask(0o000)
    try:
        yield
    finally:
        os.umask(previous)


def _holds_private_key(path: Path) -> bool:
    data = path.read_bytes()
    if b"PRIVATE KEY-----" in data:
        return True
    try:
        document = json.loads(data)
    except ValueError:
        return False
    return isinstance(document, dict) and "seed" in document


def _private_key_files(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file() and _holds_private_key(path)}


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_every_private_key_net_init_writes_goes_through_the_one_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_umask: None
) -> None:
    written: dict[Path, int] = {}
    real_write_file = files.write_file

    def spy(path: Path, data: bytes, mode: int) -> None:
        written[Path(path)] = mode
        real_write_file(path, data, mode)

    # write_private_file reaches write_file through the module, so the spy
    # sees exactly the files written as private keys.
    monkeypatch.setattr(files, "write_file", spy)
    root = tmp_path / "net"
    init_network(root, 2, observers=1, base_port=17_900)
    keys = _private_key_files(root)
    assert keys == set(written), "a private key file was written by another writer"
    assert set(written.values()) == {PRIVATE_FILE_MODE}
    for kind in KEY_KINDS:
        assert list(root.glob(kind)), f"net init wrote no {kind}"


def test_each_kind_of_key_is_0600_and_a_loosened_one_is_tightened(
    tmp_path: Path, open_umask: None
) -> None:
    root = tmp_path / "net"
    init_network(root, 2, observers=1, base_port=17_900)
    for path in _private_key_files(root):
        path.chmod(0o666)
    init_network(root, 2, observers=1, base_port=17_900, force=True)
    for kind in KEY_KINDS:
        paths = list(root.glob(kind))
        assert paths, f"net init wrote no {kind}"
        assert {str(p.relative_to(root)): oct(_mode(p)) for p in paths} == {
            str(p.relative_to(root)): oct(PRIVATE_FILE_MODE) for p in paths
        }


def test_a_loose_key_file_is_replaced_not_rewritten(tmp_path: Path, open_umask: None) -> None:
    """The secret never lands in the loose inode: a hard link to it keeps the old bytes."""
    key = tmp_path / "k.key"
    key.write_bytes(b"old")
    key.chmod(0o666)
    link = tmp_path / "link"
    os.link(key, link)
    write_private_file(key, b"secret")
    assert (key.read_bytes(), _mode(key)) == (b"secret", PRIVATE_FILE_MODE)
    assert (link.read_bytes(), _mode(link)) == (b"old", 0o666)
    assert not list(tmp_path.glob(".*.tmp"))
