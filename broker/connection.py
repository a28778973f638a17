"""Connections to the broker, as every side opens them: RabbitMQ over amqp:// or amqps:// (the
certificate chain and host name always checked), or the embedded broker's folder through
kombu's filesystem transport, made safe for a message written while it is read."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..protocol.urls import EMBEDDED_POLLING_INTERVAL_S, EMBEDDED_SCHEME, embedded_folder, is_embedded


def tls_options(url: str) -> dict | None:
    """What an amqps:// connection must check: the chain against the system's trust store
    (or $SSL_CERT_FILE / $SSL_CERT_DIR), and the host name, which it also sends as SNI.
    None for plain amqp://."""
    parts = urlsplit(url)
    if parts.scheme != "amqps":
        return None
    import ssl

    return {"server_hostname": parts.hostname, "cert_reqs": ssl.CERT_REQUIRED}


def explain_tls_error(exc: BaseException, url: str) -> str | None:
    """A sentence naming why the broker's certificate was refused, or None if exc is not that."""
    import ssl

    found: BaseException | None = exc
    while found is not None and not isinstance(found, ssl.SSLCertVerificationError):
        found = found.__cause__ or found.__context__
    if found is None:
        return None
    host = urlsplit(url).hostname
    reason = getattr(found, "verify_message", "") or str(found)
    if "Hostname mismatch" in reason or "IP address mismatch" in reason:
        why = f"its certificate is not issued for {host!r} (name mismatch)"
    elif "expired" in reason:
        why = "its certificate has expired"
    elif "not yet valid" in reason:
        why = "its certificate is not valid yet"
    elif "issuer" in reason or "self-signed" in reason or "self signed" in reason:
        why = ("its certificate is issued by a certificate authority this host does not trust (untrusted "
               "issuer; add the authority to the system's trust store or point $SSL_CERT_FILE at it)")
    else:
        why = f"its certificate was refused ({reason})"
    return f"the broker at {host} failed TLS verification: {why}"


def broker_connection(url: str, **options):
    """A kombu connection to an AMQP URL, or to the embedded broker's filesystem:///folder.
    amqps:// connections always verify the broker's certificate chain and host name."""
    import kombu

    if not is_embedded(url):
        tls = tls_options(url)
        if tls is not None:
            options["ssl"] = tls
        return kombu.Connection(url, **options)
    folder = embedded_folder(url)
    # Every folder explicit: kombu's default control folder is relative to the working directory.
    transport_options = {"data_folder_in": folder, "data_folder_out": folder,
                         "control_folder": f"{folder}/control",
                         "polling_interval": EMBEDDED_POLLING_INTERVAL_S}
    options.pop("transport_options", None)
    return kombu.Connection(f"{EMBEDDED_SCHEME}://", transport=_atomic_filesystem_transport(),
                            transport_options=transport_options, **options)


def _atomic_filesystem_transport():
    """kombu's filesystem transport, but a message file appears only once it is whole.

    kombu writes each message in place, under its final name; a consumer polling the folder
    can take it half-written, fail to decode it, and lose it. Write aside, then rename."""
    import os
    import time
    import uuid

    from kombu.transport import filesystem
    from kombu.utils.encoding import str_to_bytes
    from kombu.utils.json import dumps

    from ..protocol.files import write_private_file

    class Channel(filesystem.Channel):
        def _put(self, queue, payload, **kwargs):
            name = f"{int(round(time.monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
            partial = os.path.join(self.data_folder_out, f".{uuid.uuid4()}.partial")  # no queue matches it
            # 0600: a message holds function code, arguments or results.
            write_private_file(os.path.join(self.data_folder_out, name), str_to_bytes(dumps(payload)), partial)

    class Transport(filesystem.Transport):
        pass

    Transport.Channel = Channel
    return Transport
