"""Request bodies -> runtime arguments, or a ``RequestError`` naming the field.

The checks here are the cheap structural ones (types, lengths, bounds) that let a
request join a micro-batch safely; the runtime still applies its own rules (id
lookup, behaviour vocabulary, time ranges) and its ``ValueError`` messages name the
argument too.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any


class RequestError(Exception):
    """A client error: HTTP ``status``, a one-line ``message`` and the ``field`` at fault."""

    def __init__(
        self, message: str, field: str | None = None, status: int = 422, kind: str = "invalid"
    ) -> None:
        super().__init__(message)
        self.message = message.replace("\n", " ")
        self.field = field
        self.status = status
        self.kind = kind
        self.extra: dict[str, Any] = {}

    def body(self) -> dict:
        return {"error": self.message, "field": self.field, **self.extra}


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 4 << 20
    max_history: int = 5000  # events per history
    max_batch: int = 1000  # histories per /recommend/batch request
    max_k: int = 1000
    max_ids: int = 100_000  # ids per candidates / exclude / items request


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed in JSON")


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError too
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RequestError(f"the body is not valid JSON: {msg}", "body", 400, "bad_json") from None


def _object(body: Any, allowed: tuple[str, ...]) -> dict:
    if not isinstance(body, dict):
        raise RequestError(f"the body must be a JSON object, got {_kind(body)}", "body")
    for key in body:
        if key not in allowed:
            raise RequestError(
                f"unknown field {key!r} (fields: {', '.join(allowed)})", key, kind="unknown_field"
            )
    return body


def _kind(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, int | float):
        return "a number"
    if isinstance(x, str):
        return "a string"
    if isinstance(x, list):
        return "an array"
    return "an object"


def _is_id(x: Any) -> bool:
    return type(x) is int or type(x) is str


def _is_number(x: Any) -> bool:
    return (type(x) is int or type(x) is float) and math.isfinite(x)


def _list(value: Any, field: str, limit: int) -> list:
    if not isinstance(value, list):
        raise RequestError(f"{field} must be an array, got {_kind(value)}", field)
    if len(value) > limit:
        raise RequestError(
            f"{field} has {len(value)} entries, more than this server's limit of {limit}",
            field,
            kind="too_long",
        )
    return value


def _ids(value: Any, field: str, limit: int) -> list:
    out = _list(value, field, limit)
    if not all(map(_is_id, out)):
        i = next(i for i, x in enumerate(out) if not _is_id(x))
        raise RequestError(
            f"{field}[{i}]: item ids must be integers or strings, got {_kind(out[i])}",
            f"{field}[{i}]",
        )
    return out


def _optional_ids(body: dict, field: str, limit: int) -> tuple | None:
    value = body.get(field)
    return None if value is None else tuple(_ids(value, field, limit))


def _events(value: Any, field: str, n: int, ok, what: str, limit: int) -> list | None:
    if value is None:
        return None
    out = _list(value, field, limit)
    if len(out) != n:
        raise RequestError(f"{field} has {len(out)} entries but the history has {n} events", field)
    if not all(map(ok, out)):
        i = next(i for i, x in enumerate(out) if not ok(x))
        raise RequestError(f"{field}[{i}]: expected {what}, got {_kind(out[i])}", f"{field}[{i}]")
    return out


_TS_LIMIT = 2**62  # the runtime's bound on times (seconds)


def _is_seconds(x: Any) -> bool:
    return _is_number(x) and -_TS_LIMIT < x < _TS_LIMIT


def _behaviour(x: Any) -> bool:
    return type(x) is str or _is_number(x)


def _time(value: Any, field: str) -> int | float | None:
    if value is None or _is_seconds(value):
        return value
    what = "out of range (|t| < 2**62)" if _is_number(value) else _kind(value)
    raise RequestError(f"{field} must be seconds as a number, got {what}", field)


def _flag(body: dict, field: str, default: bool) -> bool:
    value = body.get(field, default)
    if not isinstance(value, bool):
        raise RequestError(f"{field} must be true or false, got {_kind(value)}", field)
    return value


def _k(body: dict, limits: Limits) -> int:
    k = body.get("k", 10)
    if type(k) is not int or not 1 <= k <= limits.max_k:
        raise RequestError(f"k must be an integer from 1 to {limits.max_k}, got {k!r}", "k")
    return k


@dataclass(frozen=True)
class Options:
    """What applies to a whole ``recommend_batch`` call: requests that share these
    (and give behaviours/timestamps alike) may be answered by one call."""

    k: int
    exclude_seen: bool
    strict: bool
    candidates: tuple | None
    exclude: tuple | None

    def kwargs(self) -> dict:
        """These options as ``recommend`` / ``recommend_batch`` keyword arguments."""
        return {
            "k": self.k,
            "exclude_seen": self.exclude_seen,
            "strict": self.strict,
            "candidates": self.candidates,
            "exclude": self.exclude,
        }


@dataclass(frozen=True)
class One:
    history: list
    behaviours: list | None
    timestamps: list | None
    now: int | float | None
    options: Options

    @property
    def group(self) -> tuple:
        """The micro-batching key: requests with the same key share a batch."""
        return (self.options, self.behaviours is not None, self.timestamps is not None)


ONE_FIELDS = (
    "history",
    "behaviours",
    "timestamps",
    "now",
    "k",
    "exclude",
    "candidates",
    "exclude_seen",
    "strict",
)
BATCH_FIELDS = ("histories", *ONE_FIELDS[1:])


def _options(body: dict, limits: Limits) -> Options:
    return Options(
        _k(body, limits),
        _flag(body, "exclude_seen", True),
        _flag(body, "strict", False),
        _optional_ids(body, "candidates", limits.max_ids),
        _optional_ids(body, "exclude", limits.max_ids),
    )


def parse_one(body: Any, limits: Limits) -> One:
    body = _object(body, ONE_FIELDS)
    if "history" not in body:
        raise RequestError("history is required (item ids, oldest first)", "history")
    history = _ids(body["history"], "history", limits.max_history)
    n = len(history)
    return One(
        history,
        _events(
            body.get("behaviours"), "behaviours", n, _behaviour, "a behaviour", limits.max_history
        ),
        _events(
            body.get("timestamps"),
            "timestamps",
            n,
            _is_seconds,
            "seconds (|t| < 2**62)",
            limits.max_history,
        ),
        _time(body.get("now"), "now"),
        _options(body, limits),
    )


@dataclass(frozen=True)
class Many:
    histories: list
    behaviours: list | None
    timestamps: list | None
    now: Any
    options: Options


def parse_batch(body: Any, limits: Limits) -> Many:
    body = _object(body, BATCH_FIELDS)
    if "histories" not in body:
        raise RequestError("histories is required (one array of item ids per history)", "histories")
    hs = _list(body["histories"], "histories", limits.max_batch)
    histories = [_ids(h, f"histories[{i}]", limits.max_history) for i, h in enumerate(hs)]
    per = {}
    for field, ok, what in (
        ("behaviours", _behaviour, "a behaviour"),
        ("timestamps", _is_seconds, "seconds (|t| < 2**62)"),
    ):
        value = body.get(field)
        if value is not None:
            value = _list(value, field, limits.max_batch)
            if len(value) != len(histories):
                raise RequestError(
                    f"{field} has {len(value)} entries for {len(histories)} histories", field
                )
            value = [
                _events(v, f"{field}[{i}]", len(histories[i]), ok, what, limits.max_history)
                for i, v in enumerate(value)
            ]
        per[field] = value
    now = body.get("now")
    if isinstance(now, list):
        _list(now, "now", limits.max_batch)
        if len(now) != len(histories):
            raise RequestError(f"now has {len(now)} entries for {len(histories)} histories", "now")
        now = [_time(t, f"now[{i}]") for i, t in enumerate(now)]
    else:
        now = _time(now, "now")
    return Many(histories, per["behaviours"], per["timestamps"], now, _options(body, limits))


def parse_add(body: Any, limits: Limits) -> tuple[list, list, list | None]:
    body = _object(body, ("item_ids", "texts", "titles"))
    for field in ("item_ids", "texts"):
        if field not in body:
            raise RequestError(f"{field} is required", field)
    ids = _ids(body["item_ids"], "item_ids", limits.max_ids)
    texts = _list(body["texts"], "texts", limits.max_ids)
    titles = body.get("titles")
    if titles is not None:
        titles = _list(titles, "titles", limits.max_ids)
    for field, values, nullable in (("texts", texts, False), ("titles", titles or [], True)):
        for i, t in enumerate(values):
            if not (isinstance(t, str) or (nullable and t is None)):
                raise RequestError(
                    f"{field}[{i}] must be a string, got {_kind(t)}", f"{field}[{i}]"
                )
    return ids, texts, titles


def parse_remove(body: Any, limits: Limits) -> list:
    body = _object(body, ("item_ids",))
    if "item_ids" not in body:
        raise RequestError("item_ids is required", "item_ids")
    return _ids(body["item_ids"], "item_ids", limits.max_ids)


def parse_reload(body: Any) -> tuple[str | None, bool]:
    if body is None:
        return None, True
    body = _object(body, ("path", "keep_items"))
    path = body.get("path")
    if path is not None and (not isinstance(path, str) or not path):
        raise RequestError("path must be a non-empty string (a bundle directory)", "path")
    return path, _flag(body, "keep_items", True)


_FIELD = re.compile(r"^([A-Za-z_]+(?:\[\d+\])?)")


def field_of(message: str, known: tuple[str, ...]) -> str | None:
    """The request field a runtime ``ValueError`` message names, if any: "history[3]:
    ..." -> "history[3]"; "behaviours of history[2]: ..." -> "behaviours"."""
    if message.startswith(("behaviours of", "timestamps of")):
        return message.split(" ", 1)[0]
    m = _FIELD.match(message)
    if m and m.group(1).split("[", 1)[0] in known:
        return m.group(1)
    return None
