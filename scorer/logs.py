"""structlog set-up: JSON lines when stdout is not a terminal (Render, CI), readable on a terminal; and the one
redactor every log line, error message, traceback and run artifact goes through.

Redaction works two ways, because either alone leaks:

- **by value**: the edge (the CLI) registers every secret the settings know (`add_secrets`): the database
  password, the service-role key, MLflow's password and token, any ``*_KEY`` / ``*_TOKEN`` / ``*_PASSWORD`` /
  ``*_SECRET`` variable. Any occurrence is replaced, whatever quoted it (an exception's ``repr``, a library's
  message, a dict of connection arguments):

  >>> add_secrets(["p@ss-91c2"])
  >>> redact_text("connect(password='p@ss-91c2') failed")
  "connect(password='***') failed"

- **by shape**: what looks like a secret although nobody registered it: a URL's user-info (up to the *last*
  ``@`` before the host, so a password with an unencoded ``@`` does not leave its tail), ``password=…`` /
  ``'apikey': '…'`` pairs, ``Bearer …`` headers, Supabase secret keys and JWTs:

  >>> redact_text("postgresql://job:se@cret@db:5432/x and 'apikey': 'sb_secret_abc'")
  "postgresql://***@db:5432/x and 'apikey': '***'"

Structured tracebacks carry no frame locals (a frame's locals held the connection arguments, password
included, 14 times in one line), and what is left is redacted like the rest.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import stamina.instrumentation
import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict

__all__ = [
    "add_secrets",
    "configure_logging",
    "forget_secrets",
    "redact",
    "redact_text",
    "redact_url",
    "secrets_in",
]

#: Shorter values are not redacted by value: "abc" would blank every word that contains it. Shapes still apply.
MIN_SECRET_LEN = 4

#: Environment variables whose value is a secret by their name (Render's dashboard, MLflow's own settings).
_SECRET_NAME = re.compile(r"(?:_KEY|_TOKEN|_PASSWORD|_SECRET|_PASS|_PWD)$", re.IGNORECASE)
#: Variables that hold a URL whose user-info is a secret.
_URL_NAMES = ("DATABASE_URL", "LEAD_SCORER_DATABASE_URL", "MLFLOW_TRACKING_URI", "SUPABASE_URL")

#: The user-info of any URL (``//user:password@``), greedy to the last ``@`` before the host: an unencoded
#: ``@`` in a password must not leave the password's tail behind (``//***@cret@host``).
_USERINFO = re.compile(r"(?<=//)[^/\s'\"<>]+@")
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # key=value and 'key': 'value' pairs, as libpq conninfo, repr() of dicts and query strings spell them.
    (
        re.compile(
            r"(?i)(\b(?:password|passwd|pwd|apikey|api_key|service_role_key|secret|token|access_token)"
            r"['\"]?\s*[:=]\s*['\"]?)([^'\"\s,;&)}]+)"
        ),
        r"\1***",
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),
    (re.compile(r"\bsb_secret_[A-Za-z0-9_-]+"), "sb_secret_***"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"), "***.jwt.***"),
)

_secrets: set[str] = set()
_by_value: re.Pattern[str] | None = None


def add_secrets(values: Iterable[str | None]) -> None:
    """Redact each of ``values`` (and its URL-encoded and -decoded spellings) wherever it appears from now on.

    Called by the edge once the settings are read; values shorter than `MIN_SECRET_LEN` are left to the shapes.
    """
    global _by_value
    for value in values:
        if not value:
            continue
        # Its parts between "@"s too: a parser that ends the password at its first "@" quotes the rest as a
        # host name ("could not translate host name 'cret@db'").
        for spelling in {value, quote(value, safe=""), unquote(value), *value.split("@")}:
            if len(spelling) >= MIN_SECRET_LEN:
                _secrets.add(spelling)
    # Longest first: a secret that contains another is replaced whole.
    ordered = sorted(_secrets, key=len, reverse=True)
    _by_value = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None


def forget_secrets() -> None:
    """Forget every registered value (tests that register their own)."""
    global _by_value
    _secrets.clear()
    _by_value = None


def secrets_in(*, settings: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """The secret values in ``settings`` (field → value; `SecretStr` unwrapped) and ``environ``: every value
    of a variable named like a secret, and the password of every URL either holds.

    >>> secrets_in(settings={}, environ={"MLFLOW_TRACKING_TOKEN": "tok-123", "DATABASE_URL": "postgresql://u:p@ss1@h/d"})
    ['tok-123', 'p@ss1']
    """
    found: list[str] = []
    for name, raw in [*settings.items(), *environ.items()]:
        value = raw.get_secret_value() if hasattr(raw, "get_secret_value") else raw
        if not isinstance(value, str) or not value:
            continue
        if _SECRET_NAME.search(name):
            found.append(value)
        elif name.upper() in _URL_NAMES or name.lower() in {n.lower() for n in _URL_NAMES} or "://" in value:
            password = _url_password(value)
            if password:
                found.append(password)
    return list(dict.fromkeys(found))


def _url_password(url: str) -> str | None:
    """The password of ``url``, up to the last ``@`` (urllib splits the user-info there too)."""
    try:
        return urlsplit(url.strip()).password
    except ValueError:
        return None


def redact_text(text: str) -> str:
    """``text`` with every registered secret and every secret-shaped part replaced by ``***``."""
    if _by_value is not None:
        text = _by_value.sub("***", text)
    text = _USERINFO.sub("***@", text)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def redact_url(url: str) -> str:
    """A URL safe to show: the user name kept, the password (to the last ``@``) replaced.

    >>> redact_url("postgresql://job:p@ss@db.example:5432/postgres")
    'postgresql://job:***@db.example:5432/postgres'
    """
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^:/@]*):(.*)@([^@]*)$", url.strip(), flags=re.DOTALL)
    if match is not None:
        scheme, user, _password, rest = match.groups()
        shown = f"{scheme}{user}:***@{rest}"
        return _by_value.sub("***", shown) if _by_value is not None else shown
    return redact_text(url)


def redact(value: Any) -> Any:
    """`redact_text` applied to every string inside ``value`` (dicts, lists and tuples, recursively)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact(k): redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


