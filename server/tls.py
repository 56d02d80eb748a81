"""TLS and mutual TLS for the gRPC server, from PEM files (`nextbest serve --tls-cert --tls-key [--tls-client-ca]`)."""

from __future__ import annotations

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

    def __repr__(self) -> str:
        return f"<ServerTls: mutual={self.client_ca is not None}>"
