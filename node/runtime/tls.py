"""The network's certificate authority, node certificates and server TLS contexts.

The client side (:func:`node.sdk.tls.client_context`) lives with the SDK.

Theory of operation
-------------------
A permissioned network knows its members in advance, so it does not use the
public web PKI: ``provenet net init`` creates one private CA per network
(ECDSA P-256, self-signed) and signs one certificate per node with it.  A
node's certificate names the node (CN = node name, SAN DNS = node name) and
the loopback addresses, and is valid for both ends of a connection
(serverAuth + clientAuth), because validators link to each other with
mutual TLS: each side proves it holds a certificate from this network's CA,
and the node compares the peer's CN with the identity the peer claims
(:func:`peer_common_name`).  The client API uses the same server
certificate; API clients verify it against the CA and need no certificate.

Private keys are written with mode 0600, readable by their owner only,
through :func:`node.sdk.files.write_private_file` (the one writer of every
private key), and certificates 0644 through :func:`node.sdk.files.write_file`.

Every context, server and client, offers only AEAD cipher suites
(:data:`node.sdk.tls.AEAD_CIPHERS`).  TLS 1.3's suites are all AEAD; TLS 1.2, still
allowed for older clients, would otherwise also accept CBC suites with
HMAC, whose padding checks have a long history of timing attacks
(Lucky Thirteen) and which no current client needs.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.sdk.files import (
    PRIVATE_DIR_MODE,
    PUBLIC_DIR_MODE,
    PUBLIC_FILE_MODE,
    make_directory,
    write_file,
    write_private_file,
)
from node.sdk.tls import restrict_protocol

CA_VALIDITY_DAYS = 3_650
# Certificates start an hour in the past so a host whose clock is slightly
# behind the one that ran `net init` still accepts them.
BACKDATE_S = 3_600
CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca.key"
NODE_CERT_NAME = "tls.pem"
NODE_KEY_NAME = "tls.key"

_IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def make_ca(directory: Path, common_name: str = "Provenet network CA") -> tuple[Path, Path]:
    """Create a self-signed network CA in ``directory``; return (cert path, key path).

    Why a CA and not pinned self-signed certs: adding a node later means
    signing one certificate, not redistributing a trust list to every node.
    """
    directory = Path(directory)
    # 0755: the CA certificate is public (nodes and clients read it); the
    # CA key beside it is protected by its own 0600.
    make_directory(directory, PUBLIC_DIR_MODE)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = _now() - datetime.timedelta(seconds=BACKDATE_S)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write_pair(directory / CA_CERT_NAME, directory / CA_KEY_NAME, certificate, key)


def issue_node_cert(
    ca_cert: Path,
    ca_key: Path,
    name: str,
    out_dir: Path,
    hosts: Iterable[str] = (),
) -> tuple[Path, Path]:
    """Sign a certificate for node ``name`` with the CA; return (cert path, key path).

    The SAN always holds 127.0.0.1, localhost and ``name`` so a local network
    works with hostname checking on; ``hosts`` (IP addresses or DNS names)
    adds the addresses a node is reached at on a real deployment.  The
    certificate expires with the CA: a node certificate outliving its issuer
    would be refused anyway.
    """
    issuer = x509.load_pem_x509_certificate(Path(ca_cert).read_bytes())
    issuer_key = serialization.load_pem_private_key(Path(ca_key).read_bytes(), password=None)
    if not isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca_key} is not an ECDSA CA key")
    key = ec.generate_private_key(ec.SECP256R1())
    start = _now() - datetime.timedelta(seconds=BACKDATE_S)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(issuer.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(_san_entries(name, hosts)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    out_dir = Path(out_dir)
    # 0700 when created here: a node's directory holds its private keys.
    make_directory(out_dir, PRIVATE_DIR_MODE)
    return _write_pair(out_dir / NODE_CERT_NAME, out_dir / NODE_KEY_NAME, certificate, key)


def server_context(
    ca_file: Path, cert_file: Path, key_file: Path, require_client_cert: bool
) -> ssl.SSLContext:
    """A server-side context presenting the node's certificate.

    ``require_client_cert`` is for the peer port (mutual TLS: only holders of
    a certificate from this network's CA may connect); the client API leaves
    it off because participants authenticate by signing transactions.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    restrict_protocol(context)
    context.load_cert_chain(str(cert_file), str(key_file))
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(ca_file))
    return context


def peer_common_name(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The CN of the certificate the other end of a connection presented, if any.

    Why: the CA proves a peer belongs to the network, not which node it is;
    the node checks this name against the replica the peer claims to be, so
    one compromised node cannot pose as another.  Only meaningful on a
    context that verified the certificate (CERT_REQUIRED).
    """
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return None
    value = names[0].value
    return value if isinstance(value, str) else value.decode()


# ------------------------------------------------------------------ helpers


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=True,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _san_entries(name: str, hosts: Iterable[str]) -> list[x509.GeneralName]:
    """SAN entries in a stable order, each host once, IPs as IP entries."""
    entries: list[x509.GeneralName] = []
    for host in ("127.0.0.1", "localhost", name, *hosts):
        entry = _general_name(host)
        if entry not in entries:
            entries.append(entry)
    return entries


def _general_name(host: str) -> x509.GeneralName:
    address: _IpAddress | None
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        return x509.IPAddress(address)
    return x509.DNSName(host)


def _write_pair(
    cert_path: Path,
    key_path: Path,
    certificate: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
) -> tuple[Path, Path]:
    """The key first: a certificate on disk without its key would be of no use."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private_file(key_path, pem)
    write_file(cert_path, certificate.public_bytes(serialization.Encoding.PEM), PUBLIC_FILE_MODE)
    return cert_path, key_path
