"""Hooks of scripts/fuzz: make schema-valid ("positive") cases satisfy the rules that span
several parameters or fields, which OpenAPI cannot express and Baton answers with a documented
400 or 412.

Only positive cases are touched, and only where such a rule applies; negative cases (invalid on
purpose) are sent as generated, so the server's rejection of each invalid value is still
checked. The server's answers to broken ranges, missing ids and stale ETags are covered by the
test suite (tests/api).
"""

import json
import re
from datetime import date, datetime

import schemathesis

CURSOR = re.compile(r"^h1\.-?[0-9]+\.([0-9a-fA-F]{2})+$")
# A real position: handoff `h1` at 2023-11-14T22:13:20Z.
SOME_CURSOR = "h1.1700000000000000.6831"


def _year(text):
    """The year of an ISO 8601 date or date-time, or None when it is neither."""
    try:
        return datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00")).year
    except ValueError:
        pass
    try:
        return date.fromisoformat(text).year
    except ValueError:
        return None


def _fix_range(query, start, end):
    """Range bounds: start <= end, at most 366 days, within years 0001-9999 in every zone.
    Both bounds become the same instant (a date alone: that whole day), kept from the
    generated value unless its year is at an edge of the calendar."""
    value = query.get(start) or query.get(end)
    if not value:
        return
    year = _year(value)
    if year is None:
        return
    if not 2 <= year <= 9998:
        value = "2026-01-15"
    if start in query or end in query:
        query[start] = value
        query[end] = value


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


BUILT_IN_STATES = {"handoff_initiated", "handoff_completed", "handoff_failed", "handoff_abandoned"}
CUSTOM_STATE = re.compile(r"[a-z0-9_]{1,64}")


def _fix_event(event):
    """The rules of one event that its schema cannot state: timestamps within years 0001-9999
    once converted to UTC (the schema says `date-time`, whose offset can push an edge year
    out), at most as many failed tool calls as tool calls and cached tokens as tokens, and a
    custom state that is not a built-in one."""
    if not isinstance(event, dict):
        return
    for key in ("occurred_at", "started_at"):
        value = event.get(key)
        if isinstance(value, str):
            year = _year(value)
            if year is not None and not 2 <= year <= 9998:
                event[key] = "2026-01-15T00:00:00Z"
    telemetry = event.get("telemetry")
    if isinstance(telemetry, dict):
        for part, whole in (("tool_call_errors", "tool_calls"), ("cached_tokens", "total_tokens")):
            a, b = telemetry.get(part), telemetry.get(whole)
            if _is_number(a) and _is_number(b) and a > b:
                telemetry[part] = b
    state = event.get("state")
    if event.get("type") == "handoff.state" and isinstance(state, str):
        if state in BUILT_IN_STATES or not CUSTOM_STATE.fullmatch(state):
            event["state"] = "custom_state"


@schemathesis.hook
def before_call(context, case, **kwargs):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    if case.path == "/v1/events" and case.method.upper() == "POST":
        body = case.body
        if isinstance(body, dict) and isinstance(body.get("events"), list):
            for event in body["events"]:
                _fix_event(event)
        elif isinstance(body, dict):
            _fix_event(body)
    query = case.query if hasattr(case.query, "keys") else None
    if query is not None:
        _fix_range(query, "start_date", "end_date")
        _fix_range(query, "startDate", "endDate")
        # A cursor names a position the server gave out: only its own are accepted.
        if "next" in query and not CURSOR.match(str(query["next"])):
            query["next"] = SOME_CURSOR
        elif "next" in query:
            _, micros, hex_id = query["next"].split(".")
            try:
                # Nothing stored holds NUL, and the instant must be one chrono can represent.
                if "\x00" in bytes.fromhex(hex_id).decode("utf-8") or abs(int(micros)) > 8 * 10**18:
                    raise ValueError
            except ValueError:
                query["next"] = SOME_CURSOR
        # OpenCX's events list takes back only a `next` it gave out, checksummed for the
        # organization; no generated value is one (tests/api/handoff_events.rs covers cursors).
        if case.path == "/handoff-analytics/events" and "cursor" in query:
            del query["cursor"]
        # PolyAI's lookup needs `id` or `shared_id`.
        if case.path.endswith("/handoff_state") and not (
            str(query.get("id") or "").strip() or str(query.get("shared_id") or "").strip()
        ):
            query["id"] = "h1"
    # An `If-Match` names a version the client read; a generated one names none.
    headers = case.headers if hasattr(case.headers, "keys") else None
    if headers is not None:
        for name in list(headers):
            if name.lower() == "if-match":
                headers[name] = "*"


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    """`POST /v1/events` as NDJSON: the schema is that of one line (one event object). A
    serializer registered here returns the body's bytes (schemathesis sends them as is)."""
    if isinstance(value, bytes):
        return value
    return (json.dumps(value) + "\n").encode("utf-8")
