"""TLS for clients of a node: trust only the network's CA, AEAD suites only.

Why AEAD only: TLS 1.3's suites are all AEAD; TLS 1.2, still allowed for
older clients, would otherwise also accept CBC suites with HMAC, whose
padding checks have a long history of timing attacks (Lucky Thirteen) and
which no current client needs.  The node's server contexts
(:mod:`node.runtime.tls`) apply the same :func:`restrict_protocol`.
"""

from __future__ import annotations

import ssl
from pathlib import Path

# TLS 1.2 suites in OpenSSL's cipher-string syntax: ECDHE key exchange (forward
# secrecy) with AES-GCM or ChaCha20-Poly1305 only.  This string does not
# touch TLS 1.3, whose suites OpenSSL configures separately and are all AEAD.
AEAD_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def client_context(
    ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A client-side context trusting only the network CA, hostname check on.

    Why only the CA: trusting the system store too would let any publicly
    trusted certificate impersonate a node.  A peer link passes the node's
    own certificate so the other side's mutual-TLS check passes.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    restrict_protocol(context)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(ca_file))
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), None if key_file is None else str(key_file))
    return context


def restrict_protocol(context: ssl.SSLContext) -> None:
    """TLS 1.2 or later, AEAD suites only: the same rule on every context."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(AEAD_CIPHERS)
