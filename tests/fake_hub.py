"""A small stand-in for the Hugging Face Hub: a real HTTP server on 127.0.0.1 (random free port).

It answers what ``huggingface_hub`` (2.4) sends, as read from its source:

- ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}``: 200 with ``X-Repo-Commit`` (40 hex),
  a quoted ``ETag`` (the sha256 of the body) and ``Content-Length``; ``Range: bytes=N-`` gets a 206.
  Errors as the Hub sends them: 404 + ``X-Error-Code: RepoNotFound`` (unknown repo; 401 for a private
  repo without the right token), ``GatedRepo`` (401 without token, 403 with a wrong one),
  ``RevisionNotFound``, ``EntryNotFound``.
- Uploads: ``POST /api/repos/create`` (409 when it exists), ``POST /api/validate-yaml``,
  ``POST /api/models/{repo_id}/preupload/{rev}`` (every file "regular", so contents travel inline) and
  ``POST /api/models/{repo_id}/commit/{rev}`` (NDJSON; recorded, and the files become downloadable).
  Every other ``/api/...`` path is a 404.
- Plain files for URL sources: ``GET /files/...`` (see :meth:`FakeHub.add_url`).

Every request is recorded in ``requests``; created repos in ``created`` and commits in ``commits``.
``interrupt(path, times, then_status)`` makes the next GETs of a path stop half-way through the body.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
API_REPO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<action>preupload|commit)/(?P<rev>[^/]+)$")


@dataclass
class Repo:
    files: dict[str, bytes] = field(default_factory=dict)
    private: bool = False
    gated: bool = False
    commit: str = ""

    def bump(self, repo_id: str) -> str:
        """A new commit id derived from the repo's content."""
        digest = hashlib.sha1(repo_id.encode())
        for name in sorted(self.files):
            digest.update(name.encode() + hashlib.sha256(self.files[name]).digest())
        self.commit = digest.hexdigest()
        return self.commit


@dataclass
class Commit:
    repo_id: str
    revision: str
    summary: str
    files: dict[str, bytes]
    oid: str


