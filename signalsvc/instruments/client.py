"""HTTP JSON client for an external instrument service (SPEC §4, ``INSTRUMENT_SERVICE_URL``).

Endpoints used (all ``GET``, JSON):

- ``{base}/instruments?exchange=&symbol=``: either a JSON list of instrument objects, or a page
  ``{"results": [...], "next": url | null}``; ``next`` is followed (absolute or relative to the
  current page, same scheme and host as ``base`` only) until it is null.
- ``{base}/instruments/{key}``: one instrument object; 404 means "unknown instrument".

An instrument object has ``key``, ``exchange``, ``symbol``, ``product``, ``expiry`` (ISO date or
null), ``option_type``, ``strike``, ``lot_size``, ``tick_size`` and ``active``.

Decisions:

- Every record is validated against the key grammar of :mod:`signalsvc.core.keys`. The fields
  that restate the key (exchange, symbol, product, expiry, option type, strike) may be omitted but
  must agree with it when present; ``lot_size`` (positive integer) and ``tick_size`` (positive
  number) are required, because a guessed lot size is a wrong number; ``active`` defaults to true.
- In a listing, an invalid record is skipped, one warning per listing is logged with the counts
  and the first reasons, and :meth:`InstrumentServiceClient.fetch_instruments` reports every
  skipped record. A body that is not JSON, or not a list / page of records, is an
  :class:`InstrumentServiceError`: then nothing in that answer can be trusted. A single record
  from :meth:`~InstrumentServiceClient.get_instrument` that is invalid is an error too.
- Transport: a ``requests.Session`` with urllib3 ``Retry``: only ``GET``; connection failures and
  429/502/503/504 are retried with exponential backoff, ``Retry-After`` is honoured (capped by
  ``max_retry_after``). Read timeouts are not retried: a service that is slow stays slow, and
  retrying would multiply the caller's wait. 500 is not retried either (usually deterministic).
- A circuit breaker (pybreaker) counts :class:`InstrumentServiceUnavailable` outcomes (connection
  failures, timeouts, 5xx and 429 after retries); other answers, even bad ones, count as the
  service being up. While open, calls fail fast with :class:`InstrumentServiceUnavailable`
  without touching the network; after ``breaker_reset_timeout`` calls are let through as trials
  and the first outcome closes or re-opens it. The HTTP request runs outside the breaker's lock,
  so concurrent callers are not serialised behind one slow request.

The breaker state lives in the client object: keep one client per process (the Django wiring
builds it from settings) so that the state is shared by all callers.

Pure code: no Django imports.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn
from urllib.parse import quote, urljoin, urlsplit

import pybreaker
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from signalsvc.core.keys import InstrumentSpec, InvalidKey, parse_key

logger = logging.getLogger(__name__)

__all__ = [
    "InstrumentListing",
    "InstrumentServiceClient",
    "InstrumentServiceError",
    "InstrumentServiceUnavailable",
    "InvalidInstrumentRecord",
    "SkippedRecord",
    "parse_instrument_record",
]

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_PAGES = 10_000
_LOGGED_REASONS = 5


class InstrumentServiceError(Exception):
    """The instrument service gave no usable answer (bad status, non-JSON or wrong-shaped body).

    Base class of every error this client raises, so ``except InstrumentServiceError`` catches
    them all; catch :class:`InstrumentServiceUnavailable` first to tell "try later" apart.
    """


class InstrumentServiceUnavailable(InstrumentServiceError):
    """The service could not be reached or is failing: connection errors and timeouts after
    retries, 5xx or 429 after retries, or the circuit breaker is open. Transient: try later."""


class InvalidInstrumentRecord(InstrumentServiceError):
    """One instrument object does not describe a valid instrument; the message says why."""


@dataclass(frozen=True)
class SkippedRecord:
    """An invalid record left out of a listing. ``position`` is 0-based over all pages."""

    position: int
    key: str | None
    reason: str


@dataclass(frozen=True)
class InstrumentListing:
    """Outcome of one listing: the valid instruments (unique by key, the last occurrence wins,
    in first-seen order), the skipped records, how many duplicate keys were folded, and how
    many pages were read."""

    instruments: tuple[InstrumentSpec, ...]
    skipped: tuple[SkippedRecord, ...]
    duplicates: int
    pages: int


# --------------------------------------------------------------------------------------------
# Record validation
# --------------------------------------------------------------------------------------------


def _bad(key: object, reason: str) -> NoReturn:
    label = key if isinstance(key, str) else "<no key>"
    raise InvalidInstrumentRecord(f"instrument {label}: {reason}")


def _decimal(value: object) -> Decimal | None:
    """A finite Decimal from a JSON number or numeric string; None when it is neither."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        # str() first so that a float such as 0.05 becomes Decimal("0.05"), not its binary value.
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
        return number if number > 0 else None
    return None


