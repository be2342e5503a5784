"""`--ssl_config_file`: TF Serving's `SSLConfig` (text proto) turned into gRPC server credentials.

As in TF Serving's server.cc, the fields hold PEM *contents*, not file paths: `server_key`, `server_cert`,
`custom_ca` (the CA that signs client certificates) and `client_verify` (require and verify a client
certificate). The PEMs are checked with the standard library's `ssl` module at start-up, so a wrong key, a
key that does not match the certificate or a bad CA is a one-line flag error instead of a gRPC crash.

Example:

    # ssl.config
    server_key: "-----BEGIN PRIVATE KEY-----\\n...\\n-----END PRIVATE KEY-----\\n"
    server_cert: "-----BEGIN CERTIFICATE-----\\n...\\n-----END CERTIFICATE-----\\n"
    custom_ca: "-----BEGIN CERTIFICATE-----\\n...\\n-----END CERTIFICATE-----\\n"
    client_verify: true

>>> config = load_ssl_config("ssl.config")                        # doctest: +SKIP
>>> server.add_secure_port("0.0.0.0:8500", server_credentials(config))   # doctest: +SKIP
"""

from __future__ import annotations

import os
import ssl
import tempfile

from kerasbert.serving.protos import SSLConfig, read_text_file


def load_ssl_config(path: str):
    """Reads and checks an `SSLConfig` text file; raises ValueError with a one-line reason.

    Example:

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".config", delete=False) as f:
    ...     _ = f.write('server_key: "not a key"')
    >>> load_ssl_config(f.name)
    Traceback (most recent call last):
    ...
    ValueError: server_cert is empty (it holds the PEM text of the server certificate, not a path)
    """
    from google.protobuf import text_format

    try:
        config = read_text_file(path, SSLConfig)
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror})") from None
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise ValueError(f"is not a text-format SSLConfig: {exc}") from None
    for field in ("server_key", "server_cert"):
        if not getattr(config, field).strip():
            what = "private key" if field == "server_key" else "certificate"
            raise ValueError(f"{field} is empty (it holds the PEM text of the server {what}, not a path)")
    if config.client_verify and not config.custom_ca.strip():
        raise ValueError("client_verify: true needs custom_ca (the PEM of the CA that signs client certificates)")
    check_pems(config.server_key, config.server_cert, config.custom_ca)
    return config


def check_pems(key: str, cert: str, ca: str = "") -> None:
    """Raises ValueError unless `key` is a private key matching certificate `cert` and `ca` (if any) parses."""
    for field, text, marker in (("server_key", key, "PRIVATE KEY"), ("server_cert", cert, "CERTIFICATE")):
        if f"-----BEGIN {marker}" not in text and not (marker == "PRIVATE KEY" and "PRIVATE KEY-----" in text):
            raise ValueError(f"{field} is not PEM text (expected '-----BEGIN {marker}-----'; paths are not read)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain only reads files: write the PEMs to a private temporary folder for the check.
    with tempfile.TemporaryDirectory(prefix="kerasbert-tls-") as folder:
        key_path, cert_path = os.path.join(folder, "key.pem"), os.path.join(folder, "cert.pem")
        for path, text in ((key_path, key), (cert_path, cert)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        try:
            context.load_cert_chain(cert_path, key_path, password=_no_password)
        except ssl.SSLError as exc:
            raise ValueError(f"server_key/server_cert are not a matching key and certificate ({exc.reason})") from None
    if ca.strip():
        try:
            context.load_verify_locations(cadata=ca)
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(f"custom_ca is not a PEM certificate ({getattr(exc, 'reason', None) or exc})") from None


def _no_password():
    # Called only for an encrypted key; without it OpenSSL would prompt on the terminal and hang start-up.
    raise ValueError("server_key is encrypted; gRPC needs an unencrypted PEM key")


def server_credentials(config):
    """`grpc.ServerCredentials` for an `SSLConfig`, with TF Serving's client-certificate semantics."""
    import grpc

    return grpc.ssl_server_credentials(
        [(config.server_key.encode(), config.server_cert.encode())],
        root_certificates=config.custom_ca.encode() if config.custom_ca.strip() else None,
        require_client_auth=bool(config.client_verify),
    )


__all__ = ["SSLConfig", "check_pems", "load_ssl_config", "server_credentials"]
