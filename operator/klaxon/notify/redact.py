"""Secret values never reach logs, Events or status: every outgoing text is scrubbed.

Secrets are registered as they are resolved; ``scrub`` replaces them (and their URL-encoded
forms) with ``***``. ``RedactingFilter`` applies the same to every record of the notify logger,
including exception text, because library errors sometimes quote URLs.
"""

from __future__ import annotations

import logging
import threading
import traceback
from urllib.parse import quote, quote_plus

LOG = logging.getLogger("klaxon.notify")
MASK = "***"
_MIN_LEN = 4  # shorter values would mask ordinary words


class Redactor:
    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if len(value) < _MIN_LEN:
            return
        with self._lock:
            self._values.update({value, quote(value, safe=""), quote_plus(value), quote(value)})

    def scrub(self, text: str) -> str:
        if not text:
            return text
        for v in sorted(self._values, key=len, reverse=True):
            if v in text:
                text = text.replace(v, MASK)
        return text


class RedactingFilter(logging.Filter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info))
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = self.redactor.scrub(message), None
        return True


def install(redactor: Redactor, logger: logging.Logger = LOG) -> RedactingFilter:
    """Attach a filter for ``redactor`` to the notify logger (idempotent per redactor)."""
    for f in logger.filters:
        if isinstance(f, RedactingFilter) and f.redactor is redactor:
            return f
    flt = RedactingFilter(redactor)
    logger.addFilter(flt)
    return flt
