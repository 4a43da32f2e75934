"""Root fixtures: the real database services the suite runs against.

The PostgreSQL server is started by the test setup itself (``scripts/postgres.sh start``), once per
machine even under pytest-xdist, and left running when the session ends so the next run starts
instantly; ``make test`` (and ``make services-stop``) stops it. A server that cannot be started makes
the tests that need it ERROR, never skip.

Migrating a database takes far longer than copying one, so each test process (each xdist worker)
migrates one template per backend the first time a test asks for a migrated database, and every such
test then gets a copy: ``CREATE DATABASE … TEMPLATE`` on PostgreSQL, a file copy on SQLite, the
template's ``SHOW CREATE TABLE`` statements replayed into a new database on MariaDB.

Fixtures:

* ``postgres_admin_url`` (session): admin URL of the test server, e.g.
  ``postgresql+psycopg://glimpse@127.0.0.1:24329/postgres``.
* ``mariadb_admin_url`` (session): admin URL of the test MariaDB server (``scripts/mariadb.sh
  start``), e.g. ``mysql+pymysql://glimpse:glimpse@127.0.0.1:3329/?charset=utf8mb4&ssl_disabled=true``;
  started once per machine under a file lock like PostgreSQL, left running, stopped by ``make test``.
* ``database_backend`` (function, params ``sqlite`` / ``postgresql`` / ``mariadb``): the backend of
  this test's ``empty_database_url`` / ``migrated_database_url``; a test using either runs once on each.
* ``migrated_database_url`` (function): URL of a fresh database whose schema is at the latest
  migration and which holds no rows; a PostgreSQL or MariaDB one is dropped after the test.
* ``empty_database_url`` (function): URL of a fresh database with no tables at all (for migration
  tests); a PostgreSQL or MariaDB one is dropped after the test.
* ``migrated_sqlite_url`` / ``empty_sqlite_url`` (function): the same on SQLite only (no services).
* ``s3_server`` (session): the object store test server (``scripts/s3-server.sh start``: Swift with
  its S3 API on loopback), as a ``objectsupport.ObjectServer``; started once per machine under a file lock
  like PostgreSQL, left running, stopped by ``make test``. Tests marked ``objects``.
* ``rabbitmq_url`` (session): the transport URL of the test RabbitMQ broker (``scripts/rabbitmq.sh
  start``), e.g. ``rabbit://guest:guest@127.0.0.1:26329/``; started once per machine under a file lock,
  stopped at the end of the pytest run that started it. Tests marked ``rabbitmq``.
* ``swift_keystone`` (session): a Keystone and a second Swift proxy on the same object servers that
  validates its tokens, as an ``objectsupport.KeystoneSwift``; started on first use, stopped at the
  end of the session. Tests marked ``objects``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa
from filelock import FileLock
from playwright.sync_api import Browser

from browsersupport import launched_chromium
from glimpse.db import migrate
from glimpse.db.session import make_engine
from keystonesupport import KeystoneServer
from objectsupport import KeystoneSwift, ObjectServer, start_s3_server
from rabbitsupport import RABBITMQ_SCRIPT, RABBITMQ_START_TIMEOUT, USED_MARK

#: Fails the run when a known test secret appears in a log (tests/secretcheck.py).
pytest_plugins = ["secretcheck"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES_DIR = REPO_ROOT / ".test-services"
POSTGRES_SCRIPT = REPO_ROOT / "scripts" / "postgres.sh"
POSTGRES_URL_ENV = "GLIMPSE_TEST_POSTGRES_URL"
POSTGRES_START_TIMEOUT = 300  # seconds; the first start may install the server with apt-get
MARIADB_SCRIPT = REPO_ROOT / "scripts" / "mariadb.sh"
MARIADB_URL_ENV = "GLIMPSE_TEST_MARIADB_URL"
MARIADB_START_TIMEOUT = 600  # seconds; the first start may install mariadb-server with apt-get
IMAGES_SCRIPT = REPO_ROOT / "scripts" / "test-images.sh"
IMAGES_TIMEOUT = 600  # seconds; the first run may install qemu-utils and xorriso with apt-get


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--postgres-url",
        default=os.environ.get(POSTGRES_URL_ENV),
        help=(
            "admin URL of an already running PostgreSQL server to test against (a role allowed to "
            "CREATE/DROP DATABASE) instead of starting scripts/postgres.sh; "
            f"default: ${POSTGRES_URL_ENV}"
        ),
    )
    parser.addoption(
        "--mariadb-url",
        default=os.environ.get(MARIADB_URL_ENV),
        help=(
            "admin URL of an already running MariaDB/MySQL server to test against (an account allowed "
            "to CREATE/DROP DATABASE and KILL) instead of starting scripts/mariadb.sh; "
            f"default: ${MARIADB_URL_ENV}"
        ),
    )


def _start_service(script: Path, lock: str, timeout: int, marker: str) -> str:
    """Run ``script start`` once per machine (the first xdist worker; the others wait on the lock, and
    ``start`` is idempotent, so they then just read the URL); its last line of output is the URL."""
    SERVICES_DIR.mkdir(exist_ok=True)
    command = f"scripts/{script.name} start"
    with FileLock(str(SERVICES_DIR / lock), timeout=timeout + 60):
        try:
            proc = subprocess.run(
                ["bash", str(script), "start"],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"could not run `{command}`: {exc}", pytrace=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        pytest.fail(
            f"`{command}` failed with exit code {proc.returncode}; the tests marked "
            f"`{marker}` need this server.\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
            pytrace=False,
        )
    return lines[-1]


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    url = _start_service(RABBITMQ_SCRIPT, "rabbitmq.lock", RABBITMQ_START_TIMEOUT, "rabbitmq")
    USED_MARK.touch()
    return url


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run that used the RabbitMQ broker stops it (the controller, not an xdist worker: the
    other workers may still be using it when one of them finishes)."""
    if hasattr(session.config, "workerinput") or not USED_MARK.exists():
        return
    USED_MARK.unlink(missing_ok=True)
    subprocess.run(["bash", str(RABBITMQ_SCRIPT), "stop"], cwd=REPO_ROOT, capture_output=True, check=False)


