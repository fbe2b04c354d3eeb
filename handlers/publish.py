"""Send tasks by name over one broker connection per batch. Celery loads on first use.

JSON only; publisher confirms on AMQP (each publish waits for the broker's ack); on Redis the
batch goes out as one pipeline. A failure fails every task not known to be delivered, so
its source retries it: nothing vanishes, at the price of an occasional duplicate.

``bulk=True`` (library jobs: a backfill publishes millions of tasks) takes a leaner road on
Redis: each message is built by Celery (``create_task_message``) and kombu (its serializer,
``prepare_message``, ``basic_publish`` down to the Redis transport's ``_put``) exactly as
``send_task`` builds it, and the batch's pushes go out as a few multi-value LPUSHes in one
pipeline. Only ``send_task``'s per-call bookkeeping (routing, result objects, signals) is
skipped, so the road is taken only where that bookkeeping has nothing to do (no routes,
publish signals, sent events or result backend); elsewhere, and on AMQP or SQS, every task
goes through ``send_task``.
"""

from __future__ import annotations

import logging
import os
from base64 import b64encode
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

from handlers.contract import QUEUE_OF, ObjectTask

try:  # how json (and so kombu, ensure_ascii as by default) encodes a str; C when there is C
    from _json import encode_basestring_ascii as _json_str
except ImportError:  # pragma: no cover - CPython always has _json
    from json.encoder import py_encode_basestring_ascii as _json_str

log = logging.getLogger("sightline.handler")


