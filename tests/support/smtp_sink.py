#!/usr/bin/env python3
"""A tiny SMTP sink for hookrelay's tests (needs `pip install aiosmtpd`).

    python3 tests/support/smtp_sink.py [--port N] [--user U --password P]

Listens on 127.0.0.1 (port 0, the default, picks a free one). The first line on
stdout is the port, as a bare number, once the server accepts connections. Then,
for every message received, one JSON line:

    {"mail_from": ..., "rcpt_tos": [...], "data": "<the whole message>",
     "subject": "<decoded Subject>", "parts": [{"content_type": ..., "content": ...}]}

`parts` are the decoded leaf parts (quoted-printable / base64 undone, as text),
so tests need not decode transfer encodings themselves.

With --user/--password, AUTH (PLAIN/LOGIN) is required and only that pair is
accepted (others get 535); no TLS is needed, since tests run on localhost.
Runs until killed (SIGTERM or SIGINT).
"""

import argparse
import asyncio
import email
import email.policy
import json
import logging
import signal
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
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
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": text,
            "subject": str(msg.get("Subject", "")),
            "parts": parts,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        return "250 OK"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--user")
    ap.add_argument("--password")
    args = ap.parse_args()
    if (args.user is None) != (args.password is None):
        ap.error("give both --user and --password, or neither")

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == args.user.encode()
            and auth_data.password == args.password.encode()
        )
        # handled=False: aiosmtpd answers (235, or 535 on failure) itself.
        return AuthResult(success=ok, handled=False)

    def factory():
        if args.user is None:
            return SMTP(Sink(), hostname="smtp-sink.test")
        return SMTP(
            Sink(),
            hostname="smtp-sink.test",
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=False,
        )

    # Plain AUTH on localhost is the point; do not warn about it on every start.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(factory, "127.0.0.1", args.port))
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
