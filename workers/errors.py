"""The worker's error kinds: what is retried, what is final."""


def first_line(exc: BaseException) -> str:
    """An error's first line of text (a database error's detail and hint follow on others),
    or its type's name when it has none."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class TransientError(RuntimeError):
    """A network, broker, S3 or database fault: retried with backoff, then parked."""


class ObjectGone(RuntimeError):
    """The object was deleted before its task ran: the photo is marked gone, not retried."""


# How a photo's error begins when its network output could not be stored (NaN, infinity or
# beyond half precision: workers.pipeline.unstorable_output); the metrics count it apart
# from unusable images.
MODEL_FAULT_PREFIX = "the network gave "
