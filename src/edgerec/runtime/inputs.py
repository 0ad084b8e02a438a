"""Turning what a caller passes (ids, behaviours, timestamps) into model rows, defensively.

Apps call the runtime with whatever their data holds, so each argument is checked and a
mistake becomes a ``ValueError`` that names the argument, the position and the problem.
The rules (also in ``Recommender.recommend``'s docstring):

- ids are the bundle's original ids. For an ``int`` catalog, ints, numpy integers and
  decimal strings ("50") are accepted; for a ``str`` catalog, strings, and ints are
  looked up by their decimal form. Anything else (floats, None, bools, bytes) is an
  error. Ids the catalog does not know are skipped and reported, or raise
  ``UnknownItemError`` with ``strict=True``.
- behaviours are vocabulary entries of the bundle (``behaviour_vocab``): strings, or
  values whose string form is one (rating ``4`` or ``4.0`` -> ``"4"``). An unknown
  value maps to index 0 ("none"); NaN, bools and non-scalars are errors.
- timestamps are seconds (int or float, finite, |t| < 2**62). Without them every event
  gets the bucket of a zero gap. Out-of-order timestamps count as zero gaps.
"""

from __future__ import annotations

import itertools
import math
import numbers
import operator
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any, NamedTuple

import numpy as np

from edgerec.errors import UnknownItemError
from edgerec.features import FIRST_GAP_MARK, GAP_PAD, request_gap_buckets
from edgerec.runtime.catalog import Catalog

