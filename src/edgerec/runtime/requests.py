"""One request normaliser: what callers pass (ids, behaviours, timestamps, now) -> the
arrays every graph of a bundle reads, or one ``ValueError`` naming the argument.

The rules (also in ``Recommender.recommend``'s docstring):

- ids are the bundle's original ids. For an ``int`` catalog, ints, numpy integers and
  decimal strings ("50") are accepted; for a ``str`` catalog, strings, and ints are
  looked up by their decimal form. Anything else (floats, None, bools, bytes) is an
  error. Ids the catalog does not know are left out and reported (``strict=True``:
  ``UnknownItemError``).
- behaviours are vocabulary entries of the bundle (``behaviour_vocab``): strings, or
  values whose string form is one (rating ``4`` or ``4.0`` -> ``"4"``). Values outside
  the vocabulary are read as its first entry ("none": no behaviour known) and
  reported; NaN, bools and non-scalars are errors. Without behaviours every event gets
  the bundle's ``default_behaviour``.
- timestamps are seconds (int or float, finite, |t| < 2**62; floats floored). Without
  them every gap is a zero gap and the request time is unknown. ``now`` likewise.

A batch is checked as one flat list of all its events, so its cost per history is a
few list operations, not a pass of numpy calls per history.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Set
from typing import NamedTuple

import numpy as np

from edgerec.errors import UnknownItemError
from edgerec.runtime.catalog import Catalog

MAX_HISTORY = 100_000  # events per history: beyond this a caller has a bug, not a user
MAX_BATCH = 100_000  # histories per recommend_batch call
MAX_IDS = 1_000_000  # ids per candidates/exclude/add/remove argument
MAX_BATCH_EVENTS = 10_000_000  # events of all histories of one recommend_batch call
MAX_RESULTS = 10_000_000  # recommendations one call may return (histories x items)
MAX_CATALOG_ROWS = 2**31 - 1  # rows the catalog may grow to with add_items
UNKNOWN_NOW = int(np.iinfo(np.int64).min)  # the graphs' ``now`` for an unknown time
_TS_LIMIT = 2**62
_MAX_ID_DIGITS = 19  # decimal ids longer than int64 cannot be in the catalog
# numpy registers timedelta64 as an Integral, but int() of one with units fails
_NOT_NUMBERS = (bool, np.bool_, np.timedelta64, np.datetime64)


def check_k(k: object, name: str = "k") -> int:
    if type(k) is int and k > 0:
        return k
    if isinstance(k, _NOT_NUMBERS) or not isinstance(k, numbers.Integral) or int(k) <= 0:
        raise ValueError(f"{name} must be a positive int, got {type(k).__name__} {k!r}")
    return int(k)


def check_flag(value: object, name: str) -> bool:
    """A yes/no argument: a bool (or numpy bool); a string such as "no" is not silently true."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def as_list(value: object, name: str, limit: int) -> list:
    """A finite, ordered sequence as a list; strings, mappings and sets are refused."""
    if type(value) is list:  # read, never written: no copy
        out = value
    elif type(value) is tuple:
        out = list(value)
    elif isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got an array of shape {value.shape}")
        out = value.tolist()
    elif value is None or isinstance(value, str | bytes | bytearray | Mapping | Set):
        raise ValueError(f"{name} must be an ordered sequence, got {type(value).__name__}")
    elif not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a sequence, got {type(value).__name__}")
    else:
        try:
            out = list(itertools.islice(value, limit + 1))
        except Exception as e:  # a generator that raises while we read it
            raise ValueError(f"{name}: could not read it ({type(e).__name__}: {e})") from None
    if len(out) > limit:
        raise ValueError(f"{name} has more than {limit} entries")
    return out


def id_key(x: object, id_type: str, where: str) -> object:
    """The catalog key for one id, or ValueError for a value that is not an id."""
    if isinstance(x, _NOT_NUMBERS) or not isinstance(x, str | numbers.Integral):
        raise ValueError(f"{where}: item ids must be int or str, got {type(x).__name__}")
    if id_type == "str":
        return x if isinstance(x, str) else str(int(x))
    if not isinstance(x, str):
        return int(x)
    s = x.strip()
    digits = s[1:] if s[:1] in "+-" else s
    if digits.isdecimal() and digits.isascii() and len(digits) <= _MAX_ID_DIGITS:
        return int(s)
    return x  # a string that cannot be an int id: unknown, not an error


