"""New plugin projects (``dativo plugin new``) and the SDKs they build against (``dativo sdk path``).

Module map:

- :mod:`.sdk` — where the Go module, the Rust crate and the C header are: inside the installed package
  (``dativo/sdk/…`` in the wheel), or in the checkout of an editable install; what their manifests pin.
- :mod:`.project` — checks a plugin's name and renders a template into a new folder (sdk).
- ``templates/<lang>-<kind>/`` (and ``<lang>-common/``) — the projects, as package data: an example that reads
  or writes real rows, its tests, a README, an example job and ``ci.sh``.
"""

from dativo.scaffold.project import KINDS, LANGUAGES, Project, check_name, new_plugin
from dativo.scaffold.sdk import SDK_LANGUAGES, sdk_path

__all__ = ["KINDS", "LANGUAGES", "SDK_LANGUAGES", "Project", "check_name", "new_plugin", "sdk_path"]
