#!/usr/bin/python
# Copyright: nanoclaw.provision maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: registry_image_info
short_description: Read what an OCI registry holds for image tags
version_added: 0.1.0
description:
  - Asks a registry that speaks the OCI distribution (Docker registry v2) API which manifest each
    of the given tags points to, without pulling anything and without an engine.
  - Returns the manifest digest and the image configuration digest of each tag. The configuration
    digest equals the image ID of the local image that was pushed, so a caller can tell whether the
    registry already holds a locally built image.
  - Authenticates with HTTP basic auth or the bearer token flow, whichever the registry asks for.
  - Follows redirects itself and drops the C(Authorization) header on a redirect to another host
    (not the same host or a subdomain of it) or from https to http, as Go's net/http does.
  - Fails with a message naming the registry when it cannot be reached, when its certificate is not
    trusted, or when it rejects the credentials.
author:
  - nanoclaw.provision maintainers (@nanoclaw-provision)
options:
  registry:
    description:
      - The registry as C(host) or C(host:port), without scheme.
    type: str
    required: true
  repository:
    description:
      - The repository inside the registry, for example C(nanoclaw/nanoclaw-agent).
    type: str
    required: true
  tags:
    description:
      - The tags to look up.
    type: list
    elements: str
    required: true
  username:
    description:
      - User name for the registry. Anonymous access when omitted.
    type: str
  password:
    description:
      - Password or token of O(username).
    type: str
  ca_path:
    description:
      - PEM file of the certificate authority that signed the registry's certificate.
    type: path
  validate_certs:
    description:
      - Verify the registry's TLS certificate. Set to V(false) only for a loopback registry.
    type: bool
    default: true
  scheme:
    description:
      - Protocol of the registry API.
    type: str
    choices: [https, http]
    default: https
  timeout:
    description:
      - Seconds to wait for each request.
    type: int
    default: 30
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - nanoclaw.provision.attributes
  - nanoclaw.provision.attributes.check_mode_no_diff
notes:
  - Works on the controller or on a managed host; needs only Python.
"""

EXAMPLES = r"""
- name: Look up the agent image in the registry
  nanoclaw.provision.registry_image_info:
    registry: registry.example.internal:5000
    repository: nanoclaw/nanoclaw-agent
    tags: [latest, 0123456789ab]
    username: ci
    password: "{{ registry_password }}"
    ca_path: /etc/pki/internal-ca.pem
  register: remote
"""

RETURN = r"""
images:
  description: One entry per requested tag.
  returned: always
  type: dict
  sample:
    latest:
      present: true
      digest: sha256:4f1e...
      config_digest: sha256:9a0c...
      media_type: application/vnd.oci.image.manifest.v1+json
    0123456789ab:
      present: false
      digest: null
      config_digest: null
      media_type: null