def row_list(values: list, catalog: Catalog, where: Callable[[int], str]) -> list[int]:
    """Rows of a list of ids (-1 where unknown); ``where(i)`` names value i in errors."""
    get = catalog.index.get if catalog.index.delta else catalog.index.base_get
    if catalog.id_type == "int" and set(map(type, values)) <= {int}:
        return list(map(get, values, itertools.repeat(-1, len(values))))  # no per-id checks
    return [get(id_key(x, catalog.id_type, where(i)), -1) for i, x in enumerate(values)]


def lookup(values: list, catalog: Catalog, where: Callable[[int], str]) -> np.ndarray:
    """``row_list`` as an array."""
    return np.array(row_list(values, catalog, where), np.int64).reshape(-1)


def known_rows(ids: list, catalog: Catalog, name: str) -> np.ndarray:
    """Rows of ids that must all be known: ``UnknownItemError`` lists the others."""
    rows = lookup(ids, catalog, lambda i: f"{name}[{i}]")
    if (rows < 0).any():
        raise UnknownItemError([ids[i] for i in np.flatnonzero(rows < 0)])
    return rows


def id_rows(value: object, catalog: Catalog, name: str) -> np.ndarray:
    """Unique rows of the known ids of a candidates/exclude argument (unknown skipped)."""
    rows = lookup(as_list(value, name, MAX_IDS), catalog, lambda i: f"{name}[{i}]")
    return np.unique(rows[rows > 0])


class BehaviourMap:
    """Vocabulary entries (or values whose string form is one) -> behaviour codes."""

    def __init__(self, vocab: tuple[str, ...], default: str) -> None:
        self.by_name = {v: i for i, v in enumerate(vocab)}
        self.default = self.by_name[default]

    def code(self, x: object, where: str) -> int | None:
        """The code of ``x``, or None for a value outside the vocabulary."""
        if isinstance(x, str):
            return self.by_name.get(x, self.by_name.get(x.strip()))
        if isinstance(x, _NOT_NUMBERS) or not isinstance(x, numbers.Real):
            raise ValueError(
                f"{where}: behaviours must be vocabulary strings or numbers, got {type(x).__name__}"
            )
        if isinstance(x, numbers.Integral):
            return self.by_name.get(str(int(x)))
        f = float(x)
        if not math.isfinite(f):
            raise ValueError(f"{where}: behaviour is {f}, not a vocabulary value")
        return self.by_name.get(str(int(f)) if f.is_integer() else repr(f))


def _seconds(x: object, where: str) -> int:
    """Whole seconds of an int (checked as an int) or a finite float (floored)."""
    if isinstance(x, _NOT_NUMBERS) or not isinstance(x, numbers.Real):
        raise ValueError(f"{where}: expected seconds as int or float, got {type(x).__name__}")
    if isinstance(x, numbers.Integral):
        t = int(x)
    else:
        f = float(x)
        if not math.isfinite(f):
            raise ValueError(f"{where} is {f}: times must be finite seconds")
        t = math.floor(f)
    if not -_TS_LIMIT < t < _TS_LIMIT:
        raise ValueError(f"{where} = {x} is out of range (|t| < 2**62 seconds)")
    return t


class Batch(NamedTuple):
    """Histories as the graphs read them (docs/bundle.md): right-aligned (B, E) rows,
    behaviour codes and times with row 0 / 0 / 0 to the left of shorter histories, the
    request times, and what the caller should hear about each history."""

    rows: np.ndarray
    behaviours: np.ndarray
    times: np.ndarray
    now: np.ndarray
    known: list[int]  # known events per history (0: the popularity fallback)
    n_events: list[int]
    unknown_items: list[tuple]
    unknown_behaviours: list[tuple]
    positions: list[np.ndarray] | None  # known events' indices in each history as given


def per_history(values: object, n: int, name: str) -> list:
    if values is None:
        return [None] * n
    out = as_list(values, name, MAX_BATCH)
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} entries for {n} histories")
    return out


def _flat(values: list, lengths: list[int], prefix: Callable, what: str) -> list | None:
    """The per-history lists of ``what`` laid end to end (None when none was given)."""
    if all(v is None for v in values):
        return None
    out = []
    for i, (v, n) in enumerate(zip(values, lengths, strict=True)):
        if v is None:
            raise ValueError(f"{prefix(i)}{what} missing (given for some histories, not all)")
        items = as_list(v, f"{prefix(i)}{what}", MAX_HISTORY)
        if len(items) != n:
            raise ValueError(
                f"{prefix(i)}{what} has {len(items)} entries but the history has {n} events"
            )
        out += items
    return out


