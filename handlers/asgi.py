"""The MinIO webhook as an ASGI app, for a production server (uvicorn): same checks as
``handlers.webhook`` (bearer token, body cap, HEAD for MinIO's liveness probe, /healthz),
the same core, plus a deadline on reading each body.

    python -m handlers.webhook --port 8080            # uvicorn, this app (the default)

Connections cost a coroutine, not a thread: a client that dribbles its body holds no worker
and is answered 408 once ``body_timeout_s`` has passed since its request started. Publishing
(blocking broker I/O) runs on a pool of ``publish_threads`` threads. uvicorn bounds the rest:
``limit_concurrency`` (connections and requests beyond it get 503), ``backlog``,
``timeout_keep_alive``. Nothing here imports uvicorn, Celery or boto3.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from handlers.webhook import MAX_BODY, WebhookApp

log = logging.getLogger("sightline.webhook")

Scope = dict[str, Any]


class _Answer(Exception):
    def __init__(self, status: int, error: str) -> None:
        self.status, self.error = status, error


class WebhookASGI:
    """ASGI callable around a ``WebhookApp``; see the module docstring for the bounds."""

    def __init__(
        self,
        app: WebhookApp,
        *,
        body_timeout_s: float = 10.0,
        publish_threads: int = 8,
        max_body: int = MAX_BODY,
        on_shutdown: Any = None,
    ) -> None:
        if not 0 < body_timeout_s <= 3600 or publish_threads < 1:  # NaN fails too
            raise ValueError(
                "the body timeout must be above 0 and at most 3600 s, and publish threads at "
                f"least 1 (got {body_timeout_s:g} s and {publish_threads})"
            )
        self.app = app
        self.body_timeout_s = body_timeout_s
        self.max_body = max_body
        self._pool = ThreadPoolExecutor(publish_threads, thread_name_prefix="webhook-publish")
        self._on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            method = scope["method"]
            try:
                status, answer = await self._route(method, scope, receive)
            except _Answer as a:
                status, answer = a.status, {"error": a.error}
            await _reply(send, status, answer, head=method == "HEAD", close=status == 408)

    async def _route(
        self, method: str, scope: Scope, receive: Any
    ) -> tuple[int, dict[str, Any] | None]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if method == "HEAD":  # MinIO checks that the target is up with a HEAD
            return (200 if self.app.authorized(headers.get("authorization")) else 401), None
        if method == "GET":
            return 200, ({"status": "ok"} if scope["path"] == "/healthz" else None)
        if method != "POST":
            return 405, {"error": f"method {method} not allowed"}
        if not self.app.authorized(headers.get("authorization")):
            return 401, {"error": "missing or wrong token"}
        try:
            length = int(headers.get("content-length") or "")
        except ValueError:
            return 411, {"error": "Content-Length required"}
        if length < 0:
            return 400, {"error": "bad Content-Length"}
        if length > self.max_body:  # refused before reading a byte of it
            return 413, {"error": f"body over {self.max_body} bytes"}
        body = await self._read_body(receive, length)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.app.notify, body)

    async def _read_body(self, receive: Any, length: int) -> bytes:
        """The whole body within ``body_timeout_s``; 408 when it takes longer."""
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Answer(400, "client went away")
                    body += message.get("body", b"")
                    if len(body) > length:
                        raise _Answer(400, "body longer than Content-Length")
                    if not message.get("more_body"):
                        return bytes(body)
        except TimeoutError:
            raise _Answer(408, f"body not received within {self.body_timeout_s:g} s") from None

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._pool.shutdown(wait=True)  # in-flight publishes finish first
                if self._on_shutdown is not None:
                    self._on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _reply(
    send: Any, status: int, answer: dict[str, Any] | None, *, head: bool, close: bool
) -> None:
    data = json.dumps(answer).encode() if answer is not None else b""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else data})


def app_from_env() -> WebhookASGI:
    """The app as uvicorn's factory builds it in each worker process, from the environment:
    the handler's settings plus SIGHTLINE_WEBHOOK_BODY_TIMEOUT_S (default 10) and
    SIGHTLINE_WEBHOOK_PUBLISH_THREADS (default 8). Raises ValueError on bad settings."""
    from handlers.config import HandlerConfig, apply_file
    from handlers.publish import CeleryPublisher

    apply_file()  # sightline.toml fills what the environment leaves unset, as for stdlib
    config = HandlerConfig.from_env()
    if not config.broker_url:
        raise ValueError("CELERY_BROKER_URL is not set")
    try:
        timeout_s = float(os.environ.get("SIGHTLINE_WEBHOOK_BODY_TIMEOUT_S") or 10)
        threads = int(os.environ.get("SIGHTLINE_WEBHOOK_PUBLISH_THREADS") or 8)
    except ValueError:
        raise ValueError(
            "SIGHTLINE_WEBHOOK_BODY_TIMEOUT_S and SIGHTLINE_WEBHOOK_PUBLISH_THREADS must be numbers"
        ) from None
    publisher = CeleryPublisher(config.broker_url, config.broker_options)
    app = WebhookApp.from_config(config, publisher)
    return WebhookASGI(
        app, body_timeout_s=timeout_s, publish_threads=threads, on_shutdown=publisher.close
    )
