"""The worker's error kinds: what is retried, what is final."""


class TransientError(RuntimeError):
    """A network, broker, S3 or database fault: retried with backoff, then parked."""


class ObjectGone(RuntimeError):
    """The object was deleted before its task ran: the photo is marked gone, not retried."""
