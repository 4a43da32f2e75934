"""SQL for image listings: visibility rules, filters, sorting and keyset (marker) paging."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, exists, false, or_, select, true
from sqlalchemy.orm import Session

from glimpse.db.models import ImageMemberRow, ImagePropertyRow, ImageRow, ImageTagRow
from glimpse.db.prepared import Prepared
from glimpse.domain.images import STORED_ATTRIBUTES, MemberStatus, Visibility
from glimpse.domain.members import Viewer
from glimpse.domain.queries import Filter, ImageListQuery, Op

#: The columns an image is read from: not the row's bookkeeping (``deleted``, ``deleted_at``, the
#: lock's version), whose values a read would convert only to drop them.
IMAGE_COLUMNS = tuple(
    ImageRow.__table__.c[name]
    for name in ("id", *STORED_ATTRIBUTES, "created_at", "updated_at", "import_task_id")
)


def _column(name: str) -> Any:
    return getattr(ImageRow, name)


def _viewer_project(viewer: Viewer) -> Any:
    """The caller's project as a bound parameter (``viewer_project``), so that a statement built for
    one caller serves every caller of the same kind (see :func:`list_statement`)."""
    return bindparam("viewer_project", viewer.project_id)


def _membership(viewer: Viewer, status: MemberStatus | None) -> ColumnElement[bool]:
    if viewer.project_id is None:
        return false()
    cond = and_(ImageMemberRow.image_id == ImageRow.id, ImageMemberRow.member == _viewer_project(viewer))
    if status is not None:
        cond = and_(cond, ImageMemberRow.status == str(status))
    return exists().where(cond)


def _visibility_clause(query: ImageListQuery, viewer: Viewer) -> ColumnElement[bool]:
    owned = ImageRow.owner == _viewer_project(viewer) if viewer.project_id is not None else false()
    shared_with_me = and_(ImageRow.visibility == "shared", _membership(viewer, query.member_status))
    if query.visibility is not None:
        by_value = ImageRow.visibility == str(query.visibility)
        if viewer.is_admin or query.visibility in (Visibility.PUBLIC, Visibility.COMMUNITY):
            return by_value
        if query.visibility == Visibility.PRIVATE:
            return and_(by_value, owned)
        return and_(by_value, or_(owned, _membership(viewer, query.member_status)))
    if viewer.is_admin:
        return true()
    visible = [ImageRow.visibility == "public", owned, shared_with_me]
    if query.include_all_visibilities:
        visible.append(ImageRow.visibility == "community")
    return or_(*visible)


def _filter_clause(flt: Filter) -> ColumnElement[bool]:
    column = _column(flt.field)
    values = [str(v) if hasattr(v, "value") else v for v in flt.values]
    match flt.op:
        case Op.IN:
            return column.in_(values)  # type: ignore[no-any-return]
        case Op.EQ:
            return column == values[0]  # type: ignore[no-any-return]
        case Op.NEQ:
            return column != values[0]  # type: ignore[no-any-return]
        case Op.GT:
            return column > values[0]  # type: ignore[no-any-return]
        case Op.GTE:
            return column >= values[0]  # type: ignore[no-any-return]
        case Op.LT:
            return column < values[0]  # type: ignore[no-any-return]
        case Op.LTE:
            return column <= values[0]  # type: ignore[no-any-return]


def _sort_keys(query: ImageListQuery) -> list[tuple[str, str]]:
    keys = [(key, direction) for key, direction in query.sort]
    if not any(key == "id" for key, _ in keys):
        keys.append(("id", keys[-1][1] if keys else "desc"))
    return keys


def _after(column: Any, direction: str, value: Any) -> ColumnElement[bool]:
    """Rows strictly after ``value`` in this key's order (NULLs first ascending, last descending)."""
    if direction == "asc":
        return column.isnot(None) if value is None else column > value  # type: ignore[no-any-return]
    if value is None:
        return false()
    # A NOT NULL column needs no IS NULL branch, which would keep the database from using the
    # listing index for the range.
    if not column.nullable:
        return column < value  # type: ignore[no-any-return]
    return or_(column < value, column.is_(None))


def _equal(column: Any, value: Any) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value  # type: ignore[no-any-return]


def _marker_value(key: str, value: Any) -> Any:
    """The marker's ``key`` as a bound parameter (``marker_<key>``; None stays a literal NULL test)."""
    return None if value is None else bindparam(f"marker_{key}", value, type_=_column(key).type)


def _keyset_clause(keys: list[tuple[str, str]], marker: dict[str, Any]) -> ColumnElement[bool]:
    marker = {key: _marker_value(key, marker[key]) for key, _ in keys}
    branches = []
    for i, (key, direction) in enumerate(keys):
        prefix = [_equal(_column(k), marker[k]) for k, _ in keys[:i]]
        branches.append(and_(*prefix, _after(_column(key), direction, marker[key])))
    after = or_(*branches)
    # Every row after the marker is at or past it in the first key: said on its own, this bound is
    # the range the database reads from its index (the OR above would make it scan from the top
    # and filter away every row before the marker).
    first, direction = keys[0]
    column, value = _column(first), marker[first]
    if column.nullable or value is None:
        return after
    return and_(column >= value if direction == "asc" else column <= value, after)


