"""structlog set-up: one line per event on stderr, JSON off a terminal, console on one.

stdout belongs to the command's output (tables, JSON, YAML, the plan); every log line goes
to stderr. Library loggers (aiobotocore, aiohttp, kubernetes_asyncio) are routed through the
same renderer via the standard `logging` bridge. Event names are stable `area.past_tense`
strings (`copy.started`, `prune.held_back`); context is bound, not pasted into messages.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

#: Keys whose values are never logged, whatever a caller binds (defence in depth).
SECRET_KEYS = frozenset(
    {
        "aws_secret_access_key",
        "aws_session_token",
        "secret",
        "password",
        "token",
        "authorization",
        "presignedurl",
        "presigned_url",
    }
)

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR

#: Whether the effective settings go into start-up lines (set by `configure_logging`).
_SHOW_SETTINGS = {"on": True}


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "[redacted]"
    return event


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when `NO_COLOR` is set (https://no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> bool:
    """Route structlog and stdlib logging to `stream` (stderr) in one format.

    Returns True when the lines are JSON (for machines), False when they are for a person.
    """
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=use_color(stream))
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    # Libraries chat at INFO/DEBUG about every request; keep them to warnings and up.
    for noisy in ("aiobotocore", "botocore", "aiohttp", "kubernetes_asyncio", "urllib3"):
        logging.getLogger(noisy).setLevel(max(_LEVELS[level], logging.WARNING))
    _SHOW_SETTINGS["on"] = use_json or level == "debug"
    return use_json


def settings_field(view: dict[str, object]) -> dict[str, object]:
    """`settings=…` for a start-up log line: always in JSON logs (machines keep them), on a
    terminal only at `--log-level debug` (a person wants the command's answer, not a dump)."""
    return {"settings": view} if _SHOW_SETTINGS["on"] else {}
