"""registry_image_info against a small real HTTP registry double: basic and bearer-token auth."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import ClassVar

import pytest

from ansible_collections.nanoclaw.provision.plugins.modules import registry_image_info as mod

CONFIG_DIGEST = "sha256:" + "c" * 64
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": CONFIG_DIGEST, "size": 1},
        "layers": [],
    }
).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
USER, PASSWORD, TOKEN = "ci", "s3cret", "tok-123"


class Handler(BaseHTTPRequestHandler):
    mode = "basic"
    tokens_issued: ClassVar[list[str]] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes = b"{}", headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: PLR0911 - one return per answer of the double
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        auth = self.headers.get("Authorization")
        base = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"
        if self.path.startswith("/token"):
            if auth != basic:
                return self._send(401)
            type(self).tokens_issued.append(self.path)
            # Like a real token service: the token is only good for the scope asked for.
            scoped = "repository%3Ans%2Fapp%3Apull" in self.path
            return self._send(200, json.dumps({"token": TOKEN + ("-repo" if scoped else "")}).encode())
        if self.mode == "basic" and auth != basic:
            return self._send(401, headers={"WWW-Authenticate": 'Basic realm="test"'})
        wanted = f"Bearer {TOKEN}" + ("" if self.path == "/v2/" else "-repo")
        if self.mode == "bearer" and auth != wanted:
            challenge = f'Bearer realm="{base}/token",service="double"'
            if self.path != "/v2/":
                challenge += ',scope="repository:ns/app:pull"'
            return self._send(401, headers={"WWW-Authenticate": challenge})
        if self.path == "/v2/":
            return self._send(200)
        if self.path == "/v2/ns/app/manifests/present":
            return self._send(
                200, MANIFEST, {"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Docker-Content-Digest": MANIFEST_DIGEST}
            )
        return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def client(address: str, username: str | None = USER, password: str | None = PASSWORD) -> mod.Registry:
    params = {
        "registry": address,
        "scheme": "http",
        "username": username,
        "password": password,
        "ca_path": None,
        "validate_certs": True,
        "timeout": 5,
    }
    return mod.Registry(SimpleNamespace(params=params))


@pytest.mark.parametrize("mode", ["basic", "bearer"])
def test_reads_digest_and_config_digest_of_present_and_absent_tags(server, mode, monkeypatch):
    monkeypatch.setattr(Handler, "mode", mode)
    reg = client(server)
    reg.get("/v2/", None)
    present = reg.manifest("ns/app", "present")
    assert present == {
        "present": True,
        "digest": MANIFEST_DIGEST,
        "config_digest": CONFIG_DIGEST,
        "media_type": "application/vnd.oci.image.manifest.v1+json",
    }
    assert reg.manifest("ns/app", "absent")["present"] is False


def test_bearer_token_is_fetched_again_for_the_repository_scope(server, monkeypatch):
    monkeypatch.setattr(Handler, "mode", "bearer")
    monkeypatch.setattr(Handler, "tokens_issued", [])
    reg = client(server)
    reg.get("/v2/", None)
    reg.manifest("ns/app", "present")
    assert any("scope=repository%3Ans%2Fapp%3Apull" in path for path in Handler.tokens_issued)


@pytest.mark.parametrize("mode", ["basic", "bearer"])
def test_wrong_password_names_the_registry_and_the_user(server, mode, monkeypatch):
    monkeypatch.setattr(Handler, "mode", mode)
    with pytest.raises(mod.RegistryError, match=rf"registry {server} rejected the credentials of user 'ci'"):
        client(server, password="wrong").get("/v2/", None)


def test_missing_credentials_are_reported(server, monkeypatch):
    monkeypatch.setattr(Handler, "mode", "basic")
    with pytest.raises(mod.RegistryError, match="requires credentials and none were given"):
        client(server, username=None, password=None).get("/v2/", None)


def test_unreachable_registry_is_named():
    with pytest.raises(mod.RegistryError, match=r"cannot reach registry 127\.0\.0\.1:9"):
        client("127.0.0.1:9").get("/v2/", None)


# ------------------------------------------------------------------ redirects
class Recorder(BaseHTTPRequestHandler):
    """The redirect target: records the Authorization header each request brought."""

    seen: ClassVar[list[str | None]] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).seen.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        self.send_header("Content-Length", str(len(MANIFEST)))
        self.end_headers()
        self.wfile.write(MANIFEST)


class Redirector(Handler):
    """The registry: basic auth, then a redirect of the manifest to ``target`` (host:port of the Recorder)."""

    target = ""

    def do_GET(self):
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != basic:
            return self._send(401, headers={"WWW-Authenticate": 'Basic realm="test"'})
        if self.path == "/v2/ns/app/manifests/same-host":
            # a redirect within the registry keeps the credentials: the registry itself checks them
            return self._send(307, headers={"Location": "/v2/ns/app/manifests/present"})
        if self.path == "/v2/ns/app/manifests/present":
            return self._send(200, MANIFEST, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        return self._send(307, headers={"Location": f"http://{self.target}/blob-store{self.path}"})


def _serve(handler):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_authorization_is_not_sent_to_another_host_on_redirect(monkeypatch):
    recorder = _serve(Recorder)
    registry = _serve(Redirector)
    try:
        monkeypatch.setattr(Recorder, "seen", [])
        # 127.0.0.1 redirects to localhost: another host name, as a registry redirecting to a CDN
        monkeypatch.setattr(Redirector, "target", f"localhost:{recorder.server_address[1]}")
        reg = client(f"127.0.0.1:{registry.server_address[1]}")
        result = reg.manifest("ns/app", "elsewhere")
        assert result["present"] is True
        assert result["config_digest"] == CONFIG_DIGEST
        assert Recorder.seen == [None], "the registry's credentials went to another host"
        # ... while a redirect on the same host keeps them (the registry asks for them again)
        assert reg.manifest("ns/app", "same-host")["present"] is True
    finally:
        for httpd in (recorder, registry):
            httpd.shutdown()
            httpd.server_close()


@pytest.mark.parametrize(
    ("source", "target", "keeps"),
    [
        ("https://reg.example/v2/x", "https://reg.example/v2/y", True),
        ("https://reg.example/v2/x", "https://cdn.reg.example/blob", True),  # subdomain, as Go
        ("https://reg.example/v2/x", "https://evil.example/blob", False),
        ("https://reg.example/v2/x", "https://reg.example.evil/blob", False),
        ("https://reg.example/v2/x", "http://reg.example/v2/y", False),  # downgrade to clear text
        ("http://127.0.0.1:5000/v2/x", "http://127.0.0.1:5001/v2/y", True),  # same host, as Go
        ("http://127.0.0.1:5000/v2/x", "http://localhost:5000/v2/y", False),
    ],
)
def test_which_redirects_keep_the_credentials(source, target, keeps):
    assert mod.keeps_credentials(source, target) is keeps