def parse_instrument_record(record: object) -> InstrumentSpec:
    """Validate one instrument object and return it as an :class:`InstrumentSpec` with the
    canonical key. Raise :class:`InvalidInstrumentRecord` naming the first problem found.

    Units: ``strike`` and ``tick_size`` in the instrument's price currency (INR for NSE),
    ``lot_size`` in units of the underlying per contract, ``expiry`` a calendar date.
    """
    if not isinstance(record, Mapping):
        _bad(None, f"record is a JSON {type(record).__name__}, expected an object")
    key = record.get("key")
    if not isinstance(key, str):
        _bad(None, "missing or non-string 'key'")
    try:
        parsed = parse_key(key)
    except InvalidKey as exc:
        _bad(key, str(exc))

    # Fields that restate the key are optional, but a record that contradicts its own key is
    # corrupt, and we cannot tell which half is right.
    for field, expected in (
        ("exchange", parsed.exchange),
        ("symbol", parsed.symbol),
        ("product", parsed.product),
    ):
        if field in record and record[field] != expected:
            _bad(key, f"{field} {record[field]!r} contradicts the key ({expected!r})")
    if "option_type" in record:
        option_type = record["option_type"]
        # Instrument masters commonly fill "" for the option type of a non-option.
        if option_type == "" and parsed.option_type is None:
            option_type = None
        if option_type != parsed.option_type:
            _bad(key, f"option_type {record['option_type']!r} contradicts the key ({parsed.option_type!r})")
    if "expiry" in record:
        raw_expiry = record["expiry"]
        expiry: dt.date | None
        if raw_expiry is None:
            expiry = None
        elif isinstance(raw_expiry, str) and len(raw_expiry) == 10:
            try:
                expiry = dt.date.fromisoformat(raw_expiry)
            except ValueError:
                _bad(key, f"expiry {raw_expiry!r} is not an ISO date")
        else:
            _bad(key, f"expiry {raw_expiry!r} is not an ISO date or null")
        if expiry != parsed.expiry:
            _bad(key, f"expiry {raw_expiry!r} contradicts the key")
    if "strike" in record:
        raw_strike = record["strike"]
        strike = None if raw_strike is None else _decimal(raw_strike)
        if raw_strike is not None and strike is None:
            _bad(key, f"strike {raw_strike!r} is not a number")
        # ... and 0 for the strike of a non-option.
        if strike == 0 and parsed.strike is None:
            strike = None
        if strike != parsed.strike:
            _bad(key, f"strike {raw_strike!r} contradicts the key")

    if "lot_size" not in record:
        _bad(key, "missing lot_size")
    lot_size = _positive_int(record["lot_size"])
    if lot_size is None:
        _bad(key, f"lot_size {record['lot_size']!r} is not a positive integer")

    if "tick_size" not in record:
        _bad(key, "missing tick_size")
    tick_size = _decimal(record["tick_size"])
    if tick_size is None or tick_size <= 0:
        _bad(key, f"tick_size {record['tick_size']!r} is not a positive number")

    active = record.get("active", True)
    if not isinstance(active, bool):
        _bad(key, f"active {active!r} is not a boolean")

    return InstrumentSpec.from_key(str(parsed), lot_size=lot_size, tick_size=tick_size, active=active)


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


