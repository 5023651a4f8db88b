"""``dativo.lock`` and ``dativo.toml``: found from the job's folder upwards, read strictly, written atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from dativo.errors import ConfigError
from dativo.market.lock import LOCK_FILE, Lock, Pin, project, project_folder

PIN = Pin(name="Acme_Readers", version="1.0.0", kind="reader", entry_point="acme_orders", artefact="a.whl",
          artefact_sha256="a" * 64, files_sha256="b" * 64, manifest_sha256="c" * 64, publisher="", trusted=False)


def test_round_trip(tmp_path: Path) -> None:
    lock = Lock(tmp_path / LOCK_FILE)
    lock.pin(PIN)
    lock.write()
    again = Lock.read(tmp_path / LOCK_FILE)
    assert again.get("acme-readers") == PIN  # names are normalised
    assert (tmp_path / LOCK_FILE).read_text().startswith("# dativo.lock")


def test_the_project_folder_is_the_nearest_with_either_file(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs" / "nightly"
    jobs.mkdir(parents=True)
    assert project_folder(jobs) == jobs  # none anywhere: the job's own folder
    (tmp_path / "dativo.toml").write_text('[plugins]\nindex = "http://idx/"\n[plugins.policy]\nunsigned = "refuse"\n')
    found = project(jobs)
    assert (found.folder, found.policy, found.index) == (tmp_path, "refuse", "http://idx/")
    assert found.lock.path == tmp_path / LOCK_FILE and found.lock.pins == {}


@pytest.mark.parametrize(("text", "message"), [
    ('[plugins.policy]\nunsigned = "maybe"\n', "must be 'sandbox', 'refuse' or 'allow'"),
    ('[plugins]\nindx = "x"\n', "did you mean 'index'"),
    ("[plugins\n", "cannot read"),
])
def test_a_bad_dativo_toml_is_a_config_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "dativo.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        project(tmp_path)


def test_a_bad_lock_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text("lock = 1\n[[plugin]]\nname = 'x'\n")
    with pytest.raises(ConfigError, match="required key is missing"):
        Lock.read(tmp_path / LOCK_FILE)
