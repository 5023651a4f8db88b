"""Implementations that are not plain Python classes: plugin processes (Arrow Flight), sandboxes, native code.

Module map, lowest layer first; a module imports only those above it in this list (and ``dativo.api``,
``dativo.errors``, ``dativo.config``, ``dativo.secrets``, ``dativo.streams``):

- :mod:`.protocol` — the out-of-process protocol as data: versions, actions, message shapes and their JSON,
  the handshake, the ``DATIVO-ERROR`` line. Shared by the host and the Python server; no I/O.
- :mod:`.options` — the options a plugin in another language declares as JSON Schema, as a pydantic model
  the host validates the job's options with (the messages of a Python plugin's ``Config``).
- :mod:`.cabi` — the C ABI of ``sdk/cpp/dativo_plugin.h`` in ctypes: status codes, structs, a loaded library.
- :mod:`.native` — Reader/Writer classes that drive a native library (protocol's JSON shapes, cabi, options).
- :mod:`.serve` — the Python server, ``dativo plugin serve`` (protocol; its plugins found by the registry).
- :mod:`.client` — the host's Flight connection to one plugin: actions, data streams, stall detection, error
  translation; and :class:`~.client.Launcher`, how a connection reaches its plugin.
- :mod:`.remote` — Reader/Writer proxies whose methods are protocol calls (client, protocol, options).
- :mod:`.output` — a started plugin's stdout and stderr: handshake line, rate-limited log, stderr tail.
- :mod:`.sockets` — where a started plugin listens: the private folder the host makes (for another uid when
  a sandbox runs it as one), and the check that a handshake names the socket there (protocol).
- :mod:`.process` — starting plugin processes (dying with the host), the launchers, and ``executable()``
  for packaged executables (client, output, protocol, remote, sockets).
- :mod:`.cgroups` — the pids and memory cgroups of one sandboxed process.
- :mod:`.seccomp` — the seccomp filter of a sandboxed process, compiled to classic BPF in Python.
- :mod:`.bwrap` — bubblewrap on this machine: the unprivileged identity a plugin runs as, a sandbox's
  command line, and the probe that checks every layer (seccomp).
- :mod:`.sandbox` — confining one process, and the launcher of a sandboxed implementation, built with the
  launcher class it is handed (bwrap, cgroups; plugins found by ``registry.locate``).
- :mod:`.host` — :class:`~.host.PluginHost`, the plugins of one run: resolves each once, keeps the
  connection that learnt a spec for the instance that uses it, and closes every connection and process at
  the end (everything above, and :mod:`dativo.registry`).

:mod:`dativo.registry` (names, entry points, dotted paths, native libraries) comes right after :mod:`.native`
in that order; :mod:`dativo.engine` opens one :class:`~.host.PluginHost` per run. ``tests/test_imports.py``
keeps the import graph free of cycles.
"""