class _BreakerLog(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        old = old_state.name if old_state is not None else None
        log = logger.warning if new_state.name == pybreaker.STATE_OPEN else logger.info
        log("instrument service circuit breaker %s -> %s", old, new_state.name)


def _raise(exc: BaseException) -> NoReturn:
    raise exc


def _noop() -> None:
    return None


class InstrumentServiceClient:
    """Client for the instrument service at ``base_url`` (e.g. ``http://instruments:8080/api``).

    :param timeout: ``(connect, read)`` seconds for each HTTP attempt, or one number for both.
        The read timeout bounds each wait for bytes, not a whole response.
    :param retries: retries after the first attempt, for connection failures and 429/502/503/504.
    :param backoff: exponential backoff factor in seconds (urllib3 semantics: no sleep before the
        first retry, then ``backoff * 2**(n-1)``), capped by ``max_backoff``.
    :param max_retry_after: longest ``Retry-After`` (seconds) the client will sleep for.
    :param breaker_fail_max: consecutive unavailable outcomes that open the circuit.
    :param breaker_reset_timeout: seconds the circuit stays open before a trial call.
    :param headers: extra request headers (e.g. an API token for the service).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: tuple[float, float] | float = (3.05, 10.0),
        retries: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        max_retry_after: int = 10,
        breaker_fail_max: int = 5,
        breaker_reset_timeout: float = 30,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"instrument service URL must be http(s)://host[:port][/path], got {base_url!r}")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.base_url = base_url.rstrip("/")
        self._origin = (parts.scheme, parts.netloc)
        self.timeout: tuple[float, float] = (
            (float(timeout), float(timeout)) if isinstance(timeout, int | float) else timeout
        )
        retry = Retry(
            total=retries,
            connect=retries,
            read=0,
            status=retries,
            other=0,
            redirect=0,
            allowed_methods=frozenset({"GET"}),
            status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff,
            backoff_max=max_backoff,
            respect_retry_after_header=True,
            retry_after_max=max_retry_after,
            # Give the last response back instead of raising, so its status can be classified.
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=16)
        self._session = requests.Session()
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update({"Accept": "application/json", "User-Agent": "signal-service"})
        if headers:
            self._session.headers.update(headers)
        # Our own storage object, so the fail-fast check can read opened_at through a public API.
        self._breaker_storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=breaker_fail_max,
            reset_timeout=breaker_reset_timeout,
            state_storage=self._breaker_storage,
            listeners=[_BreakerLog()],
            name="instrument-service",
            throw_new_error_on_trip=False,
        )

    # -- public API ---------------------------------------------------------------------------

    @property
    def breaker_state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""
        return self._breaker.current_state

    def list_instruments(
        self, *, exchange: str | None = None, symbol: str | None = None
    ) -> list[InstrumentSpec]:
        """All instruments matching the filters; invalid records are skipped (and logged)."""
        return list(self.fetch_instruments(exchange=exchange, symbol=symbol).instruments)

    def fetch_instruments(
        self, *, exchange: str | None = None, symbol: str | None = None
    ) -> InstrumentListing:
        """Like :meth:`list_instruments`, with the skipped records and page count reported."""
        params = {
            name: value for name, value in (("exchange", exchange), ("symbol", symbol)) if value is not None
        }
        by_key: dict[str, InstrumentSpec] = {}
        skipped: list[SkippedRecord] = []
        duplicates = 0
        position = 0
        pages = 0
        for records in self._pages(f"{self.base_url}/instruments", params):
            pages += 1
            for record in records:
                try:
                    spec = parse_instrument_record(record)
                except InvalidInstrumentRecord as exc:
                    raw_key = record.get("key") if isinstance(record, Mapping) else None
                    skipped.append(
                        SkippedRecord(position, raw_key if isinstance(raw_key, str) else None, str(exc))
                    )
                else:
                    if spec.key in by_key:
                        duplicates += 1
                    by_key[spec.key] = spec
                position += 1
        if skipped:
            logger.warning(
                "instrument service: skipped %d invalid of %d records (%d pages); first: %s",
                len(skipped),
                position,
                pages,
                "; ".join(s.reason for s in skipped[:_LOGGED_REASONS]),
            )
        if duplicates:
            logger.info("instrument service: %d duplicate keys in the listing, kept the last", duplicates)
        return InstrumentListing(tuple(by_key.values()), tuple(skipped), duplicates, pages)

    def get_instrument(self, key: str) -> InstrumentSpec | None:
        """The instrument with this key, or None when the service does not know it (404).

        Raises :class:`~signalsvc.core.keys.InvalidKey` for a malformed key, before any request.
        """
        canonical = str(parse_key(key))
        url = f"{self.base_url}/instruments/{quote(canonical, safe='@')}"
        body = self._get_json(url, None, not_found_ok=True)
        if body is None:
            return None
        spec = parse_instrument_record(body)
        if spec.key != canonical:
            raise InstrumentServiceError(f"asked for instrument {canonical}, the service answered {spec.key}")
        return spec

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> InstrumentServiceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _pages(self, url: str, params: Mapping[str, str]) -> Iterator[list[Any]]:
        """Yield the list of records of each page, following ``next``."""
        seen: set[str] = set()
        next_url: str | None = url
        query: Mapping[str, str] | None = params
        while next_url is not None:
            if next_url in seen:
                raise InstrumentServiceError(f"instrument listing loops: {next_url} was already read")
            if len(seen) >= MAX_PAGES:
                raise InstrumentServiceError(f"instrument listing has more than {MAX_PAGES} pages")
            seen.add(next_url)
            body = self._get_json(next_url, query)
            if isinstance(body, list):
                yield body
                return
            if not isinstance(body, Mapping) or not isinstance(body.get("results"), list):
                raise InstrumentServiceError(
                    f"GET {next_url}: expected a JSON list or {{'results': [...], 'next': url}}, "
                    f"got {type(body).__name__}"
                    + (f" with keys {sorted(body)[:10]}" if isinstance(body, Mapping) else "")
                )
            yield body["results"]
            raw_next = body.get("next")
            if raw_next is None or raw_next == "":
                return
            if not isinstance(raw_next, str):
                raise InstrumentServiceError(
                    f"GET {next_url}: 'next' is {raw_next!r}, expected a URL or null"
                )
            resolved = urljoin(next_url, raw_next)
            target = urlsplit(resolved)
            # The session may carry credentials for the service: never send them elsewhere.
            if (target.scheme, target.netloc) != self._origin:
                raise InstrumentServiceError(
                    f"'next' {raw_next!r} leaves the instrument service ({resolved})"
                )
            # The query of the first page is already part of the service's next link.
            next_url, query = resolved, None

    def _get_json(self, url: str, params: Mapping[str, str] | None, *, not_found_ok: bool = False) -> Any:
        """GET ``url`` through the breaker and return the decoded JSON (None for an allowed 404)."""
        self._fail_fast_if_open()
        try:
            result = self._request(url, params, not_found_ok=not_found_ok)
        except InstrumentServiceUnavailable as exc:
            self._record_outcome(exc)
            raise
        except InstrumentServiceError:
            # The service answered, even if badly: it is up as far as the breaker is concerned.
            self._record_outcome(None)
            raise
        self._record_outcome(None)
        return result

    def _fail_fast_if_open(self) -> None:
        if self._breaker_storage.state != pybreaker.STATE_OPEN:
            return
        opened_at = self._breaker_storage.opened_at
        if opened_at is None:
            return
        retry_at = opened_at + dt.timedelta(seconds=self._breaker.reset_timeout)
        if dt.datetime.now(dt.UTC) < retry_at:
            raise InstrumentServiceUnavailable(
                f"instrument service circuit is open until {retry_at.isoformat(timespec='seconds')} "
                f"after {self._breaker.fail_max} consecutive failures"
            )

    def _record_outcome(self, failure: InstrumentServiceUnavailable | None) -> None:
        """Replay the outcome of a request through pybreaker so it updates the state (counting,
        opening, half-open trial), without holding the breaker's lock during the request."""
        try:
            if failure is None:
                self._breaker.call(_noop)
            else:
                self._breaker.call(_raise, failure)
        except InstrumentServiceUnavailable:
            pass  # the failure being recorded; the caller re-raises it
        except pybreaker.CircuitBreakerError:
            # Another caller opened the circuit while this request was in flight; this outcome
            # does not change that.
            pass

    def _request(self, url: str, params: Mapping[str, str] | None, *, not_found_ok: bool) -> Any:
        try:
            response = self._session.get(url, params=params, timeout=self.timeout, allow_redirects=False)
        except requests.Timeout as exc:
            raise InstrumentServiceUnavailable(f"GET {url}: timed out ({exc})") from exc
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise InstrumentServiceUnavailable(f"GET {url}: connection failed ({exc})") from exc
        except requests.RequestException as exc:
            raise InstrumentServiceError(f"GET {url}: {exc}") from exc

        status = response.status_code
        if status == 404 and not_found_ok:
            return None
        if status in RETRY_STATUSES or status >= 500:
            raise InstrumentServiceUnavailable(f"GET {response.url}: HTTP {status} {_snippet(response)}")
        if status != 200:
            raise InstrumentServiceError(f"GET {response.url}: unexpected HTTP {status} {_snippet(response)}")
        try:
            return response.json()
        except ValueError as exc:
            raise InstrumentServiceError(
                f"GET {response.url}: body is not JSON ({exc}): {_snippet(response)}"
            ) from exc


def _snippet(response: requests.Response, limit: int = 200) -> str:
    text = response.text[:limit]
    return repr(text) if text else "(empty body)"
