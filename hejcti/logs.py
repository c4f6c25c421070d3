"""structlog set-up: one event per line, keys not prose, JSON or console; the standard library's loggers
(aiohttp, asyncpg) go through the same renderer. Phone numbers are masked and tokens dropped here, at the
last step, so that a careless ``log.info(..., number=...)`` cannot leak one."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from hejcti.phones import ascii_digits, mask

#: keys whose values are phone numbers: always masked to the last three digits
NUMBER_KEYS = frozenset({"number", "from_", "from", "to", "caller", "callee", "diversion", "answering_number",
                         "phone", "e164"})
#: keys that must never reach a log line
SECRET_KEYS = frozenset({"token", "access_token", "webhook_token", "admin_token", "secret", "secret_key",
                         "password", "authorization", "name", "contact_name", "email"})
_LONG_DIGITS = re.compile(r"(?<![\w.:])\+?[0-9][0-9\s\-()/]{6,}[0-9](?![\w.:])")


def _scrub_text(text: str) -> str:
    """Mask every run that looks like a phone number, in any script's digits: the runs are found in
    ``ascii_digits(text)`` (same length, every digit ASCII) and masked where they stand in ``text``."""
    shadow = ascii_digits(text)
    out: list[str] = []
    end = 0
    for m in _LONG_DIGITS.finditer(shadow):
        out += [text[end:m.start()], mask(m.group(0))]
        end = m.end()
    return "".join(out) + text[end:] if out else text


def scrub(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        value = event[key]
        if key in SECRET_KEYS:
            event[key] = "[redacted]"
        elif key in NUMBER_KEYS and value is not None:
            event[key] = mask(value)
        elif isinstance(value, str) and key not in ("event", "call_id", "timestamp", "level", "logger"):
            event[key] = _scrub_text(value)
    return event


def configure(renderer: str = "json", level: str = "info", stream: Any = None) -> None:
    stream = stream or sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        scrub,
    ]
    final = (structlog.dev.ConsoleRenderer(colors=stream.isatty()) if renderer == "console"
             else structlog.processors.JSONRenderer())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=[
        structlog.stdlib.ProcessorFormatter.remove_processors_meta, final]))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_hejcti", False):
            root.removeHandler(h)
    handler._hejcti = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log is one line per request: too much at 200 calls/s; our own events say more.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("pgserver").setLevel(logging.WARNING)


def get(name: str = "hejcti") -> Any:
    return structlog.get_logger(name)
