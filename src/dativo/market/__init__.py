"""Distributing plugins: the manifest, packing and signing, an index, installing, the lock, the trust policy.

An author packs and publishes; a user searches, installs and runs (docs/plugins/publishing.md)::

    dativo plugin keygen → dativo plugin pack → dativo plugin publish --index DIR
    dativo plugins search → dativo plugin install NAME → dativo.lock → every load verified

Module map, lowest layer first; a module imports only those above it (and ``dativo.config``,
``dativo.errors``, ``dativo.registry``):

- :mod:`.capabilities` — the capabilities a sandbox grants an untrusted plugin, as the variable the plugin
  process sees, and the message that names the one a failure ran into (stdlib only: the Python plugin
  server imports it inside the sandbox).
- :mod:`.manifest` — ``dativo-plugin.toml``: the pydantic model (its JSON Schema is published), TOML in and
  out, the canonical bytes a signature covers.
- :mod:`.sign` — ed25519 publisher keys (``dativo plugin keygen``), detached signatures, the trusted keys.
- :mod:`.wheels` — reading and writing wheels reproducibly, their RECORD, and the digest of the files a wheel
  installs (what the lock pins and a load checks).
- :mod:`.pack` — ``dativo plugin pack``: build the wheel (a platform wheel around a binary), the SBOM, the
  published manifest with every artefact's sha256, its signature.
- :mod:`.index` — the static index (a folder or any HTTP server: ``index.json`` and the files), publish and
  search.
- :mod:`.lock` — ``dativo.lock`` and the project's ``dativo.toml``, found beside the job file.
- :mod:`.verify` — hashing an installed distribution without importing it, against what the lock pins.
- :mod:`.install` — ``dativo plugin install``: download, verify digests and signature, install, pin.
- :mod:`.policy` — what may run, decided before any code of a plugin is imported or started: pinned plugins
  verified, unsigned or untrusted ones sandboxed with their declared capabilities, refused or allowed
  (``plugins.policy.unsigned``). :class:`~dativo.plugins.host.PluginHost` calls it for every plugin.
"""
