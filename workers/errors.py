"""The worker's error kinds: what is retried, what is final."""


def first_line(exc: BaseException) -> str:
    """An error's first line of text (a database error's detail and hint follow on others),
    or its type's name when it has none."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class TransientError(RuntimeError):
    """A network, broker, S3 or database fault: retried with backoff, then parked."""


class RequestRefused(ValueError):
    """An S3 request the client refuses before sending it (a bucket name S3 cannot have, a
    key too long): no retry can make it valid, so its task fails at once."""


def request_refusal(exc: BaseException) -> str:
    """botocore's parameter validation message in one line (its first line only says
    "Parameter validation failed:"; the reason follows), at most 300 characters."""
    return " ".join(str(exc).split())[:300]


class ObjectGone(RuntimeError):
    """The object was deleted before its task ran: the photo is marked gone, not retried."""


# How a photo's error begins when its network output could not be stored (NaN, infinity or
# beyond half precision: workers.pipeline.unstorable_output); the metrics count it apart
# from unusable images.
MODEL_FAULT_PREFIX = "the network gave "
