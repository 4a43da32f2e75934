"""A real Keystone on loopback, Glimpse validating its tokens, and keystonemiddleware as a recording proxy.

:class:`KeystoneServer` runs the ``keystone`` package (a Debian/PyPI install of the real identity
service, not a stand-in) on 127.0.0.1 with an SQLite database and fernet tokens. The database is set
up once per test run (``keystone-manage db_sync``, ``fernet_setup``, ``credential_setup``,
``bootstrap``: about 15 s) into a template directory under pytest's shared base temp, and each
server starts from a copy of it.

:class:`AuthTokenProxy` is what a Glance deployment puts in front of the image API: keystonemiddleware's
``auth_token`` validates every ``X-Auth-Token`` against that Keystone and passes the identity on as
``X-Project-Id``, ``X-User-Id`` and ``X-Roles``; the request then goes to a live ``glimpse-server``,
whose no-auth mode reads exactly those headers. It records the tokens it sees, for the client tests of
retries. :func:`protected_server` is the real deployment: Glimpse validating tokens itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
from filelock import FileLock

from livesupport import Server, free_port, venv_script
from secretcheck import register_secret

ADMIN_PASSWORD = "admin-pw"
register_secret(ADMIN_PASSWORD, "the Keystone admin password")
#: Seconds a Keystone-protected Glimpse believes a validated token without asking Keystone again.
CACHE_TIME = 2
REGION = "RegionOne"
START_TIMEOUT = 60.0
SERVE_SCRIPT = Path(__file__).with_name("keystone_serve.py")
# What the proxy does not pass on: the hop-by-hop headers. (The identity headers are the
# middleware's: it removes any a client sent and sets its own from the validated token.)
_DROP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length"}

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]


def _config(root: Path, cache: bool = False) -> str:
    return (
        # Keystone's in-process cache: without it every call re-reads the token's roles and catalog
        # from the database (0.4 s a call, against 0.06 s), which the many calls of Tempest's dynamic
        # credentials feel. It is the only process, so the cache is never stale.
        ("[cache]\nenabled = true\nbackend = dogpile.cache.memory\n" if cache else "")
        + "[DEFAULT]\nuse_stderr = true\n"
        f"[database]\nconnection = sqlite:///{root / 'keystone.db'}\n"
        f"[fernet_tokens]\nkey_repository = {root / 'fernet-keys'}\n"
        f"[fernet_receipts]\nkey_repository = {root / 'fernet-keys'}\n"
        f"[credential]\nkey_repository = {root / 'credential-keys'}\n"
        "[token]\nprovider = fernet\n"
        # bcrypt's fewest rounds: a password check costs milliseconds, not a quarter of a second.
        "[identity]\npassword_hash_rounds = 4\n"
    )


def _manage(root: Path, *args: str) -> None:
    done = subprocess.run(
        [str(venv_script("keystone-manage")), "--config-file", str(root / "keystone.conf"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"keystone-manage {args[0]} failed ({done.returncode}):\n{done.stderr[-4000:]}")


def _template(base: Path) -> Path:
    """The set-up database and keys, made once per test run (all xdist workers share it)."""
    template = base / "keystone-template-2"  # -2: hashes made with the fewest rounds
    with FileLock(str(base / "keystone-template.lock")):
        if (template / "ready").exists():
            return template
        shutil.rmtree(template, ignore_errors=True)
        template.mkdir(parents=True)
        (template / "keystone.conf").write_text(_config(template))
        _manage(template, "db_sync")
        for command in ("fernet_setup", "credential_setup"):
            _manage(template, command, "--keystone-user", "root", "--keystone-group", "root")
        # The endpoints of Keystone itself are fixed up by KeystoneServer once its port is known.
        url = "http://127.0.0.1:5000/v3"
        _manage(
            template,
            "bootstrap",
            "--bootstrap-password",
            ADMIN_PASSWORD,
            "--bootstrap-region-id",
            REGION,
            "--bootstrap-public-url",
            url,
            "--bootstrap-internal-url",
            url,
        )
        (template / "ready").write_text("")
    return template


@dataclass(frozen=True)
class Account:
    """A user with a password and a project-scoped role assignment."""

    user_id: str
    user_name: str
    password: str
    project_id: str
    project_name: str


class KeystoneServer:
    """A running Keystone; :meth:`admin` is an httpx client with an admin token.

    :meth:`stop` and :meth:`start` take it down and bring it back on the same port and data.
    ``cache`` turns on Keystone's in-process cache (for the Tempest run's hundreds of calls).
    """

    def __init__(self, base: Path, root: Path, cache: bool = False) -> None:
        template = _template(base)
        shutil.copytree(template, root, dirs_exist_ok=True)
        (root / "keystone.conf").write_text(_config(root, cache))
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (root / "keystone.log").open("ab")
        self._process: subprocess.Popen[bytes] | None = None
        try:
            self.start()
            self.admin = httpx.Client(base_url=f"{self.url}/v3", timeout=30.0)
            self.admin.headers["X-Auth-Token"] = self.token("admin", ADMIN_PASSWORD, "admin")
            self._fix_identity_endpoints()
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(SERVE_SCRIPT), str(self.root / "keystone.conf"), str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"keystone exited ({self._process.returncode}):\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/v3", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"keystone did not answer within {START_TIMEOUT}s:\n{self.log()}")

    def log(self) -> str:
        return (self.root / "keystone.log").read_text(errors="replace")[-4000:]

    def close(self) -> None:
        if getattr(self, "admin", None) is not None:
            self.admin.close()
        self.stop()
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the identity API, as an administrator --------------------------------------------------

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.admin.request(method, path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else {}

    def token(self, user: str, password: str, project: str | None) -> str:
        """A token for ``user`` (password method), scoped to ``project``, or to the system if ``None``."""
        scope: dict[str, Any] = (
            {"project": {"name": project, "domain": {"id": "default"}}}
            if project
            else {"system": {"all": True}}
        )
        identity = {
            "methods": ["password"],
            "password": {"user": {"name": user, "domain": {"id": "default"}, "password": password}},
        }
        return self._issue({"auth": {"identity": identity, "scope": scope}}, user)

    def application_credential(
        self, account: Account, name: str, expires_at: str | None = None
    ) -> tuple[str, str]:
        """A new application credential of ``account`` (on its project): ``(id, secret)``.

        Keystone ends the tokens it gives for the credential at ``expires_at`` (ISO 8601, UTC) at the latest.
        """
        token = self.token(account.user_name, account.password, account.project_name)
        credential: dict[str, Any] = {"name": name}
        if expires_at:
            credential["expires_at"] = expires_at
        response = httpx.post(
            f"{self.url}/v3/users/{account.user_id}/application_credentials",
            json={"application_credential": credential},
            headers={"X-Auth-Token": token},
            timeout=30.0,
        )
        if response.status_code != 201:
            raise RuntimeError(f"application credential: {response.status_code} {response.text}")
        made = response.json()["application_credential"]
        register_secret(str(made["secret"]), f"the secret of application credential {made['id']}")
        return str(made["id"]), str(made["secret"])

    def application_credential_token(self, credential_id: str, secret: str) -> str:
        identity = {
            "methods": ["application_credential"],
            "application_credential": {"id": credential_id, "secret": secret},
        }
        return self._issue({"auth": {"identity": identity}}, credential_id)

    def _issue(self, body: dict[str, Any], who: str) -> str:
        response = httpx.post(f"{self.url}/v3/auth/tokens", json=body, timeout=30.0)
        if response.status_code != 201:
            raise RuntimeError(f"token for {who}: {response.status_code} {response.text}")
        token = response.headers["X-Subject-Token"]
        register_secret(token, f"a Keystone token of {who}")
        return token

    def _role_id(self, name: str) -> str:
        roles = self._call("GET", f"/roles?name={name}")["roles"]
        if not roles:  # bootstrap makes admin, member and reader; others (service) on first use
            return str(self._call("POST", "/roles", {"role": {"name": name}})["role"]["id"])
        return str(roles[0]["id"])

    def grant_system(self, account: Account, role: str) -> None:
        """Give ``account``'s user ``role`` on the system (for system-scoped tokens)."""
        self._call("PUT", f"/system/users/{account.user_id}/roles/{self._role_id(role)}")

    def _fix_identity_endpoints(self) -> None:
        for endpoint in self._call("GET", "/endpoints")["endpoints"]:
            self._call("PATCH", f"/endpoints/{endpoint['id']}", {"endpoint": {"url": f"{self.url}/v3"}})

    def account(self, name: str, password: str, roles: Iterable[str]) -> Account:
        """A project and a user of the same name, the user holding ``roles`` on the project."""
        project = self._call("POST", "/projects", {"project": {"name": name, "domain_id": "default"}})
        user = self._call(
            "POST", "/users", {"user": {"name": name, "password": password, "domain_id": "default"}}
        )
        project_id, user_id = project["project"]["id"], user["user"]["id"]
        for role in roles:
            self._call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{self._role_id(role)}")
        register_secret(password, f"the Keystone password of {name}")
        return Account(user_id, name, password, project_id, name)

    def member_of(self, project_name: str, name: str, password: str, roles: Iterable[str]) -> Account:
        """A user ``name`` holding ``roles`` on ``project_name``, which is created if it is missing
        (several service users share the ``service`` project)."""
        found = self._call("GET", f"/projects?name={project_name}")["projects"]
        if found:
            project_id = str(found[0]["id"])
        else:
            made = self._call(
                "POST", "/projects", {"project": {"name": project_name, "domain_id": "default"}}
            )
            project_id = str(made["project"]["id"])
        user = self._call(
            "POST", "/users", {"user": {"name": name, "password": password, "domain_id": "default"}}
        )
        user_id = str(user["user"]["id"])
        for role in roles:
            self._call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{self._role_id(role)}")
        register_secret(password, f"the Keystone password of {name}")
        return Account(user_id, name, password, project_id, project_name)

    def set_password(self, account: Account, password: str) -> None:
        register_secret(password, f"the new Keystone password of {account.user_name}")
        """Change a user's password; Keystone then revokes the tokens the user holds."""
        self._call("PATCH", f"/users/{account.user_id}", {"user": {"password": password}})

    def revoke(self, token: str) -> None:
        response = self.admin.delete("/auth/tokens", headers={"X-Subject-Token": token})
        if response.status_code != 204:
            raise RuntimeError(f"revoking a token: {response.status_code} {response.text}")

    def image_service(self, endpoints: dict[tuple[str, str], str]) -> None:
        """An ``image`` service whose endpoints are ``{(interface, region): url}``."""
        self.service("image", "glance", endpoints)

    def service(self, service_type: str, name: str, endpoints: dict[tuple[str, str], str]) -> None:
        """A service of ``service_type`` in the catalog, with endpoints ``{(interface, region): url}``."""
        regions = {r["id"] for r in self._call("GET", "/regions")["regions"]}
        service = self._call("POST", "/services", {"service": {"type": service_type, "name": name}})
        for (interface, region), url in endpoints.items():
            if region not in regions:
                self._call("POST", "/regions", {"region": {"id": region}})
                regions.add(region)
            endpoint = {
                "service_id": service["service"]["id"],
                "interface": interface,
                "region_id": region,
                "url": url,
            }
            self._call("POST", "/endpoints", {"endpoint": endpoint})

    def service_id(self, service_type: str) -> str:
        return str(self._call("GET", f"/services?type={service_type}")["services"][0]["id"])

    def register_limits(self, service_type: str, region: str, defaults: dict[str, int]) -> None:
        """Registered limits (every project's defaults) of ``service_type``'s service in ``region``."""
        service_id = self.service_id(service_type)
        body = [
            {"service_id": service_id, "region_id": region, "resource_name": name, "default_limit": limit}
            for name, limit in defaults.items()
        ]
        self._call("POST", "/registered_limits", {"registered_limits": body})

    def project_limit(self, service_type: str, region: str, project_id: str, name: str, limit: int) -> None:
        """A limit of one project, over the registered default."""
        body = {
            "service_id": self.service_id(service_type),
            "region_id": region,
            "project_id": project_id,
            "resource_name": name,
            "resource_limit": limit,
        }
        self._call("POST", "/limits", {"limits": [body]})

    def endpoint_id(self, service_type: str, interface: str) -> str:
        service_id = self.service_id(service_type)
        found = self._call("GET", f"/endpoints?service_id={service_id}&interface={interface}")["endpoints"]
        return str(found[0]["id"])


