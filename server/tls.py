"""TLS and mutual TLS for the gRPC and HTTP servers, from PEM files (`nextbest serve --tls-cert --tls-key
[--tls-client-ca]`)."""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass

import grpc


class TlsError(ValueError):
    """TLS files that cannot be used; the message names the file and never quotes a key."""


def _read_pem(path: str, what: str, marker: bytes) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TlsError(f"{path}: cannot read the {what}: {e.strerror}") from None
    if b"-----BEGIN " not in data or marker not in data:
        raise TlsError(f"{path}: not a PEM {what}")
    return data


@dataclass(frozen=True, repr=False)
class ServerTls:
    """The server's certificate chain and private key, and the CA that client certificates must chain to
    (None: clients need no certificate). Plain bytes, so it travels to worker processes."""

    certificate_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    @classmethod
    def load(cls, cert: str, key: str, client_ca: str | None = None) -> ServerTls:
        """Read the PEM files; TlsError naming the file when one is missing or not PEM."""
        return cls(
            _read_pem(cert, "certificate", b"CERTIFICATE"),
            _read_pem(key, "private key", b"PRIVATE KEY"),
            None if client_ca is None else _read_pem(client_ca, "CA certificate", b"CERTIFICATE"),
        )

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials; with a client CA, client certificates are required and verified."""
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The same for HTTP: a server context; with a client CA, client certificates are required and verified.
        TlsError when the key does not match the certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(prefix="nextbest-tls-") as directory:  # load_cert_chain reads files only
            paths = []
            for name, data in (("chain.pem", self.certificate_chain), ("key.pem", self.private_key)):
                path = os.path.join(directory, name)
                with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                    f.write(data)
                paths.append(path)
            try:
                context.load_cert_chain(*paths)
            except ssl.SSLError as e:
                raise TlsError(f"cannot serve TLS: {e.reason or e} (does the key match the certificate?)") from None
        if self.client_ca is not None:
            context.load_verify_locations(cadata=self.client_ca.decode("ascii", "replace"))
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def __repr__(self) -> str:
        return f"<ServerTls: mutual={self.client_ca is not None}>"