def _start_postgres() -> str:
    return _start_service(POSTGRES_SCRIPT, "postgres.lock", POSTGRES_START_TIMEOUT, "postgres")


@pytest.fixture(scope="session")
def disk_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of small disk images made by ``scripts/test-images.sh`` with qemu-img (every
    format, plus unsafe ones); made once per run, shared by the xdist workers."""
    shared = tmp_path_factory.getbasetemp().parent
    target = shared / "disk-images"
    with FileLock(str(shared / "disk-images.lock"), timeout=IMAGES_TIMEOUT + 60):
        try:
            proc = subprocess.run(
                ["bash", str(IMAGES_SCRIPT), str(target)],
                capture_output=True,
                text=True,
                timeout=IMAGES_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"could not run `scripts/test-images.sh`: {exc}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(
            f"`scripts/test-images.sh` failed with exit code {proc.returncode}; the content tests "
            f"need its images.\n--- stderr ---\n{proc.stderr}",
            pytrace=False,
        )
    return target


@pytest.fixture(scope="session")
def postgres_admin_url(pytestconfig: pytest.Config) -> str:
    """Admin URL (SQLAlchemy form) of the test PostgreSQL server, started on first use."""
    given: str | None = pytestconfig.getoption("--postgres-url")
    if given:
        return given
    return _start_postgres()


@pytest.fixture(scope="session")
def _postgres_admin_engine(postgres_admin_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        pytest.fail(f"cannot connect to the test PostgreSQL server at {postgres_admin_url}: {exc}")
    yield engine
    engine.dispose()


def _database_name(kind: str) -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"glimpse_{kind}_{worker}_{uuid.uuid4().hex[:12]}"


def _server_url(admin_url: str, name: str) -> str:
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _migrate(url: str) -> None:
    engine = make_engine(url)  # the engine the service itself uses (SQLite pragmas included)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def _postgres_template(postgres_admin_url: str, _postgres_admin_engine: sa.Engine) -> Iterator[str]:
    """Name of this worker's migrated PostgreSQL template, which accepts no connections once migrated.

    ``CREATE DATABASE … TEMPLATE`` fails while anyone is connected to the template, so each worker has
    its own and nothing connects to it after the migration.
    """
    name = _database_name("template")
    with _postgres_admin_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        _migrate(_server_url(postgres_admin_url, name))
        with _postgres_admin_engine.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
        yield name
    finally:
        with _postgres_admin_engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _fresh_postgres_database(request: pytest.FixtureRequest, template: str | None) -> Iterator[str]:
    admin_url: str = request.getfixturevalue("postgres_admin_url")
    engine: sa.Engine = request.getfixturevalue("_postgres_admin_engine")
    name = _database_name("test")
    create = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
    with engine.connect() as conn:
        conn.execute(sa.text(create))
    try:
        yield _server_url(admin_url, name)
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def mariadb_admin_url(pytestconfig: pytest.Config) -> str:
    """Admin URL (SQLAlchemy form) of the test MariaDB server, started on first use."""
    given: str | None = pytestconfig.getoption("--mariadb-url")
    if given:
        return given
    return _start_service(MARIADB_SCRIPT, "mariadb.lock", MARIADB_START_TIMEOUT, "mariadb")


@pytest.fixture(scope="session")
def _mariadb_admin_engine(mariadb_admin_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(mariadb_admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        pytest.fail(f"cannot connect to the test MariaDB server at {mariadb_admin_url}: {exc}")
    yield engine
    engine.dispose()


class MariaDBTemplate:
    """A migrated schema, as the statements that rebuild it: MariaDB has no ``CREATE DATABASE …
    TEMPLATE``, and ``CREATE TABLE … LIKE`` loses foreign keys, so each test's database replays the
    ``SHOW CREATE TABLE`` output of this worker's migrated template, copies its Alembic revision and
    the rows the migrations wrote (``seeded``: the standard metadata-definition resource types)."""

    def __init__(self, name: str, tables: list[str], revisions: list[str], seeded: list[str]) -> None:
        self.name = name
        self.tables = tables
        self.revisions = revisions
        self.seeded = seeded


def _drop_mariadb_database(conn: sa.Connection, name: str) -> None:
    """Drop ``name`` even while connections are left in it (a DROP would wait for their metadata locks):
    kill them first, as PostgreSQL's ``DROP DATABASE … WITH (FORCE)`` does."""
    ids = conn.execute(
        sa.text("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = :name AND ID <> CONNECTION_ID()"),
        {"name": name},
    ).scalars()
    for pid in list(ids):
        with contextlib.suppress(sa.exc.DBAPIError):  # it may have ended meanwhile
            conn.execute(sa.text(f"KILL CONNECTION {int(pid)}"))
    conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))