@dataclass
class Interruption:
    times: int
    then_status: int | None = None


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class FakeHub:
    """The server plus the state it serves; use as a context manager or call start()/stop()."""

    def __init__(self, token: str = "hf_fake_token") -> None:
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.urls: dict[str, bytes] = {}
        self.requests: list[Seen] = []
        self.created: list[dict] = []
        self.commits: list[Commit] = []
        self.interruptions: dict[str, Interruption] = {}
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- content ------------------------------------------------------------------------------

    def add_repo(self, repo_id: str, private: bool = False, gated: bool = False) -> Repo:
        repo = self.repos.setdefault(repo_id, Repo())
        repo.private, repo.gated = private, gated
        repo.bump(repo_id)
        return repo

    def add_file(self, repo_id: str, filename: str, data: bytes, private: bool = False, gated: bool = False) -> str:
        """Serve ``data`` as ``filename`` of ``repo_id``; returns the repo's commit id."""
        repo = self.repos.get(repo_id) or self.add_repo(repo_id, private, gated)
        repo.files[filename] = data
        return repo.bump(repo_id)

    def add_url(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``/files/<path>``; returns the full URL."""
        self.urls[urlsplit(f"/files/{path}").path] = data
        return f"{self.endpoint}/files/{path}"

    def interrupt(self, path: str, times: int = 1, then_status: int | None = None) -> None:
        """The next ``times`` GETs of ``path`` send half the body and drop the connection; then ``then_status``."""
        self.interruptions[path] = Interruption(times, then_status)

    def resolve_path(self, repo_id: str, filename: str, revision: str = "main") -> str:
        return f"/{repo_id}/resolve/{revision}/{filename}"

    def seen(self, method: str | None = None, prefix: str = "") -> list[Seen]:
        with self.lock:
            return [r for r in self.requests if (method is None or r.method == method) and r.path.startswith(prefix)]

    # -- server -------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            state = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    state: FakeHub

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence the default stderr log
        return

    # -- plumbing -----------------------------------------------------------------------------

    def _record(self) -> str:
        path = urlsplit(self.path).path
        with self.state.lock:
            self.state.requests.append(Seen(self.command, path, {k.lower(): v for k, v in self.headers.items()}))
        return path

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        if commit:
            headers["X-Repo-Commit"] = commit
        self._json(status, {"error": message}, headers)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _token_ok(self) -> bool | None:
        """True: the right token; False: a wrong one; None: none sent."""
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        return auth[len("Bearer "):] == self.state.token

    # -- downloads ----------------------------------------------------------------------------

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self._download(self._record())

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._download(self._record())

    def _download(self, path: str) -> None:
        if path in self.state.urls:
            return self._serve(path, self.state.urls[path], {})
        match = RESOLVE.match(path)
        if match is None:
            return self._error(404, None, "Not Found")
        repo_id, revision, filename = match["repo"], unquote(match["rev"]), unquote(match["file"])
        repo = self.state.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        token = self._token_ok()
        if repo.private and token is not True:
            return self._error(401, "RepoNotFound", "Invalid username or password.")
        if repo.gated and token is not True:
            status = 401 if token is None else 403
            return self._error(status, "GatedRepo", "Access to this model is restricted.")
        if revision not in ("main", repo.commit):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        if filename not in repo.files:
            return self._error(404, "EntryNotFound", "Entry not found", repo.commit)
        self._serve(path, repo.files[filename], {"X-Repo-Commit": repo.commit})

    def _serve(self, path: str, data: bytes, headers: dict[str, str]) -> None:
        headers = {"ETag": f'"{hashlib.sha256(data).hexdigest()}"', "Accept-Ranges": "bytes", **headers}
        plan = self.state.interruptions.get(path)
        if self.command == "GET" and plan is not None:
            if plan.times > 0:
                plan.times -= 1
                return self._cut(data, headers)
            if plan.then_status:
                return self._error(plan.then_status, None, "Service Unavailable")
        start = 0
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if wanted and self.command == "GET":
            start = int(wanted.group(1))
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            return self._send(206, data[start:], headers)
        self.send_response(200)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data)

    def _cut(self, data: bytes, headers: dict[str, str]) -> None:
        """Promise the whole body, send half, drop the connection."""
        self.send_response(200)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- uploads ------------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        path = self._record()
        body = self._body()
        if path == "/api/validate-yaml":
            return self._json(200, {"errors": [], "warnings": []})
        if path == "/api/repos/create":
            return self._create(json.loads(body or b"{}"))
        match = API_REPO.match(path)
        if match is None:
            return self._error(404, None, "Not Found")
        if self._token_ok() is not True:
            return self._error(401, None, "Invalid credentials in Authorization header")
        repo = self.state.repos.get(match["repo"])
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        if match["action"] == "preupload":
            files = json.loads(body)["files"]
            return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        return self._commit(match["repo"], unquote(match["rev"]), repo, body)

    def _create(self, payload: dict) -> None:
        if self._token_ok() is not True:
            return self._error(401, None, "Invalid credentials in Authorization header")
        name, org = payload.get("name", ""), payload.get("organization")
        repo_id = f"{org}/{name}" if org else name
        with self.state.lock:
            self.state.created.append(payload)
        url = f"{self.state.endpoint}/{repo_id}"
        if repo_id in self.state.repos:
            return self._json(409, {"error": "You already created this model repo", "url": url})
        private = bool(payload.get("private")) or payload.get("visibility") == "private"
        self.state.add_repo(repo_id, private=private)
        return self._json(200, {"url": url, "name": repo_id})

    def _commit(self, repo_id: str, revision: str, repo: Repo, body: bytes) -> None:
        summary, files = "", {}
        for line in body.splitlines():
            item = json.loads(line)
            if item["key"] == "header":
                summary = item["value"]["summary"]
            elif item["key"] == "file":
                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
        repo.files.update(files)
        oid = repo.bump(repo_id)
        with self.state.lock:
            self.state.commits.append(Commit(repo_id, revision, summary, files, oid))
        self._json(200, {"commitUrl": f"{self.state.endpoint}/{repo_id}/commit/{oid}", "commitOid": oid, "success": True})


CLEARED_ENV = (
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE", "NST_WEIGHTS_DIR", "HF_TOKEN_PATH", "XDG_CACHE_HOME",
)


def point_client_at(hub: FakeHub, monkeypatch, root: Path) -> None:
    """Environment for a test: the real client talks to ``hub``; caches and the registry live under ``root``."""
    import huggingface_hub.constants

    for name in CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    monkeypatch.setenv("NST_REGISTRY", str(root / "registry.toml"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # huggingface_hub copies HF_HUB_OFFLINE at import; nst.weights reads the variable itself at call time
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
