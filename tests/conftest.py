"""Root fixtures: the real database services the suite runs against.

The PostgreSQL server is started by the test setup itself (``scripts/postgres.sh start``), once per
machine even under pytest-xdist, and left running when the session ends so the next run starts
instantly; ``make test`` (and ``make services-stop``) stops it. A server that cannot be started makes
the tests that need it ERROR, never skip.

Fixtures:

* ``postgres_admin_url`` (session): admin URL of the test server, e.g.
  ``postgresql+psycopg://glimpse@127.0.0.1:54329/postgres``.
* ``database_url`` (function, params ``sqlite`` / ``postgresql``): URL of a fresh, empty database;
  the PostgreSQL one is created for the test and dropped after it.
* ``sqlite_url`` (function): URL of a fresh, empty SQLite database file in ``tmp_path``.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES_DIR = REPO_ROOT / ".test-services"
POSTGRES_SCRIPT = REPO_ROOT / "scripts" / "postgres.sh"
POSTGRES_URL_ENV = "GLIMPSE_TEST_POSTGRES_URL"
POSTGRES_START_TIMEOUT = 300  # seconds; the first start may install the server with apt-get


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


def _start_postgres() -> str:
    SERVICES_DIR.mkdir(exist_ok=True)
    # Every xdist worker gets here; the lock makes the first one start the server while the others
    # wait, and the script's `start` is idempotent, so they then just read the URL.
    with FileLock(str(SERVICES_DIR / "postgres.lock"), timeout=POSTGRES_START_TIMEOUT + 60):
        try:
            proc = subprocess.run(
                ["bash", str(POSTGRES_SCRIPT), "start"],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=POSTGRES_START_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"could not run `scripts/postgres.sh start`: {exc}", pytrace=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        pytest.fail(
            f"`scripts/postgres.sh start` failed with exit code {proc.returncode}; the tests marked "
            "`postgres` need this server.\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
            pytrace=False,
        )
    return lines[-1]


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


def _fresh_postgres_database(request: pytest.FixtureRequest) -> Iterator[str]:
    admin_url: str = request.getfixturevalue("postgres_admin_url")
    engine: sa.Engine = request.getfixturevalue("_postgres_admin_engine")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"glimpse_test_{worker}_{uuid.uuid4().hex[:12]}"
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _fresh_sqlite_database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'glimpse.db'}"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, empty database: an SQLite file, or a new PostgreSQL database dropped after."""
    if request.param == "sqlite":
        yield _fresh_sqlite_database(tmp_path)
    else:
        yield from _fresh_postgres_database(request)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh, empty SQLite database file (no services needed)."""
    return _fresh_sqlite_database(tmp_path)