MAX_HISTORY = 100_000  # events per history: beyond this a caller has a bug, not a user
MAX_BATCH = 100_000  # histories per recommend_batch call
MAX_IDS = 1_000_000  # ids per candidates/exclude/add/remove argument
MAX_BATCH_EVENTS = 10_000_000  # events of all histories of one recommend_batch call
MAX_RESULTS = 10_000_000  # recommendations one call may return (histories x items)
MAX_CATALOG_ROWS = 2**31 - 1  # rows the catalog may grow to with add_items
_TS_LIMIT = 2**62
_MAX_ID_DIGITS = 19  # decimal ids longer than int64 cannot be in the catalog
_SHARED_ROW = 512  # histories up to this long share read-only default rows (no allocation)
# numpy registers timedelta64 as an Integral, but int() of one with units fails: such
# values are rejected as the wrong type, like any other non-number
_NOT_NUMBERS = np.timedelta64 | np.datetime64
# scalar types whose values are exact ints (bools excluded) or floats, as from list(array)
_INT_TYPES = frozenset(
    (int, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
)
_FLOAT_TYPES = frozenset((float, np.float16, np.float32, np.float64))


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


_ZERO_TIMES = _read_only(np.zeros(_SHARED_ROW, dtype=np.int64))


_SMALL_INTS = tuple(_read_only(np.array([i], dtype=np.int64)) for i in range(1025))


def int_feed(value: int) -> np.ndarray:
    """A (1,) int64 graph input (a length, a k, a bucket): shared read-only arrays for
    the usual small values, so a request allocates none for them."""
    return _SMALL_INTS[value] if 0 <= value < len(_SMALL_INTS) else np.array([value], np.int64)


def zero_times(n: int) -> np.ndarray:
    """Timestamps of a history given without them (a shared read-only row when short)."""
    return _ZERO_TIMES[:n] if n <= _SHARED_ROW else np.zeros(n, dtype=np.int64)


def listed(value: Any) -> list | None:
    """A list, a tuple or a 1-D numpy array as the list ``as_list`` reads it (so the
    usual path sees exactly what the general one would), else None (never consumes an
    iterator)."""
    kind = type(value)
    if kind is list:
        return value
    if kind is tuple:
        return list(value)
    if kind is np.ndarray and value.ndim == 1:
        return value.tolist()
    return None


def check_k(k: object, name: str = "k") -> int:
    if type(k) is int and k > 0:  # the usual call, without the checks below
        return k
    if isinstance(k, bool | np.bool_ | _NOT_NUMBERS) or not isinstance(k, numbers.Integral):
        raise ValueError(f"{name} must be a positive int, got {type(k).__name__} {k!r}")
    k = int(k)
    if k <= 0:
        raise ValueError(f"{name} must be a positive int, got {k}")
    return k


def check_flag(value: object, name: str) -> bool:
    """A yes/no argument: a bool (or numpy bool); a string such as "no" is not silently true."""
    if value is True or value is False:
        return value
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def as_list(value: object, name: str, limit: int) -> list:
    """A finite, ordered sequence as a list; strings, mappings and sets are refused."""
    if type(value) is list or type(value) is tuple:  # the usual call: no ABC checks
        if len(value) > limit:
            raise ValueError(f"{name} has more than {limit} entries")
        return list(value)
    if value is None:
        raise ValueError(f"{name} must be a sequence, got None")
    if isinstance(value, str | bytes | bytearray):
        raise ValueError(
            f"{name} must be a sequence of values, not a single {type(value).__name__}"
        )
    if isinstance(value, Mapping | Set):
        raise ValueError(f"{name} must be an ordered sequence, got {type(value).__name__}")
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got an array of shape {value.shape}")
        if value.size > limit:
            raise ValueError(f"{name} has {value.size} entries; the limit is {limit}")
        return value.tolist()
    if not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a sequence, got {type(value).__name__}")
    try:
        out = list(itertools.islice(value, limit + 1))
    except ValueError:
        raise
    except Exception as e:  # a generator that raises while we read it
        raise ValueError(f"{name}: could not read the sequence ({type(e).__name__}: {e})") from None
    if len(out) > limit:
        raise ValueError(f"{name} has more than {limit} entries")
    return out


def _as_int(x: numbers.Integral, where: str) -> int:
    """``int(x)``, or ValueError: numpy's timedelta64 is an Integral whose int() fails."""
    try:
        return int(x)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{where}: item ids must be int or str, got {type(x).__name__}") from None


def _id_key(x: object, id_type: str, where: str) -> object:
    """The catalog key for one id, or raise ValueError for a value that is not an id."""
    if id_type == "int":
        if isinstance(x, bool) or isinstance(x, np.bool_):
            raise ValueError(f"{where}: item ids must be int or str, got bool")
        if isinstance(x, numbers.Integral):
            return _as_int(x, where)
        if isinstance(x, str):
            s = x.strip()
            digits = s[1:] if s[:1] in "+-" else s
            if digits.isdecimal() and digits.isascii() and len(digits) <= _MAX_ID_DIGITS:
                return int(s)
            return x  # a string that cannot be an int id: unknown, not an error
        raise ValueError(f"{where}: item ids must be int or str, got {type(x).__name__}")
    if isinstance(x, str):
        return x
    if isinstance(x, bool) or isinstance(x, np.bool_):
        raise ValueError(f"{where}: item ids must be str or int, got bool")
    if isinstance(x, numbers.Integral):
        return str(_as_int(x, where))
    raise ValueError(f"{where}: item ids must be str or int, got {type(x).__name__}")


def _all_type(values: list, kind: type) -> bool:
    """Every value is exactly of type ``kind`` (subclasses such as bool are not)."""
    return not values or set(map(type, values)) == {kind}


def lookup(values: list, catalog: Catalog, name: str) -> tuple[np.ndarray, list[int]]:
    """Rows (-1 where unknown) for a list of ids, and the positions that were unknown."""
    index = catalog.index
    # ints (numpy integer scalars read as the ints _id_key makes of them): the common
    # case, without per-item checks (bools are excluded by exact types)
    plain = _plain_ints(values) if catalog.id_type == "int" else None
    if plain is not None:
        values = plain
        if index.delta:
            rows = [index.get(x, -1) for x in values]
        else:
            rows = list(map(index.base_get, values, itertools.repeat(-1, len(values))))
    else:
        rows = [
            index.get(_id_key(x, catalog.id_type, f"{name}[{i}]"), -1) for i, x in enumerate(values)
        ]
    arr = np.fromiter(rows, dtype=np.int64, count=len(rows))
    return arr, np.flatnonzero(arr < 0).tolist()


def id_rows(value: object, catalog: Catalog, name: str) -> np.ndarray:
    """Unique rows of the known ids of a candidates/exclude argument (unknown ones skipped)."""
    rows, _ = lookup(as_list(value, name, MAX_IDS), catalog, name)
    return np.unique(rows[rows > 0])


def _is_int_text(text: str) -> bool:
    digits = text[1:] if text[:1] in "+-" else text
    return digits.isdecimal() and digits.isascii()


class BehaviourMap:
    """Vocabulary entries (or values whose string form is one) -> behaviour indices."""

    def __init__(self, vocab: tuple[str, ...], default: str) -> None:
        self.by_name = {v: i for i, v in enumerate(vocab)}
        self.by_int = {int(v): i for i, v in enumerate(vocab) if _is_int_text(v)}
        self.default = self.by_name[default]
        self._default_row = _read_only(np.full(_SHARED_ROW, self.default, dtype=np.int64))

    def defaults(self, n: int) -> np.ndarray:
        """Behaviours of a history given without them (a shared read-only row when short)."""
        if n <= _SHARED_ROW:
            return self._default_row[:n]
        return np.full(n, self.default, dtype=np.int64)

    def index(self, x: object, where: str) -> int:
        if isinstance(x, str):
            found = self.by_name.get(x)
            return found if found is not None else self.by_name.get(x.strip(), 0)
        if isinstance(x, bool | np.bool_ | _NOT_NUMBERS):
            raise ValueError(
                f"{where}: behaviours must be vocabulary strings or numbers, got {type(x).__name__}"
            )
        if isinstance(x, numbers.Integral):
            return self.by_name.get(str(int(x)), 0)
        if isinstance(x, numbers.Real):
            f = float(x)
            if not math.isfinite(f):
                raise ValueError(f"{where}: behaviour is {f}, not a vocabulary value")
            key = str(int(f)) if f.is_integer() else repr(f)
            return self.by_name.get(key, 0)
        raise ValueError(
            f"{where}: behaviours must be vocabulary strings or numbers, got {type(x).__name__}"
        )

    def indices(self, values: object, n: int) -> np.ndarray:
        if values is None:
            return self.defaults(n)
        items = as_list(values, "behaviours", MAX_HISTORY)
        if len(items) != n:
            raise ValueError(f"behaviours has {len(items)} entries but the history has {n} events")
        # fast paths for the usual all-str or all-int lists (unknown entries map to 0)
        if _all_type(items, str):
            found = list(map(self.by_name.get, items))
            if None not in found:
                return np.array(found, dtype=np.int64)
        elif _all_type(items, int):
            return np.array(
                list(map(self.by_int.get, items, itertools.repeat(0, n))), dtype=np.int64
            )
        return np.fromiter(
            (self.index(x, f"behaviours[{i}]") for i, x in enumerate(items)), np.int64, count=n
        )


def _out_of_range(arr: np.ndarray) -> np.ndarray:
    return (arr >= _TS_LIMIT) | (arr <= -_TS_LIMIT)


def timestamps_array(values: object, n: int) -> np.ndarray:
    if values is None:
        return zero_times(n)
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "iuf":
        # float16/float32 cannot hold the range limit: compare in float64
        arr = values.astype(np.float64) if values.dtype.kind == "f" else values
    else:
        items = as_list(values, "timestamps", MAX_HISTORY)
        if len(items) == n and _all_type(items, int):
            # the usual list of int seconds: range-checked in Python, which is quicker
            # than numpy for a history's few values
            if not items or (max(items) < _TS_LIMIT and min(items) > -_TS_LIMIT):
                return np.array(items, dtype=np.int64)
        kinds = set(map(type, items))
        if not kinds <= _INT_TYPES | _FLOAT_TYPES:  # per element only then: ABC checks cost
            for i, x in enumerate(items):
                if isinstance(x, bool | np.bool_ | _NOT_NUMBERS) or not isinstance(x, numbers.Real):
                    raise ValueError(
                        f"timestamps[{i}]: expected seconds as int or float, got {type(x).__name__}"
                    )
        try:
            arr = np.array(
                items,
                dtype=np.float64
                if any(issubclass(kind, float | np.floating) for kind in kinds)
                else np.int64,
            )
        except OverflowError:
            arr = np.array([float(x) for x in items], dtype=np.float64)
    if arr.shape[0] != n:
        raise ValueError(f"timestamps has {arr.shape[0]} entries but the history has {n} events")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"timestamps[{i}] is {arr[i]}: timestamps must be finite seconds")
        over = _out_of_range(arr)
        if over.any():
            i = int(np.flatnonzero(over)[0])
            raise ValueError(f"timestamps[{i}] = {arr[i]} is out of range (|t| < 2**62 seconds)")
        return np.floor(arr).astype(np.int64)
    if arr.dtype.kind == "u" and arr.size and arr.max() >= _TS_LIMIT:
        i = int(np.argmax(arr))
        raise ValueError(f"timestamps[{i}] = {arr[i]} is out of range (|t| < 2**62 seconds)")
    arr = arr.astype(np.int64)
    over = _out_of_range(arr)
    if over.any():
        i = int(np.flatnonzero(over)[0])
        raise ValueError(f"timestamps[{i}] = {arr[i]} is out of range (|t| < 2**62 seconds)")
    return arr


