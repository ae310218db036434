#!/usr/bin/env python3
"""A tiny SMTP sink for hookrelay's tests (needs `pip install aiosmtpd`).

    python3 tests/support/smtp_sink.py [--port N] [--user U --password P]
                                       [--tls starttls|implicit --ca-out FILE]
                                       [--refuse ADDR=REPLY] [--refuse-once ADDR=REPLY]

Listens on 127.0.0.1 (port 0, the default, picks a free one). The first line on
stdout is the port, as a bare number, once the server accepts connections. Then,
for every message received, one JSON line:

    {"mail_from": ..., "rcpt_tos": [...], "data": "<the whole message>",
     "subject": "<decoded Subject>", "parts": [{"content_type": ..., "content": ...}]}

`parts` are the decoded leaf parts (quoted-printable / base64 undone, as text),
so tests need not decode transfer encodings themselves.

With --user/--password, AUTH (PLAIN/LOGIN) is required and only that pair is
accepted (others get 535); no TLS is needed, since tests run on localhost.

With --tls (needs `pip install cryptography`), the sink makes its own CA, writes
that CA's certificate (PEM) to --ca-out, and serves a certificate it signed for
127.0.0.1 and localhost: `starttls` offers and requires STARTTLS, `implicit`
speaks TLS from the first byte (smtps). Each JSON line then says `"tls": true`
when the message came over TLS. Like an internal mail relay, nothing public
vouches for it: a client must be given the CA.
--refuse 'perm@example.com=550 5.1.1 no such user' answers RCPT TO:<ADDR> with
that reply every time; --refuse-once does so on the first RCPT TO:<ADDR> only and
accepts the address afterwards (a full mailbox, greylisting). Both repeat. A
refused address is not in the message's `rcpt_tos`.
Runs until killed (SIGTERM or SIGINT).
"""

import argparse
import asyncio
import datetime
import ipaddress
import os
import ssl
import tempfile
import email
import email.policy
import json
import logging
import signal
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, refuse=None, refuse_once=None):
        # address (lower case) -> SMTP reply; the "once" ones are spent when used.
        self.refuse = refuse or {}
        self.refuse_once = refuse_once or {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        key = address.lower()
        if key in self.refuse:
            return self.refuse[key]
        if key in self.refuse_once:
            return self.refuse_once.pop(key)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, bytes):
            text = raw.decode("utf-8", errors="replace")
        else:
            text = raw
            raw = raw.encode("utf-8")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            try:
                content = part.get_content()
            except Exception as e:  # noqa: BLE001 - report, do not crash
                content = f"<undecodable: {e}>"
            if isinstance(content, bytes):
                content = content.decode("utf-8", errors="replace")
            parts.append({"content_type": part.get_content_type(), "content": content})
        line = {
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": text,
            "subject": str(msg.get("Subject", "")),
            "parts": parts,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        return "250 OK"


def make_tls_context(ca_out):
    """A CA written to `ca_out`, and a server context with a certificate it signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("hookrelay test internal CA"))
        .issuer_name(name("hookrelay test internal CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("smtp-sink.test"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    with open(ca_out, "wb") as f:
        f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    # The server's own key and chain live only as long as this process.
    work = tempfile.mkdtemp(prefix="smtp-sink-")
    cert_path, key_path = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    os.remove(cert_path)
    os.remove(key_path)
    os.rmdir(work)
    return ctx


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--tls", choices=["starttls", "implicit"])
    ap.add_argument("--ca-out")
    ap.add_argument("--refuse", action="append", default=[], metavar="ADDR=REPLY")
    ap.add_argument("--refuse-once", action="append", default=[], metavar="ADDR=REPLY")
    args = ap.parse_args()

    def replies(specs):
        out = {}
        for spec in specs:
            addr, sep, reply = spec.partition("=")
            if not sep or not reply[:3].isdigit():
                ap.error(f"--refuse takes ADDR=REPLY (e.g. a@b.test=550 5.1.1 no such user): {spec!r}")
            out[addr.lower()] = reply
        return out

    refuse, refuse_once = replies(args.refuse), replies(args.refuse_once)
    if (args.user is None) != (args.password is None):
        ap.error("give both --user and --password, or neither")
    if (args.tls is None) != (args.ca_out is None):
        ap.error("give both --tls and --ca-out, or neither")
    tls = make_tls_context(args.ca_out) if args.tls else None
    starttls = {"tls_context": tls, "require_starttls": True} if args.tls == "starttls" else {}

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == args.user.encode()
            and auth_data.password == args.password.encode()
        )
        # handled=False: aiosmtpd answers (235, or 535 on failure) itself.
        return AuthResult(success=ok, handled=False)

    # One handler for every connection: a --refuse-once reply is spent for good.
    sink = Sink(refuse, refuse_once)

    def factory():
        if args.user is None:
            return SMTP(sink, hostname="smtp-sink.test", **starttls)
        return SMTP(
            sink,
            hostname="smtp-sink.test",
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=False,
            **starttls,
        )

    # Plain AUTH on localhost is the point; do not warn about it on every start.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    implicit = tls if args.tls == "implicit" else None
    server = loop.run_until_complete(
        loop.create_server(factory, "127.0.0.1", args.port, ssl=implicit)
    )
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