def _redact_event(_logger: Any, _name: str, event: EventDict) -> EventDict:
    """Every value of every event, ours or a library's (stamina's retry lines carry the exception text)."""
    return {k: redact(v) for k, v in event.items()}


def _redact_line(_logger: Any, _name: str, line: Any) -> Any:
    """The rendered line once more: whatever a renderer added (a key, a repr) is redacted too."""
    return redact_text(line) if isinstance(line, str) else line


class _RedactRecords(logging.Filter):
    """The same for the standard logging records MLflow and urllib3 write to stderr, tracebacks included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return True


#: What a ``stamina.retry_context`` block retries: stamina names every such block "<context block>".
_retrying_what: ContextVar[str | None] = ContextVar("retrying_what", default=None)


@contextlib.contextmanager
def retrying(what: str) -> Iterator[None]:
    """Name the retried block for its ``retry_scheduled`` lines (``with retrying("SqlStore.write_scores"):``)."""
    token = _retrying_what.set(what)
    try:
        yield
    finally:
        _retrying_what.reset(token)


def _on_retry(details: stamina.instrumentation.RetryDetails) -> None:
    """stamina's retry line without the call's arguments: a batch's read lists ~1,000 ids (16 KB a line)."""
    first = str(details.caused_by).splitlines()[0] if str(details.caused_by) else ""
    name = details.name if details.name != "<context block>" else (_retrying_what.get() or details.name)
    structlog.get_logger("lead_scorer.retry").warning(
        "retry_scheduled",
        callable=".".join(name.replace(".<locals>.<lambda>", "").split(".")[-2:]),
        retry_num=details.retry_num,
        wait_for=round(details.wait_for, 2),
        waited_so_far=round(details.waited_so_far, 2),
        caused_by=f"{type(details.caused_by).__name__}: {first}"[:300],
    )


#: The level names `configure_logging` takes (LEAD_SCORER_LOG_LEVEL).
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def configure_logging(*, json: bool | None = None, level: str = "INFO") -> None:
    """Configure once, at the edge (``configure_logging(json=True, level="WARNING")``). ``json=None`` decides by
    whether stdout is a terminal; ``level`` is one of `LEVELS`."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    use_json = not sys.stdout.isatty() if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(
            colors=sys.stdout.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    # A failure's traceback as structured data without frame locals (JSON), or as plain text (terminal),
    # before the redaction: a renderer that formats it later would show it unredacted.
    tracebacks: structlog.types.Processor = (
        structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        if use_json
        else structlog.processors.format_exc_info
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            tracebacks,
            _redact_event,
            renderer,
            _redact_line,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # No file argument: each logger writes to the sys.stdout of the moment (test runners swap it).
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    stamina.instrumentation.set_on_retry_hooks([_on_retry])
    # MLflow and alembic are chatty on the root logger; keep their warnings, drop their info.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _RedactRecords) for f in handler.filters):
            handler.addFilter(_RedactRecords())
    for noisy in ("mlflow", "alembic", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
