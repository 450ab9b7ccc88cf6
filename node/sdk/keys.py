"""Ed25519 identity files: one JSON object per key, readable only by its owner.

Format (hex bytes)::

    {"org_id": "leadfirm", "public_key": "<64 hex>", "seed": "<64 hex>"}

The same format serves a validator's consensus key (``node.key``) and a
participant's transaction key (``orgs/<org_id>.key``).  A file that
cannot be read, is not that object, or whose seed does not give its public
key raises :class:`KeyFileError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from consensus.codec import Ed25519Signer
from node.sdk.errors import ProvenetError
from node.sdk.files import PRIVATE_DIR_MODE, make_directory, write_private_file


class KeyFileError(ProvenetError, ValueError):
    """A key file is missing or malformed; the message says which and why."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_key_file", message, text=message)


@dataclass(frozen=True)
class Identity:
    org_id: str
    signer: Ed25519Signer

    @property
    def public_key(self) -> bytes:
        return self.signer.public_key


def save_identity(path: Path, identity: Identity) -> None:
    """Write ``identity`` to ``path`` with mode 0600 (also over an existing file).

    Missing parent directories are created 0700: a directory made to hold a
    key needs no other reader.
    """
    path = Path(path)
    make_directory(path.parent, PRIVATE_DIR_MODE)
    document = {
        "org_id": identity.org_id,
        "public_key": identity.public_key.hex(),
        "seed": identity.signer.seed().hex(),
    }
    write_private_file(path, (json.dumps(document, indent=2) + "\n").encode())


def load_identity(path: Path) -> Identity:
    try:
        document = json.loads(Path(path).read_text())
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    except json.JSONDecodeError:
        raise KeyFileError(f"key file {path} is not JSON") from None
    if not isinstance(document, dict):
        raise KeyFileError(f"key file {path} must hold a JSON object")
    try:
        seed = bytes.fromhex(document["seed"])
        public_key = bytes.fromhex(document["public_key"])
        org_id = document["org_id"]
    except (KeyError, TypeError, ValueError):
        raise KeyFileError(f"key file {path} needs org_id, public_key and seed (hex)") from None
    if len(seed) != 32 or not isinstance(org_id, str):
        raise KeyFileError(f"key file {path}: seed must be 32 bytes and org_id a string")
    signer = Ed25519Signer.from_seed(seed)
    if signer.public_key != public_key:
        raise KeyFileError(f"key file {path}: public_key does not match the seed")
    return Identity(org_id, signer)