def protected_server(
    root: Path, keystone: KeystoneServer, *, port: int | None = None, **extra: str
) -> Server:
    """A live ``glimpse-server serve`` with ``auth_strategy = keystone`` (as Glance's paste flavor) that
    validates tokens against ``keystone`` itself, on ``port`` (a free one when None); ``extra`` adds
    or replaces environment settings."""
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLIMPSE_", "OS_"))}
    section = "GLIMPSE_KEYSTONE_AUTHTOKEN__"
    env.update(
        {
            "GLIMPSE_DATA_DIR": str(root / "data"),
            "GLIMPSE_LOG_LEVEL": "WARNING",
            "GLIMPSE_PASTE_DEPLOY__FLAVOR": "keystone",
            f"{section}WWW_AUTHENTICATE_URI": keystone.url,
            f"{section}AUTH_URL": keystone.url,
            f"{section}AUTH_TYPE": "password",
            f"{section}USERNAME": "admin",
            f"{section}PASSWORD": ADMIN_PASSWORD,
            f"{section}PROJECT_NAME": "admin",
            f"{section}USER_DOMAIN_NAME": "Default",
            f"{section}PROJECT_DOMAIN_NAME": "Default",
            f"{section}TOKEN_CACHE_TIME": str(CACHE_TIME),
            f"{section}SERVICE_TOKEN_ROLES": "service",
            f"{section}SERVICE_TOKEN_ROLES_REQUIRED": "true",
            f"{section}HTTP_CONNECT_TIMEOUT": "3",
            **extra,
        }
    )
    server = Server(name="keystone-protected", port=port or free_port(), log_path=root / "server.log")
    server.start(env)
    server.wait_ready()
    return server