"""

import base64
import hashlib
import json
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import urlencode, urljoin, urlsplit
from ansible.module_utils.urls import open_url

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


class RegistryError(Exception):
    pass


REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10


def keeps_credentials(source, target):
    """Whether a redirect from ``source`` to ``target`` may carry the Authorization header.

    As Go's net/http (which docker and podman use) does: only to the same host or a subdomain of
    it; and never from https down to http, where the header would cross the network in clear.
    """
    src, dst = urlsplit(source), urlsplit(target)
    if src.scheme == "https" and dst.scheme != "https":
        return False
    src_host, dst_host = (src.hostname or "").lower(), (dst.hostname or "").lower()
    return dst_host == src_host or dst_host.endswith("." + src_host)


class Registry:
    def __init__(self, module):
        p = module.params
        self.module = module
        self.name = p["registry"]
        self.base = "{}://{}".format(p["scheme"], p["registry"])
        self.username = p["username"]
        self.password = p["password"]
        self.ca_path = p["ca_path"]
        self.validate_certs = p["validate_certs"]
        self.timeout = p["timeout"]
        self.authorization = None

    def _open(self, url, headers):
        """GET ``url``, following redirects here: urllib's handler would resend Authorization anywhere."""
        headers = dict(headers)
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                return open_url(
                    url,
                    headers=headers,
                    method="GET",
                    validate_certs=self.validate_certs,
                    ca_path=self.ca_path,
                    timeout=self.timeout,
                    follow_redirects="none",
                )
            except HTTPError as err:
                location = err.headers.get("Location") if err.code in REDIRECTS and err.headers else None
                if not location:
                    raise
                target = urljoin(url, location)
                if not keeps_credentials(url, target):
                    headers.pop("Authorization", None)
                url = target
        raise RegistryError(f"registry {self.name}: more than {MAX_REDIRECTS} redirects")

    def _request(self, path, accept=None):
        headers = {}
        if accept:
            headers["Accept"] = accept
        if self.authorization:
            headers["Authorization"] = self.authorization
        try:
            resp = self._open(self.base + path, headers)
            return resp.getcode(), resp.headers, resp.read()
        except HTTPError as err:
            return err.code, err.headers, err.read()
        except URLError as err:
            raise RegistryError(f"cannot reach registry {self.name}: {to_native(err.reason)}") from None
        except Exception as err:  # ssl and socket errors surface as several types
            raise RegistryError(f"cannot reach registry {self.name}: {to_native(err)}") from None

    def _basic(self):
        token = base64.b64encode((f"{self.username}:{self.password}").encode())
        return "Basic " + token.decode("ascii")

    def _authenticate(self, challenge, scope):
        scheme, _sep, params = (challenge or "").partition(" ")
        if scheme.lower() == "basic":
            if not self.username:
                raise RegistryError(f"registry {self.name} requires credentials and none were given")
            self.authorization = self._basic()
            return
        if scheme.lower() != "bearer":
            raise RegistryError(f"registry {self.name} asks for unsupported authentication {challenge!r}")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if "realm" not in fields:
            raise RegistryError(f"registry {self.name} sent a bearer challenge without realm")
        query = {}
        if fields.get("scope") or scope:
            query["scope"] = fields.get("scope") or scope
        if "service" in fields:
            query["service"] = fields["service"]
        headers = {"Authorization": self._basic()} if self.username else {}
        try:
            url = fields["realm"] + ("?" + urlencode(query) if query else "")
            resp = self._open(url, headers)
            body = json.loads(resp.read())
        except HTTPError as err:
            if err.code in (401, 403):
                raise RegistryError(f"registry {self.name} rejected the credentials of user {self.username!r}") from None
            raise RegistryError(f"registry {self.name} token service answered HTTP {err.code}") from None
        except (URLError, ValueError) as err:
            raise RegistryError(f"registry {self.name} token service failed: {to_native(err)}") from None
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"registry {self.name} token service returned no token")
        self.authorization = "Bearer " + token

    def get(self, path, scope, accept=None):
        status, headers, body = self._request(path, accept)
        basic_sent = (self.authorization or "").startswith("Basic ")
        if status == 401 and not basic_sent:
            # First contact, or a bearer token whose scope does not cover this path.
            self._authenticate(headers.get("WWW-Authenticate"), scope)
            status, headers, body = self._request(path, accept)
        if status == 401:
            who = f"user {self.username!r}" if self.username else "anonymous access"
            raise RegistryError(f"registry {self.name} rejected the credentials of {who}")
        if status == 403:
            raise RegistryError(f"registry {self.name} denied access to {path}")
        return status, headers, body

    def manifest(self, repository, tag):
        scope = f"repository:{repository}:pull"
        status, headers, body = self.get(f"/v2/{repository}/manifests/{tag}", scope, ACCEPT)
        if status == 404:
            return {"present": False, "digest": None, "config_digest": None, "media_type": None}
        if status != 200:
            raise RegistryError(f"registry {self.name} answered HTTP {status} for {repository}:{tag}")
        digest = headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest()
        try:
            doc = json.loads(body)
        except ValueError:
            raise RegistryError(f"registry {self.name} returned a manifest that is not JSON for {repository}:{tag}") from None
        media_type = doc.get("mediaType") or headers.get("Content-Type")
        config = doc.get("config") or {}
        return {"present": True, "digest": digest, "config_digest": config.get("digest"), "media_type": media_type}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            registry=dict(type="str", required=True),
            repository=dict(type="str", required=True),
            tags=dict(type="list", elements="str", required=True),
            username=dict(type="str"),
            password=dict(type="str", no_log=True),
            ca_path=dict(type="path"),
            validate_certs=dict(type="bool", default=True),
            scheme=dict(type="str", default="https", choices=["https", "http"]),
            timeout=dict(type="int", default=30),
        ),
        required_together=[["username", "password"]],
        supports_check_mode=True,
    )
    if "/" in module.params["registry"] or "://" in module.params["registry"]:
        module.fail_json(msg="registry must be host or host:port without scheme or path, got {!r}".format(module.params["registry"]))
    registry = Registry(module)
    images = {}
    try:
        # Ping first: a clear message for an unreachable or untrusted registry.
        registry.get("/v2/", None)
        for tag in module.params["tags"]:
            images[tag] = registry.manifest(module.params["repository"], tag)
    except RegistryError as err:
        module.fail_json(msg=to_native(err), registry=module.params["registry"])
    module.exit_json(changed=False, images=images)


if __name__ == "__main__":
    main()
