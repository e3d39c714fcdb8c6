"""A throwaway certificate authority for TLS tests, made with openssl: a CA, a server certificate
for ``localhost`` / ``127.0.0.1`` and a client certificate (keys PKCS#8, unencrypted)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(directory: Path, prefix: str = "") -> dict[str, Path]:
    """``{"ca.pem", "server.pem", "server.key", "client.pem", "client.key"}`` under ``directory``
    (names with ``prefix``; two authorities in one folder do not trust each other)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = f"{prefix}ca.key", f"{prefix}ca.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
             "-subj", f"/CN=leadflow-test-{prefix}ca", cwd=directory)
    (directory / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        key, csr, pem = f"{prefix}{name}.key", f"{prefix}{name}.csr", f"{prefix}{name}.pem"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
                 cwd=directory)
        _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", pem,
                 "-days", "2", "-extfile", "san.cnf", cwd=directory)
    return {name: directory / f"{prefix}{name}" for name in ("ca.pem", "server.pem", "server.key", "client.pem",
                                                             "client.key")}