class Prepared(NamedTuple):
    """One history, ready for the user encoder (a named tuple: one is built per
    request, and a frozen dataclass of eight fields took ~3 us to build)."""

    rows: np.ndarray  # dense rows of the known events the model reads (latest max_len)
    behaviours: np.ndarray
    timestamps: np.ndarray
    positions: np.ndarray | range  # index in the caller's history of each row
    seen: np.ndarray  # rows of every known event of the history (may repeat)
    unknown: tuple  # unknown ids as given, in order
    n_events: int
    request_gap: int = GAP_PAD  # bucket of the time from the last event to ``now``
    timed: bool = True  # False: no timestamps were given (every gap is a zero gap)


def prepare(
    history: object,
    behaviours: object,
    timestamps: object,
    catalog: Catalog,
    behaviour_map: BehaviourMap,
    max_len: int,
    strict: bool,
    encodable_rows: int | None = None,
    now: object = None,
) -> Prepared:
    """Validate one history and keep its latest ``max_len`` known events.

    ``now``: the request time (seconds, same clock as ``timestamps``); with timestamps
    it gives the gap from the last event read to the request, which a model whose gate
    reads the request time uses (unknown without either).

    ``encodable_rows``: rows at or beyond it (items added after export) cannot be read by
    a user encoder whose item table is baked in; such events are dropped from its input.
    """
    has_times = timestamps is not None
    if encodable_rows is None:
        usual = _usual_arrays(history, behaviours, timestamps, catalog, behaviour_map)
        if usual is not None:
            request = None if now is None else request_time(now)
            return _all_known(*usual, max_len, request, has_times)
    values = as_list(history, "history", MAX_HISTORY)
    n = len(values)
    rows, unknown_pos = lookup(values, catalog, "history")
    beh = behaviour_map.indices(behaviours, n)
    ts = timestamps_array(timestamps, n)
    request = None if now is None else request_time(now)
    if not unknown_pos and encodable_rows is None:  # every id known: slices, no masks
        return _all_known(rows, beh, ts, max_len, request, has_times)
    unknown = tuple(values[i] for i in unknown_pos)
    if unknown and strict:
        raise UnknownItemError(list(dict.fromkeys(unknown)))
    known = rows > 0
    seen = rows[known]
    if encodable_rows is not None:
        known &= rows < encodable_rows
    positions = np.flatnonzero(known)[-max_len:]
    kept_ts = ts[positions]
    return Prepared(
        rows=rows[positions],
        behaviours=beh[positions],
        timestamps=kept_ts,
        positions=positions,
        seen=seen,
        unknown=unknown,
        n_events=n,
        request_gap=request_gap_bucket(kept_ts, len(positions), request, has_times),
        timed=has_times,
    )