def normalise(
    histories: list,
    behaviours: list,
    timestamps: list,
    nows: list,
    catalog: Catalog,
    behaviour_map: BehaviourMap,
    strict: bool,
    prefix: Callable[[int], str],
    positions: bool = False,
) -> Batch:
    """``Batch`` of ``histories`` (each an id sequence) with their ``behaviours``,
    ``timestamps`` and ``nows`` (one entry per history, None where not given);
    ``prefix(i)`` starts the errors about history i ("", or "histories[3]: ")."""
    lists = [as_list(h, f"{prefix(i)}history", MAX_HISTORY) for i, h in enumerate(histories)]
    lengths = list(map(len, lists))
    if sum(lengths) > MAX_BATCH_EVENTS:
        raise ValueError(
            f"histories hold more than {MAX_BATCH_EVENTS} events in total; split the batch"
        )
    flat = list(itertools.chain.from_iterable(lists))
    b = len(lists)

    def where(what: str) -> Callable[[int], str]:  # names flat event i in errors
        def name(i: int) -> str:
            h = int(np.searchsorted(np.cumsum(lengths), i, side="right"))
            return f"{prefix(h)}{what}[{i - sum(lengths[:h])}]"

        return name

    rows = row_list(flat, catalog, where("history"))
    beh_values = _flat(behaviours, lengths, prefix, "behaviours")
    odd_behaviours: list[int] = []
    if beh_values is None:
        codes = [behaviour_map.default] * len(flat)
    else:
        codes = (
            list(map(behaviour_map.by_name.get, beh_values))
            if all(type(x) is str for x in beh_values)
            else [None]
        )
        if None in codes:  # anything but vocabulary strings: value by value
            name = where("behaviours")
            codes = [behaviour_map.code(x, name(i)) for i, x in enumerate(beh_values)]
            odd_behaviours = [i for i, c in enumerate(codes) if c is None]
            codes = [c or 0 for c in codes]  # outside the vocabulary: its first entry
    times = _flat(timestamps, lengths, prefix, "timestamps")
    if times is None:
        times = [0] * len(flat)
    elif not (
        set(map(type, times)) <= {int}
        and (not times or -_TS_LIMIT < min(times) and max(times) < _TS_LIMIT)
    ):
        name = where("timestamps")
        times = [_seconds(x, name(i)) for i, x in enumerate(times)]
    now = [UNKNOWN_NOW if t is None else _seconds(t, f"{prefix(i)}now") for i, t in enumerate(nows)]
    if timestamps is None or all(t is None for t in timestamps):
        now = [UNKNOWN_NOW] * b
    unknown_items, unknown_behaviours = [()] * b, [()] * b
    if -1 not in rows and not odd_behaviours and len(set(lengths)) == 1 and not positions:
        # the usual request: every id known, histories alike: one array of everything
        # (each numpy call after a run pays again for the caches the run took)
        n = len(rows)
        arr = np.fromiter(itertools.chain(rows, codes, times, now), np.int64, 3 * n + b)
        grid = arr[: 3 * n].reshape(3, b, lengths[0])
        return Batch(*grid, arr[3 * n :], lengths, lengths, unknown_items, unknown_behaviours, None)
    now = np.array(now, np.int64)
    rows, codes, times = (np.array(x, np.int64).reshape(-1) for x in (rows, codes, times))
    known_mask = rows > 0
    known = np.array(lengths, np.int64)
    owner = np.repeat(np.arange(b), lengths)
    for i in odd_behaviours:
        unknown_behaviours[owner[i]] += (beh_values[i],)
    if not known_mask.all():
        missing = np.flatnonzero(~known_mask)
        if strict:
            raise UnknownItemError(list(dict.fromkeys(flat[i] for i in missing)))
        for i in missing.tolist():
            unknown_items[owner[i]] += (flat[i],)
        owner = owner[known_mask]
        rows, codes, times = rows[known_mask], codes[known_mask], times[known_mask]
        known = np.bincount(owner, minlength=b).astype(np.int64)
    width = max(int(known.max(initial=0)), 1)
    cols = np.arange(len(rows)) - np.repeat(np.cumsum(known) - width, known)
    arrays = tuple(np.zeros((b, width), np.int64) for _ in range(3))
    for out, values in zip(arrays, (rows, codes, times), strict=True):
        out[owner, cols] = values
    at = None
    if positions:
        given = (
            np.flatnonzero(known_mask)
            - np.repeat(np.cumsum([0, *lengths[:-1]]), lengths)[known_mask]
        )
        at = np.split(given, np.cumsum(known)[:-1])
    return Batch(*arrays, now, known.tolist(), lengths, unknown_items, unknown_behaviours, at)
