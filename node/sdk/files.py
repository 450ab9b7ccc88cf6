"""Writing files and directories with explicit modes, never left to the umask.

Theory of operation
-------------------
``provenet net init`` writes the files a network trusts: the CA
certificate, the genesis, the node configs and every private key.  Under a
permissive umask (000 is common in containers) a plain ``open`` would leave
them world-writable, and anyone on the host could swap the genesis or the
CA.  So every such file goes through :func:`write_file`, which sets the mode
itself, and every directory through :func:`make_directory`.

:func:`write_file` is atomic: it writes a temporary file in the same
directory (``mkstemp`` creates it 0600 whatever the umask, so a secret is
never readable, even for a moment), sets the final mode with ``fchmod``,
flushes it to disk, and renames it over the target.  A reader sees the old
file or the new one, never half of one; a crash leaves at most a stray
temporary file; and a symlink planted at the target is replaced, not
followed.

Every private key (an identity file of :mod:`node.sdk.keys`, a TLS or CA
key of :mod:`node.runtime.tls`) is written by :func:`write_private_file`
and by nothing else, so there is one place to check that a secret is 0600
from the moment its file exists: the temporary file is created 0600 and
never opened wider, and an existing key file with a looser mode is
replaced by a new inode, not rewritten in place, so its old mode goes with it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

# World-readable, writable by the owner only: certificates, genesis, configs.
PUBLIC_FILE_MODE = 0o644
# Readable by the owner only: every private key.
PRIVATE_FILE_MODE = 0o600
# A directory others may read (public files, or per-file protected keys).
PUBLIC_DIR_MODE = 0o755
# A directory only its owner may enter (keys, a node's own state).
PRIVATE_DIR_MODE = 0o700


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` atomically; the file has exactly ``mode``."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


def write_private_file(path: Path, data: bytes) -> None:
    """Replace ``path`` with a secret (a private key), readable by its owner only.

    The one writer of private key files: see the module docstring.
    """
    write_file(path, data, PRIVATE_FILE_MODE)


def make_directory(path: Path, mode: int) -> None:
    """Create ``path`` (and missing parents) with exactly ``mode``.

    A directory that already exists keeps its mode: it is the operator's,
    and changing the mode of, say, their home directory would surprise them.
    Missing parents get the same mode as ``path``, since they lead only to it.
    """
    path = Path(path)
    if path.is_dir():
        return
    make_directory(path.parent, mode)
    try:
        path.mkdir(mode)
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    # mkdir's mode is filtered through the umask; chmod is not.
    os.chmod(path, mode)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a crash right after keeps the new file)."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