def _all_known(
    rows: np.ndarray,
    beh: np.ndarray,
    ts: np.ndarray,
    max_len: int,
    request: int | None,
    has_times: bool,
) -> Prepared:
    """A history whose ids are all known: its latest ``max_len`` events, by slicing."""
    n = rows.shape[0]
    start = max(0, n - max_len)
    if start:
        kept, beh, kept_ts = rows[start:], beh[start:], ts[start:]
    else:  # the usual history fits: no views to make
        kept, kept_ts = rows, ts
    return Prepared(
        rows=kept,
        behaviours=beh,
        timestamps=kept_ts,
        positions=range(start, n),
        seen=rows,
        unknown=(),
        n_events=n,
        request_gap=request_gap_bucket(ts, n, request, has_times),
        timed=has_times,
    )


def usual_stack(
    history: list,
    behaviours: object,
    timestamps: object,
    catalog: Catalog,
    behaviour_map: BehaviourMap,
    max_len: int | None = None,
    exclude_seen: bool = True,
    limit: int = MAX_HISTORY,
    dropped: Dropped | None = None,
) -> np.ndarray | None:
    """The usual request as one (m, n) int64 array, or None for anything else.

    Rows: the catalog rows of the history; the behaviour codes, if behaviours were
    given; the timestamps, if given. With ``max_len``, the fused run's ``REQUEST``
    (``edgerec.runtime.fused``) instead: always four rows -- the catalog rows, the
    behaviour codes (the default's if none were given), each event's seconds since the
    previous one (zeros without timestamps) with ``FIRST_GAP_MARK`` at the first event
    the model reads (the latest ``max_len``), and the rows to mask (the catalog rows
    again with ``exclude_seen``, else zeros). The gaps are subtracted here, on the lists,
    because a numpy subtraction after the model's run cost more in place (with one row
    fewer to convert: 4-9 us, 1-2%, less per ``recommend()`` in a paired A/B, six rounds).

    Usual: a list of ids of the catalog's type, all known; behaviours None or a list of
    vocabulary strings (or of ints); timestamps None or a list of in-range int seconds.
    With ``dropped`` (recommend's usual path, on a second try) unknown ids are left out
    after every argument has been checked over all events, and ``dropped`` tells which
    (one unknown id in 50: 72 us less than the general path, paired toggle).
    A tuple or a 1-D array is read as its list (``listed``, the list ``as_list`` makes):
    50-event numpy arrays took 70 us less per ``recommend()`` here than on the general
    path, tuples 58 us (paired toggle, 40 rounds). Likewise lists of numpy integer
    scalars (read as ints: 230 us less) and all-float seconds (floored: 130 us less).
    It gives exactly what the general path does, and None for anything else -- unknown
    ids, other types, wrong lengths, errors -- which the general path then handles and
    reports. Why: the general path's per-argument checks cost about half of a
    single-history ``recommend()``'s Python time, and each distinct numpy operation after
    the model's run pays again for the caches that run took, so the given lists become
    one array in one call (benchmarks/runtime_latency.py; an interleaved A/B of a lean
    request path against the general one measured 9%).
    """
    if type(history) is not list:  # a tuple or a 1-D array: its list, as as_list makes it
        history = listed(history)
        if history is None:
            return None
    given = history
    n = len(history)
    if n == 0 or n > limit:  # limit: recommend_batch passes its histories end to end
        return None
    timed = timestamps is not None
    if timed and type(timestamps) is not list:
        timestamps = listed(timestamps)
        if timestamps is None:
            return None
    if timed and len(timestamps) != n:
        return None
    if behaviours is not None and type(behaviours) is not list:
        behaviours = listed(behaviours)
        if behaviours is None:
            return None
    # exact types: ids of the catalog's kind, int timestamps (one pass when both are int;
    # numpy scalars and float seconds become those, as the general path reads them)
    if catalog.id_type == "int":
        if set(map(type, history + timestamps if timed else history)) != {int}:
            history = _plain_ints(history)
            timestamps = _int_seconds(timestamps) if timed else None
            if history is None or (timed and timestamps is None):
                return None
    else:
        if set(map(type, history)) != {str}:
            return None
        if timed and set(map(type, timestamps)) != {int}:
            timestamps = _int_seconds(timestamps)
            if timestamps is None:
                return None
    index = catalog.index
    if index.delta:
        found = list(map(index.get, history))
    elif index.int_rows is not None:  # exact ints (checked above) index the list
        try:  # a negative id would count from the list's end: unknown, like one too large
            if min(history) < 0:
                raise IndexError
            found = list(map(index.int_rows.__getitem__, history))
        except IndexError:
            if dropped is None:  # the general path reports the unknown ids
                return None
            found = list(map(index.base_get, history))
    else:
        found = list(map(index.base_get, history))
    if None in found and dropped is None:
        return None
    if behaviours is None:
        codes = None
    elif len(behaviours) == n:  # a list by now (``listed`` above)
        # vocabulary strings: every value found means every value is a str (the keys
        # are, and only a str equals one), so the lookup is the type check
        try:
            codes = list(map(behaviour_map.by_name.get, behaviours))
        except TypeError:  # an unhashable value: the general path names it
            return None
        if None in codes:
            if set(map(type, behaviours)) != {int}:
                return None
            codes = list(map(behaviour_map.by_int.get, behaviours, itertools.repeat(0, n)))
    else:
        return None
    if timed and not (max(timestamps) < _TS_LIMIT and min(timestamps) > -_TS_LIMIT):
        return None
    if dropped is not None:
        if None in found:  # checked like the others, every unknown event is now left out
            known = [row is not None for row in found]
            if not any(known):  # no known event: the general path's popularity fallback
                return None
            dropped.unknown = tuple(itertools.compress(given, [not k for k in known]))
            found = list(itertools.compress(found, known))
            codes = None if codes is None else list(itertools.compress(codes, known))
            timestamps = list(itertools.compress(timestamps, known)) if timed else None
            n = len(found)
        dropped.last_time = timestamps[-1] if timed else None
    if max_len is None:  # np.fromiter over the chained lists: for usual_batch's long
        # rows 2.9-3.3 us a history less than np.array of the nested lists (paired toggle)
        rows = [found] + ([codes] if codes is not None else []) + ([timestamps] if timed else [])
        flat = itertools.chain.from_iterable(rows)
        return np.fromiter(flat, np.int64, len(rows) * n).reshape(len(rows), n)
    if codes is None:
        codes = [behaviour_map.default] * n
    if timed:  # |t| < 2**62, so every difference fits in int64 (and stays above the mark)
        gaps = list(map(operator.sub, timestamps, timestamps[:1] + timestamps[:-1]))
    else:
        gaps = [0] * n
    gaps[max(0, n - max_len)] = FIRST_GAP_MARK
    # one flat list into one array: np.fromiter with a count builds it without numpy's
    # nested-list shape discovery
    flat = found + codes + gaps + (found if exclude_seen else [0] * n)
    return np.fromiter(flat, np.int64, 4 * n).reshape(4, n)


