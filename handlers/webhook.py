"""MinIO's webhook target: an HTTP endpoint on the standard library, the same core as Lambda.

    SIGHTLINE_WEBHOOK_TOKEN=... CELERY_BROKER_URL=... python -m handlers.webhook --port 9000

MinIO POSTs one notification per request with ``Authorization: Bearer <auth_token>`` (or the
token verbatim when it already has a scheme). Answers: 200 done (tasks sent or records
ignored); 401 wrong token; 400 not a JSON object, or a negative length; 411 no
Content-Length; 413 over 1 MiB (refused before reading); 503 some record failed, so MinIO
retries it (configure a ``queue_dir`` on the target so retries survive restarts).
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import sys
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from handlers.config import HandlerConfig
from handlers.core import Publisher, handle
from handlers.rules import NO_EXCLUSIONS, Exclusions, OwnerRule

log = logging.getLogger("sightline.webhook")
MAX_BODY = 1 << 20  # one MinIO notification is a few kB


class WebhookApp:
    """Checks the token and runs one notification through the core; no HTTP in here."""

    def __init__(
        self,
        token: str,
        owners: OwnerRule,
        publisher: Publisher,
        *,
        allowed_buckets: frozenset[str] | None = None,
        exclude: Exclusions = NO_EXCLUSIONS,
    ) -> None:
        if not token:
            raise ValueError("the webhook needs a token (SIGHTLINE_WEBHOOK_TOKEN)")
        # MinIO's rule: a one-word token is sent as "Bearer <token>", two words verbatim.
        expected = token if len(token.split()) == 2 else f"Bearer {token}"
        self._expected = expected.encode()
        self.owners = owners
        self.publisher = publisher
        self.allowed_buckets = allowed_buckets
        self.exclude = exclude

    def authorized(self, header: str | None) -> bool:
        return hmac.compare_digest((header or "").encode(), self._expected)

    def notify(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """Status and JSON answer for one POSTed notification."""
        try:
            event = json.loads(body)
        except ValueError as exc:
            return 400, {"error": f"body is not JSON: {exc}"}
        if not isinstance(event, dict):
            return 400, {"error": "body is not a JSON object"}
        result = handle(
            event,
            self.owners,
            self.publisher,
            allowed_buckets=self.allowed_buckets,
            exclude=self.exclude,
        )
        counts: dict[str, int] = {}
        for a in result.actions:
            counts[a.action] = counts.get(a.action, 0) + 1
        answer = {"actions": counts, "errors": [a.reason for a in result.errors]}
        return (503 if result.errors else 200), answer


def make_server(app: WebhookApp, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A threading HTTP server for ``app``; port 0 picks a free one (``server.server_port``)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "sightline-webhook"
        timeout = 30  # a stalled client frees its thread

        def do_HEAD(self) -> None:  # MinIO checks that the target is up with a HEAD
            self._reply(200 if app.authorized(self.headers.get("Authorization")) else 401)

        def do_GET(self) -> None:
            self._reply(200, {"status": "ok"} if self.path == "/healthz" else None)

        def do_POST(self) -> None:
            if not app.authorized(self.headers.get("Authorization")):
                self._reply(401, {"error": "missing or wrong token"})
                return
            try:
                length = int(self.headers.get("Content-Length") or "")
            except ValueError:
                self._reply(411, {"error": "Content-Length required"})
                return
            if length < 0:  # rfile.read(-1) would read until the client hangs up
                self._reply(400, {"error": "bad Content-Length"})
                return
            if length > MAX_BODY:
                self._reply(413, {"error": f"body over {MAX_BODY} bytes"})
                return
            status, answer = app.notify(self.rfile.read(length))
            self._reply(status, answer)

        def _reply(self, status: int, answer: dict[str, Any] | None = None) -> None:
            data = json.dumps(answer).encode() if answer is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data and self.command != "HEAD":
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handlers.webhook", description=__doc__)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        config = HandlerConfig.from_env()
        if not config.broker_url:
            raise ValueError("CELERY_BROKER_URL is not set")
        from handlers.publish import CeleryPublisher

        publisher = CeleryPublisher(config.broker_url, config.broker_options)
        app = WebhookApp(
            config.webhook_token or "",
            config.owners,
            publisher,
            allowed_buckets=config.allowed_buckets,
            exclude=config.exclude,
        )
        server = make_server(app, args.host, args.port)
    except (ValueError, OSError) as exc:
        print(f"sightline webhook: error: {exc}", file=sys.stderr)
        return 2
    log.info("listening on %s:%d", args.host, server.server_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        publisher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
