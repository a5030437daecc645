"""The harness's podman connection: containers.podman's, with pipelining.

Molecule's podman driver and the harness's own runs reach their targets with the connection
``podman``. The harness puts this directory on ANSIBLE_CONNECTION_PLUGINS and sets
ANSIBLE_PIPELINING (setup_env.tool_env), so that name resolves here first: the podman connection of
containers.podman 1.18.0 (what the pinned ``ansible`` ships), with pipelining, which upstream added
in containers.podman 1.18.1 (its connection rewrite) by attaching stdin (``podman exec -i``) when
Ansible pipes the module in. Without it every task costs a ``podman mount``, a directory made, a
file copied, a module run and the directory removed; with it, one ``podman exec``. Measured on a
Debian 13 target with 30 stat/file/copy/become tasks: 31 s wall and 21 CPU-s stock, 14 s and 10 CPU-s
pipelined (docs/TESTING.md). Outside the harness ``podman`` falls back to containers.podman.podman.
"""

from __future__ import annotations

import shlex

from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.connection import ConnectionBase

from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection
from ansible_collections.containers.podman.plugins.connection.podman import ensure_connect

DOCUMENTATION = """
name: podman
short_description: containers.podman's podman connection with pipelining (test harness only)
description:
  - Runs modules in an existing podman container with C(podman exec -i), the module piped on stdin.
extends_documentation_fragment:
  - connection_pipelining
options:
  remote_addr:
    description: The name or ID of the container.
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_podman_host
  remote_user:
    description: The user in the container to run as.
    vars:
      - name: ansible_user
  podman_executable:
    description: The podman binary.
    default: podman
    vars:
      - name: ansible_podman_executable
  podman_extra_args:
    description: Extra arguments to podman before its command.
    default: ''
    vars:
      - name: ansible_podman_extra_args
"""


class Connection(PodmanConnection):
    transport = "podman"
    has_pipelining = True

    _mount_tried = False

    def _connect(self):
        # No `podman mount` for every task: only the tasks that copy files need it (_mount).
        ConnectionBase._connect(self)
        self._connected = True
        return self

    def _mount(self) -> None:
        if not self._mount_tried:
            self._mount_tried = True
            PodmanConnection._connect(self)  # `podman mount`; without a mount point, `podman cp`

    def put_file(self, in_path, out_path):
        self._mount()
        return super().put_file(in_path, out_path)

    def fetch_file(self, in_path, out_path):
        self._mount()
        return super().fetch_file(in_path, out_path)

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        args = ["exec"]
        if in_data is not None:
            args.append("-i")  # the piped module arrives on stdin
        if self.user:
            args += ["--user", self.user]
        return self._podman(args, shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)