class Dropped:
    """What ``usual_stack`` left out when asked to drop unknown ids (recommend's usual
    path, after a first try without): the unknown ids as given, in order, and the
    timestamp of the last event kept (whole seconds; None without timestamps)."""

    __slots__ = ("unknown", "last_time")

    def __init__(self) -> None:
        self.unknown: tuple = ()
        self.last_time: int | None = None


def usual_batch(
    histories: list,
    behaviours: list,
    timestamps: list,
    nows: list,
    catalog: Catalog,
    behaviour_map: BehaviourMap,
    max_len: int,
) -> list[Prepared] | None:
    """``prepare`` of every history of the usual batch, or None for any other batch
    (``recommend_batch`` then prepares each history alone, which reports any problem).

    Usual: every history a non-empty list of known ids (``usual_stack``'s usual
    request), the behaviours and the timestamps each given for all histories or for
    none, every ``now`` valid. Why: ``usual_stack``'s checks are all per element, so
    they run once over the histories laid end to end, and each history's arrays are
    views of that one array, where preparing them one by one paid each call's fixed
    cost per history: ``recommend_batch`` of 256 MovieLens histories of 50 took 9.7 us
    a history less (2.5 of 51.7 ms; 7.3 us at 64 histories, 3.2 at 8), paired toggle,
    30 rounds.
    """
    histories = list(map(listed, histories))
    if not histories or None in histories:
        return None
    lengths = list(map(len, histories))
    if min(lengths) == 0 or max(lengths) > MAX_HISTORY or sum(lengths) > MAX_BATCH_EVENTS:
        return None
    given = []
    for values in (behaviours, timestamps):
        if set(map(type, values)) == {type(None)}:  # types only: == on arrays is elementwise
            given.append(None)
            continue
        values = list(map(listed, values))
        if None in values or list(map(len, values)) != lengths:
            return None
        given.append(list(itertools.chain.from_iterable(values)))
    flat_beh, flat_ts = given
    history = list(itertools.chain.from_iterable(histories))
    arr = usual_stack(history, flat_beh, flat_ts, catalog, behaviour_map, limit=len(history))
    if arr is None:
        return None
    try:
        requests = [None if now is None else request_time(now) for now in nows]
    except Exception:  # the per-history path reports it, naming its history
        return None
    timed = flat_ts is not None
    rows = arr[0]
    beh = arr[1] if flat_beh is not None else None
    ts = arr[-1] if timed else None
    preps = []
    end = 0
    for n, request in zip(lengths, requests, strict=True):
        start, end = end, end + n
        preps.append(
            _all_known(
                rows[start:end],
                beh[start:end] if beh is not None else behaviour_map.defaults(n),
                ts[start:end] if timed else zero_times(n),
                max_len,
                request,
                timed,
            )
        )
    return preps


