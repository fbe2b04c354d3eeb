"""MinIO's webhook target: the same core as Lambda, served by uvicorn (``handlers.asgi``) or,
for a laptop, by the standard library's ``http.server`` (``--server stdlib``).

    SIGHTLINE_WEBHOOK_TOKEN=... CELERY_BROKER_URL=... python -m handlers.webhook --port 9000

MinIO POSTs one notification per request with ``Authorization: Bearer <auth_token>`` (or the
token verbatim when it already has a scheme). Answers: 200 done (tasks sent or records
ignored); 401 wrong token; 400 not a JSON object, or a negative length; 411 no
Content-Length; 413 over 1 MiB (refused before reading); 408 (uvicorn) body not received
within the body timeout; 503 some record failed, so MinIO retries it (configure a
``queue_dir`` on the target so retries survive restarts), or (uvicorn) the connection limit
is reached.
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

from handlers.config import HandlerConfig, apply_file
from handlers.core import Publisher, handle
from handlers.rules import NO_EXCLUSIONS, OPAQUE_KEYS_DEFAULT, Exclusions, OwnerRule

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
        opaque_keys: bool = OPAQUE_KEYS_DEFAULT,
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
        self.opaque_keys = opaque_keys
        self.exclude = exclude

    @classmethod
    def from_config(cls, config: HandlerConfig, publisher: Publisher) -> WebhookApp:
        """The app both servers run: every handler setting (owners, allowed buckets, opaque
        keys, exclusions) from ``config``. Raises ValueError without a token."""
        return cls(
            config.webhook_token or "",
            config.owners,
            publisher,
            allowed_buckets=config.allowed_buckets,
            opaque_keys=config.opaque_keys,
            exclude=config.exclude,
        )

    def authorized(self, header: str | None) -> bool:
        return hmac.compare_digest((header or "").encode(), self._expected)

    def notify(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """Status and JSON answer for one POSTed notification."""
        try:
            event = json.loads(body)
        except ValueError as exc:
            return 400, {"error": f"body is not JSON: {exc}"}
        except RecursionError:
            return 400, {"error": "body is not an event: JSON nested too deep"}
        if not isinstance(event, dict):
            return 400, {"error": "body is not a JSON object"}
        result = handle(
            event,
            self.owners,
            self.publisher,
            allowed_buckets=self.allowed_buckets,
            opaque_keys=self.opaque_keys,
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
    parser = argparse.ArgumentParser(
        prog="python -m handlers.webhook",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--server",
        choices=("uvicorn", "stdlib"),
        default="uvicorn",
        help="uvicorn: the ASGI app (handlers.asgi), for production; stdlib: http.server, "
        "one thread per connection, for a laptop",
    )
    bounds = parser.add_argument_group("uvicorn bounds")
    bounds.add_argument("--workers", type=int, default=1, help="server processes")
    bounds.add_argument(
        "--limit-concurrency", type=int, default=1000,
        help="connections + requests per process; beyond it new ones get 503",
    )  # fmt: skip
    bounds.add_argument("--backlog", type=int, default=2048, help="pending TCP connections")
    bounds.add_argument("--keep-alive", type=int, default=5, help="idle keep-alive, seconds")
    bounds.add_argument(
        "--body-timeout", type=float, default=10.0,
        help="seconds from a request's start to its last body byte, else 408",
    )  # fmt: skip
    bounds.add_argument("--publish-threads", type=int, default=8, help="broker publishes at once")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:  # uvicorn's bind() said so in an 80-line traceback
        parser.error(f"--port must be 0 to 65535, got {args.port}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.server == "uvicorn":
        return _serve_uvicorn(args)
    try:
        apply_file()  # sightline.toml fills what the environment leaves unset
        config = HandlerConfig.from_env()
        if not config.broker_url:
            raise ValueError("CELERY_BROKER_URL is not set")
        from handlers.publish import CeleryPublisher

        publisher = CeleryPublisher(config.broker_url, config.broker_options)
        app = WebhookApp.from_config(config, publisher)
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


def _serve_uvicorn(args: argparse.Namespace) -> int:
    import os

    # The app factory reads these in each server process.
    os.environ["SIGHTLINE_WEBHOOK_BODY_TIMEOUT_S"] = str(args.body_timeout)
    os.environ["SIGHTLINE_WEBHOOK_PUBLISH_THREADS"] = str(args.publish_threads)
    try:
        import uvicorn

        from handlers.asgi import app_from_env

        app = app_from_env()  # refuse bad settings here, in one line, before listening
    except ImportError:
        print("sightline webhook: error: uvicorn is not installed (pip install "
              "'sightline[handler]'), or run --server stdlib", file=sys.stderr)  # fmt: skip
        return 2
    except ValueError as exc:
        print(f"sightline webhook: error: {exc}", file=sys.stderr)
        return 2
    target: Any = app if args.workers == 1 else "handlers.asgi:app_from_env"
    log.info("uvicorn on %s:%d, %d process(es)", args.host, args.port, args.workers)
    uvicorn.run(
        target,
        factory=args.workers != 1,
        host=args.host,
        port=args.port,
        workers=args.workers,
        limit_concurrency=args.limit_concurrency,
        backlog=args.backlog,
        timeout_keep_alive=args.keep_alive,
        timeout_graceful_shutdown=30,
        lifespan="on",
        http="h11",
        access_log=False,
        log_level="info",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