@pytest.fixture(scope="session")
def _mariadb_template(mariadb_admin_url: str, _mariadb_admin_engine: sa.Engine) -> Iterator[MariaDBTemplate]:
    """This worker's migrated MariaDB database, read back as the DDL that recreates it."""
    name = _database_name("template")
    with _mariadb_admin_engine.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}`"))
    try:
        _migrate(_server_url(mariadb_admin_url, name))
        with _mariadb_admin_engine.connect() as conn:
            tables = conn.execute(
                sa.text(
                    "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = :name "
                    "AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"
                ),
                {"name": name},
            ).scalars()
            table_names = list(tables)
            ddl = [
                conn.execute(sa.text(f"SHOW CREATE TABLE `{name}`.`{table}`")).one()[1]
                for table in table_names
            ]
            revisions = list(
                conn.execute(sa.text(f"SELECT version_num FROM `{name}`.alembic_version")).scalars()  # noqa: S608
            )
            # information_schema's TABLE_ROWS is an estimate for InnoDB: look at each table instead.
            seeded = [
                table
                for table in table_names
                if table != "alembic_version"
                and conn.execute(sa.text(f"SELECT EXISTS (SELECT 1 FROM `{name}`.`{table}`)")).scalar()  # noqa: S608
            ]
        assert ddl
        assert revisions
        yield MariaDBTemplate(name, ddl, revisions, seeded)
    finally:
        with _mariadb_admin_engine.connect() as conn:
            _drop_mariadb_database(conn, name)


def _fresh_mariadb_database(
    request: pytest.FixtureRequest, template: MariaDBTemplate | None
) -> Iterator[str]:
    admin_url: str = request.getfixturevalue("mariadb_admin_url")
    engine: sa.Engine = request.getfixturevalue("_mariadb_admin_engine")
    name = _database_name("test")
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}`"))
        if template is not None:
            conn.execute(sa.text(f"USE `{name}`"))
            conn.execute(sa.text("SET SESSION foreign_key_checks = 0"))
            for statement in template.tables:
                conn.exec_driver_sql(statement)
            for revision in template.revisions:
                conn.execute(
                    sa.text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": revision}
                )
            for table in template.seeded:
                conn.exec_driver_sql(f"INSERT INTO `{table}` SELECT * FROM `{template.name}`.`{table}`")  # noqa: S608
    try:
        yield _server_url(admin_url, name)
    finally:
        with engine.connect() as conn:
            _drop_mariadb_database(conn, name)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This worker's migrated SQLite file, complete in itself (no ``-wal`` beside it) so a copy is too."""
    path = tmp_path_factory.mktemp("sqlite-template") / "glimpse.db"
    _migrate(f"sqlite:///{path}")
    # The file is in WAL mode (the service's engine sets it). Checkpoint the log into the file; once the
    # last connection closes, SQLite removes the log, and copying the one file copies the whole database.
    with closing(sqlite3.connect(path)) as conn:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0, "the SQLite template is still in use"
    assert not path.with_name(path.name + "-wal").exists()
    return path