def base_statement(query: ImageListQuery, viewer: Viewer) -> Select[Any]:
    stmt = select(*IMAGE_COLUMNS).where(ImageRow.deleted.is_(False), _visibility_clause(query, viewer))
    if query.os_hidden is not None:
        stmt = stmt.where(ImageRow.os_hidden.is_(query.os_hidden))
    for flt in query.filters:
        stmt = stmt.where(_filter_clause(flt))
    for name, value in query.properties.items():
        stmt = stmt.where(
            exists().where(
                ImagePropertyRow.image_id == ImageRow.id,
                ImagePropertyRow.name == name,
                ImagePropertyRow.value == value,
            )
        )
    for tag in query.tags:
        stmt = stmt.where(exists().where(ImageTagRow.image_id == ImageRow.id, ImageTagRow.value == tag))
    return stmt


def marker_values(session: Session, query: ImageListQuery, viewer: Viewer) -> dict[str, Any] | None:
    """The sort-key values of the marker image, or None when the caller cannot see such an image."""
    if viewer.is_admin:
        visible: ColumnElement[bool] = true()
    else:
        owned = ImageRow.owner == viewer.project_id if viewer.project_id is not None else false()
        visible = or_(
            ImageRow.visibility.in_(["public", "community"]),
            owned,
            and_(ImageRow.visibility == "shared", _membership(viewer, None)),
        )
    # Only the sort keys, through Core: loading the whole row into the ORM cost more than the page.
    keys = [key for key, _ in _sort_keys(query)]
    row = (
        session.connection()
        .execute(
            select(*[_column(key) for key in keys]).where(
                ImageRow.id == query.marker, ImageRow.deleted.is_(False), visible
            )
        )
        .first()
    )
    if row is None:
        return None
    return dict(zip(keys, row, strict=True))


def build_list_statement(
    query: ImageListQuery, viewer: Viewer, marker: dict[str, Any] | None, *, nulls_sort_low: bool = False
) -> Select[Any]:
    """The listing's SELECT. NULLs come first in ascending order and last in descending order, on
    every database: ``nulls_sort_low`` says the database already sorts them that way and has no
    ``NULLS FIRST``/``NULLS LAST`` syntax (MariaDB and MySQL)."""
    keys = _sort_keys(query)
    stmt = base_statement(query, viewer)
    if marker is not None:
        stmt = stmt.where(_keyset_clause(keys, marker))
    order = []
    for key, direction in keys:
        column = _column(key)
        if column.nullable and not nulls_sort_low:
            order.append(column.asc().nulls_first() if direction == "asc" else column.desc().nulls_last())
        else:
            # No NULLS clause on NOT NULL columns: it would stop PostgreSQL from scanning an index
            # backwards (DESC NULLS LAST is not the reverse of an ascending index's order).
            order.append(column.asc() if direction == "asc" else column.desc())
    return stmt.order_by(*order).limit(query.limit)


def list_statement(
    query: ImageListQuery, viewer: Viewer, marker: dict[str, Any] | None, *, nulls_sort_low: bool = False
) -> tuple[Prepared | Select[Any], dict[str, Any]]:
    """:func:`build_list_statement` and the parameters to execute it with. Without filters (the
    usual pages) the statement is built once per shape and reused: building it costs more than
    running it (and it runs as a prepared statement); the caller's project and the marker's sort keys
    are its parameters."""
    params = {} if viewer.project_id is None else {"viewer_project": viewer.project_id}
    if marker is not None:
        params.update({f"marker_{key}": value for key, value in marker.items() if value is not None})
    if query.filters or query.properties or query.tags:
        return build_list_statement(query, viewer, marker, nulls_sort_low=nulls_sort_low), params
    stmt = _plain_list_statement(
        query.visibility,
        query.include_all_visibilities,
        query.member_status,
        query.os_hidden,
        query.sort,
        query.limit,
        viewer.is_admin,
        viewer.project_id is None,
        None if marker is None else tuple((key, value is None) for key, value in marker.items()),
        nulls_sort_low,
    )
    return stmt, params


@lru_cache(maxsize=256)
def _plain_list_statement(
    visibility: Visibility | None,
    include_all_visibilities: bool,
    member_status: MemberStatus | None,
    os_hidden: bool | None,
    sort: tuple[tuple[str, str], ...],
    limit: int,
    is_admin: bool,
    anonymous: bool,
    marker_nulls: tuple[tuple[str, bool], ...] | None,
    nulls_sort_low: bool,
) -> Prepared:
    query = ImageListQuery(
        visibility=visibility,
        include_all_visibilities=include_all_visibilities,
        member_status=member_status,
        os_hidden=os_hidden,
        sort=sort,
        limit=limit,
    )
    # The project and marker values bound into the statement are placeholders: each execution
    # passes its own (only which marker keys are NULL changes the statement's shape).
    viewer = Viewer(project_id=None if anonymous else "", is_admin=is_admin)
    marker = None if marker_nulls is None else {key: None if null else "" for key, null in marker_nulls}
    return Prepared(build_list_statement(query, viewer, marker, nulls_sort_low=nulls_sort_low))
