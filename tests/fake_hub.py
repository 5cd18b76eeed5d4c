"""A loopback stand-in for the Hugging Face Hub: what huggingface_hub's snapshot_download asks."""
import hashlib, json, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

class FakeHub:
    def __init__(self):
        self.repos = {}  # repo -> {"revisions": {name: sha}, "files": {sha: {path: bytes}}, "gated": bool}
        self.requests = []
        self.cut_after = None  # bytes of a file body sent before the connection drops
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo, files, revision="main", gated=False):
        sha = hashlib.sha1(json.dumps({k: hashlib.sha256(v).hexdigest() for k, v in files.items()}).encode()).hexdigest()
        entry = self.repos.setdefault(repo, {"revisions": {}, "files": {}, "gated": gated})
        entry["revisions"][revision] = sha
        entry["revisions"][sha] = sha
        entry["files"][sha] = dict(files)
        return sha

    def __enter__(self):
        self.thread.start(); return self

    def __exit__(self, *a):
        self.server.shutdown(); self.server.server_close()

    def _handler(self):
        hub = self
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a): pass
            def _error(self, code, error_code, message="error"):
                body = json.dumps({"error": message}).encode()
                self.send_response(code); self.send_header("X-Error-Code", error_code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(body)))
                self.end_headers(); self.wfile.write(body) if self.command != "HEAD" else None
            def _json(self, data):
                body = json.dumps(data).encode()
                self.send_response(200); self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
            def _repo(self, parts):
                repo = "/".join(parts[:2])
                entry = hub.repos.get(repo)
                if entry is None:
                    self._error(404, "RepoNotFound", f"Repository Not Found for url: {self.path}"); return None, None
                if entry["gated"] and not self.headers.get("authorization"):
                    self._error(401, "GatedRepo", "Access to model is restricted"); return None, None
                return repo, entry
            def do_HEAD(self): self.do_GET()
            def do_GET(self):
                path = unquote(urlparse(self.path).path)
                hub.requests.append((self.command, path))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"]:
                    repo, entry = self._repo(parts[2:])
                    if entry is None: return
                    rest = parts[4:]
                    revision = rest[1] if len(rest) > 1 else "main"
                    sha = entry["revisions"].get(revision)
                    if sha is None:
                        return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                    if rest and rest[0] == "tree":
                        files = entry["files"][sha]
                        return self._json([{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()} for p, b in files.items()])
                    return self._json({"id": repo, "modelId": repo, "sha": sha, "siblings": [{"rfilename": p} for p in entry["files"][sha]]})
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo, entry = self._repo(parts)
                    if entry is None: return
                    sha = entry["revisions"].get(parts[3])
                    if sha is None:
                        return self._error(404, "RevisionNotFound", f"Invalid rev id: {parts[3]}")
                    name = "/".join(parts[4:])
                    body = entry["files"][sha].get(name)
                    if body is None:
                        return self._error(404, "EntryNotFound", f"{name} does not exist")
                    self.send_response(200)
                    self.send_header("X-Repo-Commit", sha); self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                    self.send_header("Content-Length", str(len(body))); self.end_headers()
                    if self.command == "GET":
                        if hub.cut_after is not None:
                            self.wfile.write(body[: hub.cut_after]); self.wfile.flush()
                            self.connection.close(); return
                        self.wfile.write(body)
                    return
                self._error(404, "NotFound")
        return Handler