def _sqlite_path(tmp_path: Path) -> Path:
    """A new file name in ``tmp_path``, so that two database fixtures of one test never share a file."""
    return tmp_path / f"glimpse-{uuid.uuid4().hex[:8]}.db"


def _empty_sqlite_database(tmp_path: Path) -> str:
    return f"sqlite:///{_sqlite_path(tmp_path)}"


def _migrated_sqlite_database(tmp_path: Path, template: Path) -> str:
    path = _sqlite_path(tmp_path)
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb),
    ]
)
def database_backend(request: pytest.FixtureRequest) -> str:
    """``sqlite``, ``postgresql`` or ``mariadb``: the backend of this test's database fixtures."""
    backend: str = request.param
    return backend


@pytest.fixture
def empty_database_url(
    request: pytest.FixtureRequest, database_backend: str, tmp_path: Path
) -> Iterator[str]:
    """URL of a fresh database with no tables: an SQLite file, or a new PostgreSQL or MariaDB database
    dropped after."""
    if database_backend == "sqlite":
        yield _empty_sqlite_database(tmp_path)
    elif database_backend == "mariadb":
        yield from _fresh_mariadb_database(request, template=None)
    else:
        yield from _fresh_postgres_database(request, template=None)


@pytest.fixture
def migrated_database_url(
    request: pytest.FixtureRequest, database_backend: str, tmp_path: Path
) -> Iterator[str]:
    """URL of a fresh database at the latest migration, holding no rows: a copy of this worker's template."""
    if database_backend == "sqlite":
        yield _migrated_sqlite_database(tmp_path, request.getfixturevalue("_sqlite_template"))
    elif database_backend == "mariadb":
        yield from _fresh_mariadb_database(request, template=request.getfixturevalue("_mariadb_template"))
    else:
        yield from _fresh_postgres_database(request, template=request.getfixturevalue("_postgres_template"))


@pytest.fixture
def empty_sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite database file with no tables (no services needed)."""
    return _empty_sqlite_database(tmp_path)


@pytest.fixture
def migrated_sqlite_url(tmp_path: Path, _sqlite_template: Path) -> str:
    """URL of a fresh SQLite database file at the latest migration (no services needed)."""
    return _migrated_sqlite_database(tmp_path, _sqlite_template)


@pytest.fixture(scope="session")
def s3_server() -> ObjectServer:
    """The object store test server (Swift + S3 on loopback), started on first use."""
    return start_s3_server()


@pytest.fixture(scope="session")
def swift_keystone(
    s3_server: ObjectServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KeystoneSwift]:
    """A Keystone and a Swift proxy validating its tokens, on the object test server; one per session."""
    root = tmp_path_factory.mktemp("swift-keystone")
    with (
        KeystoneServer(tmp_path_factory.getbasetemp().parent, root / "keystone", cache=True) as keystone,
        KeystoneSwift(s3_server, keystone, root / "proxy") as swift,
    ):
        yield swift


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless Chromium (Debian's, driven by Playwright) for one test module; fails when it cannot start.

    Module-scoped, not session-scoped: while Playwright's synchronous API is started it keeps an event
    loop running in the thread, so every later ``asyncio.run()`` of the session would fail; it is
    stopped when the module ends.
    """
    with launched_chromium() as chromium:
        yield chromium
