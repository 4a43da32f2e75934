"""Query string of ``GET /v2/images`` → :class:`ImageListQuery`, with Glance's operators and limits."""

from __future__ import annotations

import csv
from datetime import UTC, datetime

from starlette.datastructures import QueryParams

from glimpse.config import Settings
from glimpse.domain.images import ImageStatus, MemberStatus, Visibility, is_uuid
from glimpse.domain.queries import FILTERABLE, SORTABLE, Filter, FilterValue, ImageListQuery, Op
from glimpse.errors import InvalidInput

_CONTROL = frozenset(
    {
        "limit",
        "marker",
        "sort_key",
        "sort_dir",
        "sort",
        "visibility",
        "member_status",
        "tag",
        "size_min",
        "size_max",
        "os_hidden",
    }
)
_INT_FIELDS = frozenset({"size", "virtual_size", "min_ram", "min_disk"})
_DATE_FIELDS = frozenset({"created_at", "updated_at"})
#: The largest value a database integer column (and so a filter on one) can hold.
MAX_INT64 = 2**63 - 1


def _parse_int(name: str, raw: str, minimum: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer, got {raw!r}.") from None
    if value < minimum:
        raise InvalidInput(f"{name} must be at least {minimum}, got {value}.")
    if value > MAX_INT64:
        raise InvalidInput(f"{name} must be at most {MAX_INT64}.")
    return value


def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise InvalidInput(f"{name} must be true or false, got {raw!r}.")


def _parse_datetime(name: str, raw: str) -> datetime:
    text = raw.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{name} needs an ISO 8601 timestamp such as 2026-01-31T12:00:00Z, got {raw!r}."
        ) from None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"{name} {raw!r} is outside the years 1 to 9999 once converted to UTC.") from None


def _split_in(raw: str) -> list[str]:
    rows = list(csv.reader([raw], skipinitialspace=True))
    return [v for v in (rows[0] if rows else []) if v != ""]


def _convert(field: str, raw: str) -> FilterValue:
    if field in _INT_FIELDS:
        return _parse_int(field, raw)
    if field in _DATE_FIELDS:
        return _parse_datetime(field, raw)
    if field == "protected":
        return _parse_bool(field, raw)
    if field == "status":
        try:
            return ImageStatus(raw.lower())
        except ValueError:
            raise InvalidInput(
                f"Invalid status value {raw!r}; valid statuses: {', '.join(s.value for s in ImageStatus)}."
            ) from None
    return raw


def _filter(field: str, raw: str) -> Filter:
    op, sep, rest = raw.partition(":")
    allowed = FILTERABLE[field]
    if sep and op in {o.value for o in Op} and (field in _DATE_FIELDS or field in _INT_FIELDS or op == "in"):
        operator, value = Op(op), rest
    elif field in _DATE_FIELDS and sep and op not in {o.value for o in Op}:
        raise InvalidInput(f"Invalid operator {op!r} for {field}; use one of eq, neq, gt, gte, lt, lte.")
    else:
        operator, value = Op.EQ, raw
    if operator not in allowed:
        raise InvalidInput(f"Operator '{operator}' is not supported for {field}.")
    if operator == Op.IN:
        values = _split_in(value)
        if not values:
            raise InvalidInput(f"The 'in:' filter on {field} needs at least one value.")
        return Filter(field, operator, tuple(_convert(field, v) for v in values))
    return Filter(field, operator, (_convert(field, value),))


def _sort(params: QueryParams) -> tuple[tuple[str, str], ...]:
    keys = params.getlist("sort_key")
    dirs = params.getlist("sort_dir")
    combined = params.get("sort")
    if combined is not None and (keys or dirs):
        raise InvalidInput("The 'sort' parameter cannot be combined with 'sort_key' or 'sort_dir'.")
    pairs: list[tuple[str, str]] = []
    if combined is not None:
        for item in combined.split(","):
            key, _, direction = item.strip().partition(":")
            pairs.append((key.strip(), (direction or "desc").strip()))
    else:
        if len(dirs) > 1 and len(dirs) != len(keys):
            raise InvalidInput("Give one sort_dir per sort_key, or a single sort_dir for all of them.")
        default_dir = dirs[0] if len(dirs) == 1 else "desc"
        pairs = [(key, dirs[i] if len(dirs) > 1 else default_dir) for i, key in enumerate(keys)]
        if not keys and dirs:
            pairs = [("created_at", dirs[0])]
    if not pairs:
        return (("created_at", "desc"),)
    seen: set[str] = set()
    for key, direction in pairs:
        if key not in SORTABLE:
            raise InvalidInput(f"Unknown sort key {key!r}; sortable keys are: {', '.join(sorted(SORTABLE))}.")
        if direction not in ("asc", "desc"):
            raise InvalidInput(f"Invalid sort direction {direction!r}; use asc or desc.")
        if key in seen:
            raise InvalidInput(f"Sort key {key!r} is given more than once.")
        seen.add(key)
    return tuple(pairs)


def parse_list_query(params: QueryParams, settings: Settings) -> ImageListQuery:
    query = ImageListQuery(sort=_sort(params))
    limit = params.get("limit")
    query.limit = settings.limit_param_default if limit is None else _parse_int("limit", limit)
    query.limit = min(query.limit, settings.api_limit_max)
    marker = params.get("marker")
    if marker is not None:
        if not is_uuid(marker):
            raise InvalidInput(f"Invalid marker {marker!r}: markers are image ids.")
        query.marker = marker
    visibility = params.get("visibility")
    if visibility is not None:
        if visibility == "all":
            query.include_all_visibilities = True
        else:
            try:
                query.visibility = Visibility(visibility)
            except ValueError:
                raise InvalidInput(
                    f"Invalid visibility {visibility!r}; use public, private, shared, community or all."
                ) from None
    member_status = params.get("member_status")
    if member_status is not None:
        if member_status == "all":
            query.member_status = None
        else:
            try:
                query.member_status = MemberStatus(member_status)
            except ValueError:
                raise InvalidInput(
                    f"Invalid member_status {member_status!r}; use pending, accepted, rejected or all."
                ) from None
    query.tags = params.getlist("tag")
    if (raw := params.get("size_min")) is not None:
        query.filters.append(Filter("size", Op.GTE, (_parse_int("size_min", raw),)))
    if (raw := params.get("size_max")) is not None:
        query.filters.append(Filter("size", Op.LTE, (_parse_int("size_max", raw),)))
    if (raw := params.get("os_hidden")) is not None:
        query.os_hidden = _parse_bool("os_hidden", raw)
    for name, raw in params.multi_items():
        if name in _CONTROL:
            continue
        if name in FILTERABLE:
            query.filters.append(_filter(name, raw))
        elif name in ("self", "file", "schema", "tags", "locations", "direct_url", "stores"):
            raise InvalidInput(f"Images cannot be filtered by {name!r}.")
        else:
            if name in query.properties and query.properties[name] != raw:
                raise InvalidInput(f"Property filter {name!r} is given twice with different values.")
            query.properties[name] = raw
    return query