# -- keystonemiddleware in front of glimpse-server --------------------------------------------


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class AuthTokenProxy:
    """keystonemiddleware's ``auth_token`` (validating against ``keystone``) in front of ``upstream``.

    Requests under ``prefix`` are passed on without it, the way a cloud serves Glance under
    ``/image``. ``tokens()`` lists the ``X-Auth-Token`` of every request received, ``refused`` counts
    the ones the middleware answered 401. Validation results are not cached, so a revoked token is
    refused at once.
    """

    def __init__(self, upstream: str, keystone: KeystoneServer, prefix: str = "") -> None:
        from keystonemiddleware import auth_token

        self.prefix = prefix
        self.refused = 0
        self.paths: list[str] = []
        self._tokens: list[str | None] = []
        self._upstream = httpx.Client(base_url=upstream, timeout=90.0)
        checked = auth_token.AuthProtocol(
            self._forward,
            {
                "www_authenticate_uri": keystone.url,
                "auth_url": keystone.url,
                "auth_type": "password",
                "username": "admin",
                "password": ADMIN_PASSWORD,
                "project_name": "admin",
                "user_domain_id": "default",
                "project_domain_id": "default",
                "token_cache_time": "-1",
                "memcached_servers": "",
                "include_service_catalog": "false",
                "service_token_roles_required": "true",
            },
        )
        self._httpd = make_server(
            "127.0.0.1", 0, self._recording(checked), server_class=_ThreadingWSGIServer, handler_class=_Quiet
        )
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def tokens(self) -> list[str | None]:
        return list(self._tokens)

    def _recording(self, app: Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]) -> Any:
        def record(environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
            self._tokens.append(environ.get("HTTP_X_AUTH_TOKEN"))
            self.paths.append(environ.get("PATH_INFO", ""))

            def start(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                if status.startswith("401"):
                    self.refused += 1
                return start_response(status, headers, *exc)

            return app(environ, start)

        return record

    def _forward(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterator[bytes]:
        path = environ.get("PATH_INFO", "")
        if self.prefix:
            path = path.removeprefix(self.prefix)
        query = environ.get("QUERY_STRING")
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
            and value is not None
            and key[5:].replace("_", "-").lower() not in _DROP
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        response = self._upstream.request(
            environ["REQUEST_METHOD"], f"{path}?{query}" if query else path, headers=headers, content=body
        )
        hop = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
        out = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in hop]
        out.append(("Content-Length", str(len(response.content))))
        start_response(f"{response.status_code} {response.reason_phrase}", out)
        yield response.content

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._upstream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