def default_transport_options(broker_url: str, timeout_s: float) -> dict[str, Any]:
    """Confirms where the broker offers them, and timeouts so a dead broker fails fast."""
    # One quick reconnect for a blip; kombu's default waits 2 s first. The source retries
    # the records anyway, so holding the batch longer buys nothing.
    options: dict[str, Any] = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
    scheme = broker_url.split("://", 1)[0].lower()
    if scheme.startswith("amqp") or scheme.startswith("pyamqp"):
        options.update(confirm_publish=True, read_timeout=timeout_s, write_timeout=timeout_s)
    elif scheme in {"redis", "rediss"}:
        options.update(socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    return options


class CeleryPublisher:
    """Publishes tasks with ``send_task`` (by name; the handler never imports the tasks).

    ``bulk``: on Redis, build the same messages without ``send_task``'s per-call overhead and
    push a batch in one pipeline (see the module docstring); a backfill's road.
    """

    def __init__(
        self,
        broker_url: str,
        transport_options: Mapping[str, Any] | None = None,
        *,
        queues: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
        bulk: bool = False,
    ) -> None:
        self.broker_url = broker_url
        self.transport_options = {
            **default_transport_options(broker_url, timeout_s),
            **(transport_options or {}),
        }
        self.queues = dict(queues or QUEUE_OF)
        self.timeout_s = timeout_s
        self.bulk = bulk
        self._app: Any = None
        # the bulk road's probe-checked templates, made once per queue, task name and
        # reply-to (the thread's): they depend on nothing a batch changes
        self._templates: dict[tuple[str, str, str], _Template | None] = {}

    @property
    def app(self) -> Any:
        if self._app is None:
            from celery import Celery  # deferred: the handler's cold start stays light

            app = Celery("sightline-handler", broker=self.broker_url, set_as_current=False)
            app.conf.update(
                # Celery prefers CELERY_BROKER_URL from the environment to broker=: name the
                # broker where it looks first, so the URL given here is the one used.
                broker_write_url=self.broker_url,
                broker_read_url=self.broker_url,
                task_serializer="json",
                accept_content=["json"],
                broker_transport_options=self.transport_options,
                broker_connection_timeout=self.timeout_s,
                broker_connection_retry=False,
                broker_connection_max_retries=0,
            )
            self._app = app
        return self._app

    def publish(self, tasks: list[tuple[str, ObjectTask]]) -> list[Exception | None]:
        """Per task, None once the broker has it, or the error that leaves it undelivered."""
        results: list[Exception | None] = [None] * len(tasks)
        if not tasks:
            return results
        app = self.app
        confirmed, batched = 0, False
        try:
            with app.producer_or_acquire() as producer:
                batched = bool(getattr(producer, "supports_batch_publish", False))
                # Declare each queue once per connection here, not on every send (kombu would
                # copy and bind the queue entity per message: a fifth of the cost on Redis).
                for qname in {self.queues[name] for name, _ in tasks}:
                    producer.maybe_declare(app.amqp.queues[qname])
                if (
                    batched
                    and self.bulk
                    and _bulk_ready(app, producer)
                    and _publish_bulk(
                        app, producer, [(self.queues[n], n, k) for n, k in tasks], self._templates
                    )
                ):
                    return results
                with producer.batch(len(tasks)) if batched else nullcontext():
                    for name, kwargs in tasks:
                        self._send(producer, name, kwargs)
                        confirmed += 0 if batched else 1
        except Exception as exc:  # broker down or lost mid-batch: the rest must be retried
            # A Redis pipeline that failed may have been partly applied; count none as sent.
            for i in range(0 if batched else confirmed, len(tasks)):
                results[i] = exc
            log.warning("publish failed after %d of %d tasks: %r", confirmed, len(tasks), exc)
            app.close()  # drop the pooled connection; the next batch connects afresh
        return results

    def _send(self, producer: Any, name: str, kwargs: ObjectTask) -> None:
        self.app.send_task(
            name,
            kwargs=dict(kwargs),
            queue=self.queues[name],
            producer=producer,
            retry=False,
            declare=[],  # declared once per batch in publish()
            # Celery would saferepr() the arguments for monitoring; naming the object is enough.
            argsrepr="()",
            kwargsrepr=_kwargsrepr(kwargs),
        )

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


def _kwargsrepr(kwargs: ObjectTask) -> str:
    return f"{{'bucket': {kwargs['bucket']!r}, 'key': {kwargs['key']!r}}}"


def _bulk_ready(app: Any, producer: Any) -> bool:
    """Whether ``send_task`` would do nothing per message beyond building and pushing it:
    Redis with kombu's publish batches, no task routes (the queue is routed once per name),
    no publish signal receivers, no sent events, no result backend, not inside a task."""
    from celery import signals

    conf = app.conf
    channel = producer.channel
    return (
        producer.connection.transport.driver_type == "redis"
        and hasattr(channel, "create_publish_batch")
        and not conf.task_routes
        and not conf.task_send_sent_event
        and not conf.task_compression
        and not conf.result_backend
        and not signals.before_task_publish.receivers
        and not signals.after_task_publish.receivers
        and not signals.task_sent.receivers
        and app.current_worker_task is None
    )


class _Pushes:
    """Collects the Redis commands kombu's ``_put`` issues for each message (the interface
    of kombu's own ``PublishBatch.add``), merging consecutive LPUSHes onto one key."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, list[Any]]] = []

    def add(self, name: str, *args: Any) -> None:
        if name == "lpush" and self.commands:
            last, last_args = self.commands[-1]
            if last == "lpush" and last_args[0] == args[0]:
                last_args.extend(args[1:])
                return
        elif self.commands and self.commands[-1] == (name, list(args)):
            return  # the same PEXPIRE again (queues with x-expires): once is enough
        self.commands.append((name, list(args)))

    def send(self, client: Any) -> None:
        """Everything collected, in one non-transactional pipeline."""
        with client.pipeline(transaction=False) as pipe:
            for name, args in self.commands:
                if name == "lpush":
                    key, values = args[0], args[1:]
                    for start in range(0, len(values), _PUSH_CHUNK):
                        pipe.lpush(key, *values[start : start + _PUSH_CHUNK])
                else:
                    getattr(pipe, name)(*args)
            pipe.execute()


# LPUSH values per command: big enough to amortise the round trip, small for the server.
_PUSH_CHUNK = 1000
# Two probe tasks per queue and task name: their key, kwargsrepr and body differ in length
# and characters (quotes, backslashes, non-ASCII), so a template that passes both holds.
_PROBES: tuple[ObjectTask, ...] = (
    ObjectTask(
        bucket="probe-a",
        key="a.jpg",
        version_id=None,
        etag=None,
        size=None,
        sequencer=None,
        event_time=None,
        owner="a",
    ),
    ObjectTask(
        bucket="probe-b",
        key='users/b/\u00e9t\u00e9 "quoted" \\ +%2B.jpg',
        version_id="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
        etag="d41d8cd98f00b204e9800998ecf8427e",
        size=12345,
        sequencer="0055AED6DCD90281E5",
        event_time="2024-05-01T10:00:00.000Z",
        owner="b",
        job_id=7,
        force=True,
    ),
)


class _Bulk:
    """Messages for one batch on one Redis channel, exactly as ``send_task`` makes them.

    Each message is built by Celery (``create_task_message``) and kombu (the serializer,
    ``prepare_message``, ``basic_publish`` down to the transport's ``_put``); ``send_task``'s
    own glue (``send_task_message``, ``Producer.publish``) is followed line by line.

    Building that way costs ~45 us of CPU a message, most of it two JSON encodings of a
    nearly constant envelope. So per (queue, task name) two probe tasks are built the full
    way, and the JSON kombu made for the first is split at its per-task values (task id,
    delivery tag, encoded body, kwargsrepr) into a template; the template is used only when
    it reproduces the second probe's JSON exactly. Every other message is then that template
    filled with its own values and ids (version-4 UUIDs as kombu writes them, drawn for the
    whole batch at once). Its body is encoded as kombu's JSON serializer and base64 body
    encoding do it, by one encoder made once instead of one per message; where that does not
    reproduce the probes, by kombu's own calls. Where a template does not hold, every message
    is built the full way.
    """

    def __init__(
        self,
        app: Any,
        producer: Any,
        templates: dict[tuple[str, str, str], _Template | None] | None = None,
    ) -> None:
        from kombu.entity import maybe_delivery_mode
        from kombu.serialization import dumps
        from kombu.utils.json import JSONEncoder
        from kombu.utils.uuid import uuid

        self.app, self.channel = app, producer.channel
        conf = app.conf  # read once: each lookup walks Celery's settings chain
        self.serializer = conf.task_serializer
        self.default_mode = conf.task_default_delivery_mode
        self.reply_to = app.thread_oid
        self._mode, self._dumps, self._uuid = maybe_delivery_mode, dumps, uuid
        # what kombu.utils.json.dumps builds on every call (json.dumps with its encoder
        # class and the default options), built once
        self._json = JSONEncoder().encode
        self.base64_json = (
            self.serializer == "json" and (self.channel.body_encoding or "").lower() == "base64"
        )
        self.routes: dict[tuple[str, str], Any] = {}
        self.templates = {} if templates is None else templates

    def route(self, qname: str, name: str) -> Any:
        """The queue ``send_task`` would route to; None where this road does not go."""
        key = (qname, name)
        if key not in self.routes:
            route = self.app.amqp.router.route({"queue": qname}, name, None, None, None)
            ok = set(route) == {"queue"} and route["queue"].exchange.type == "direct"
            self.routes[key] = route["queue"] if ok else None
        return self.routes[key]

    def build(
        self, queue: Any, name: str, kwargs: ObjectTask, pushes: Any
    ) -> tuple[dict[str, Any], Any]:
        """One message the full way, handed to ``pushes``; returns kombu's message dict
        (as pushed) and Celery's body before serialization."""
        kwargsrepr = _kwargsrepr(kwargs)
        # celery.app.base.Celery.send_task: the message ...
        headers, properties, body, _ = self.app.amqp.create_task_message(
            self._uuid(),
            name,
            None,
            kwargs,
            reply_to=self.reply_to,
            ignore_result=False,
            argsrepr="()",
            kwargsrepr=kwargsrepr,
            queue=queue,
        )
        # ... celery.app.amqp.AMQP.send_task_message: options left over become properties;
        # a direct exchange is published to the default exchange, the queue as routing key
        properties["argsrepr"] = "()"
        properties["kwargsrepr"] = kwargsrepr
        # ... kombu.messaging.Producer.publish and _publish
        properties["delivery_mode"] = self._mode(queue.exchange.delivery_mode or self.default_mode)
        content_type, content_encoding, data = self._dumps(body, serializer=self.serializer)
        message = self.channel.prepare_message(
            data, 0, content_type, content_encoding, headers, properties
        )
        # ... and the transport's own: encoded body, delivery tag, the queue's list (by
        # priority) and its value, handed to ``pushes`` as to kombu's PublishBatch.
        self.channel.basic_publish(
            message,
            exchange="",
            routing_key=queue.name,
            mandatory=False,
            immediate=False,
            timeout=None,
            confirm_timeout=None,
            _publish_batch=pushes,
        )
        return message, body

    def template(self, queue: Any, name: str) -> _Template | None:
        """The template for (queue, task name), or None when it does not hold."""
        probes = []
        for kwargs in _PROBES:
            pushes = _Pushes()
            message, body = self.build(queue, name, kwargs, pushes)
            if len(pushes.commands) != 1 or pushes.commands[0][0] != "lpush":
                return None  # e.g. queues with x-expires: more than one command a message
            key, value = pushes.commands[0][1]
            probes.append((kwargs, message, body, key, value))
        (kwargs, message, body, key, value), second = probes
        if not (isinstance(body, tuple) and len(body) == 3 and body[1] is kwargs):
            return None
        holes = {
            "id": message["headers"]["id"],
            "tag": message["properties"]["delivery_tag"],
            "body": message["body"],
            "repr": _kwargsrepr(kwargs),
        }
        template = _Template.split(key, value, holes, body[0], body[2])
        if template is None:
            return None
        kwargs2, message2, _, key2, value2 = second
        ids = (message2["headers"]["id"], message2["properties"]["delivery_tag"])
        # the lean body encoding where it reproduces kombu's, else kombu's own calls
        for fast in (True, False) if self.base64_json else (False,):
            template.fast = fast
            if (key2, value2) == (template.key, template.fill(self, kwargs2, *ids)):
                return template
        return None

    def publish(self, client: Any, tasks: list[tuple[str, str, ObjectTask]]) -> bool:
        """Build and push the batch; False, with nothing sent, when a queue is routed in a
        way this road does not take. Raises what the broker raised."""
        queues = {}
        for qname, name, _ in tasks:
            if (qname, name) not in queues:
                queue = self.route(qname, name)
                if queue is None:
                    return False
                queues[(qname, name)] = queue
        templates = {}
        for (qname, name), queue in queues.items():
            key = (qname, name, self.reply_to)
            if key not in self.templates:
                self.templates[key] = self.template(queue, name)
            templates[(qname, name)] = self.templates[key]
        pushes = _Pushes()
        ids = _uuid4s(2 * len(tasks))  # a task id and a delivery tag each
        for i, (qname, name, kwargs) in enumerate(tasks):
            template = templates[(qname, name)]
            if template is None:
                self.build(queues[(qname, name)], name, kwargs, pushes)
            else:
                filled = template.fill(self, kwargs, ids[2 * i], ids[2 * i + 1])
                pushes.add("lpush", template.key, filled)
        pushes.send(client)
        return True


class _Template:
    """kombu's JSON for one message, split at its per-task values."""

    def __init__(
        self, key: str, pieces: list[str], slots: list[str], args: Any, embed: Any
    ) -> None:
        self.key, self.args, self.embed = key, args, embed
        self.fast = False  # the body by _Bulk's own encoder (see _Bulk.template)
        literal = [p.replace("{", "{{").replace("}", "}}") for p in pieces]
        self.format = (
            literal[0] + "".join(f"{{{slot}}}{p}" for slot, p in zip(slots, literal[1:]))
        ).format

    @classmethod
    def split(
        cls, key: str, value: str, holes: dict[str, str], args: Any, embed: Any
    ) -> _Template | None:
        import re

        encoded = {_json_str(v): k for k, v in holes.items()}
        if len(encoded) != len(holes):
            return None
        parts = re.split("(" + "|".join(map(re.escape, encoded)) + ")", value)
        pieces, slots = parts[0::2], [encoded[p] for p in parts[1::2]]
        if set(slots) != set(holes):
            return None
        return cls(key, pieces, slots, args, embed)

    def fill(self, bulk: _Bulk, kwargs: ObjectTask, task_id: str, tag: str) -> str:
        """The message for ``kwargs`` with these ids (UUID strings): the body serialized and
        encoded as kombu does, each value JSON-encoded as kombu's encoder encodes a string
        (the ids and the base64 body hold no character JSON escapes)."""
        payload = (self.args, kwargs, self.embed)
        if self.fast:
            body = b64encode(bulk._json(payload).encode()).decode()
        else:
            _, _, data = bulk._dumps(payload, serializer=bulk.serializer)
            body, _ = bulk.channel.encode_body(data, bulk.channel.body_encoding)
        return self.format(
            id=f'"{task_id}"', tag=f'"{tag}"', body=f'"{body}"', repr=_json_str(_kwargsrepr(kwargs))
        )


def _uuid4s(n: int) -> list[str]:
    """``n`` random version-4 UUIDs, written as kombu's ``uuid()`` writes them (RFC 9562
    form: 8-4-4-4-12 lowercase hex), from one ``os.urandom`` call instead of one each."""
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = bytes(b & 0x0F | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes(b & 0x3F | 0x80 for b in raw[8::16])  # the RFC variant (10xx)
    h = raw.hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-"
        f"{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


def _publish_bulk(
    app: Any,
    producer: Any,
    tasks: list[tuple[str, str, ObjectTask]],
    templates: dict[tuple[str, str, str], _Template | None],
) -> bool:
    """The batch by the bulk road (see ``_Bulk``; ``templates`` kept between batches);
    False, with nothing sent, where it does not go. Raises what the broker raised; then
    none of the batch counts as sent."""
    bulk = _Bulk(app, producer, templates)
    with producer.channel.conn_or_acquire() as client:
        return bulk.publish(client, tasks)