def _plain_ints(values: list) -> list | None:
    """Python ints of a list of ints and numpy integer scalars (None if any is not one)."""
    kinds = set(map(type, values))
    if kinds == {int}:
        return values
    return list(map(int, values)) if kinds <= _INT_TYPES else None


def _int_seconds(values: list) -> list | None:
    """Timestamps as the general path reads them, for lists of ints or of floats (numpy
    scalars included): exact ints, or floats floored; None for anything else (mixed,
    NaN, inf: the general path reads or names them)."""
    ints = _plain_ints(values)
    if ints is not None:
        return ints
    if set(map(type, values)) <= _FLOAT_TYPES:
        try:
            return list(map(math.floor, values))
        except (ValueError, OverflowError):  # NaN, inf
            return None
    return None


def _usual_arrays(
    history: list,
    behaviours: object,
    timestamps: object,
    catalog: Catalog,
    behaviour_map: BehaviourMap,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(rows, behaviours, timestamps) of the usual request (``usual_stack``), or None."""
    arr = usual_stack(history, behaviours, timestamps, catalog, behaviour_map)
    if arr is None:
        return None
    n = arr.shape[1]
    beh = arr[1] if behaviours is not None else behaviour_map.defaults(n)
    return arr[0], beh, arr[-1] if timestamps is not None else zero_times(n)


def request_time(now: object) -> int:
    """``now`` as whole seconds, or ``ValueError`` naming it."""
    if isinstance(now, bool | np.bool_ | _NOT_NUMBERS) or not isinstance(now, numbers.Real):
        raise ValueError(f"now: expected seconds as int or float, got {type(now).__name__}")
    f = float(now)
    if not math.isfinite(f):
        raise ValueError(f"now is {f}: the request time must be finite seconds")
    if abs(f) >= _TS_LIMIT:
        raise ValueError(f"now = {now} is out of range (|t| < 2**62 seconds)")
    return int(math.floor(f)) if isinstance(now, float | np.floating) else int(now)


def request_gap_bucket(ts: Sequence[int] | None, n: int, now: int | None, has_times: bool) -> int:
    """Bucket of the time from the ``n``-th event of ``ts`` (the last one read) to ``now``
    (``ts`` is only read when ``has_times``)."""
    if now is None or not has_times or n == 0:
        return GAP_PAD
    return int(request_gap_buckets(ts[n - 1 : n], np.array([now]))[0])
