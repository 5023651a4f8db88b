"""Hostile job files, command lines and plugin return values, tried through the real ``dativo`` CLI.

Each test performs the attack, shows that it reached the host (the plugin's value or the file's content is
named in the refusal), and checks that it failed: a clear error and exit code, nothing outside the target
changed, and no secret shown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

HOSTILE = "tests.fixtures.hostile_input"


def dativo(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``dativo ARGS`` in its own process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "dativo", *args], cwd=cwd, env=subprocess_env(**(env or {})),
                          capture_output=True,
                          text=True, timeout=timeout)


def job(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def hostile_job(tmp_path: Path, reader: str, *, target: str = "{type: parquet, path: out/t}",
                options: str = "{}", name: str | None = None) -> Path:
    """A job whose source is the hostile reader ``reader`` of :mod:`tests.fixtures.hostile_input`."""
    return job(tmp_path, f"""\
        version: 1
        name: {name or reader.lower()}
        source: {{type: csv, path: x.csv, reader: {{type: custom, implementation: "{HOSTILE}:{reader}",
                  fallback: fail, options: {options}}}}}
        target: {target}
        """)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A folder beside the target that no job may touch."""
    folder = tmp_path / "victimD"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    return folder


def untouched(victim: Path) -> bool:
    return sorted(p.name for p in victim.iterdir()) == ["precious.txt"] and \
        (victim / "precious.txt").read_text() == "keep me"


# --- names that become paths ----------------------------------------------------------------------


def test_a_dataset_name_cannot_climb_out_of_the_target(tmp_path: Path, victim: Path) -> None:
    path = job(tmp_path, f"""\
        version: 1
        name: climb
        source: {{type: csv, path: x.csv, reader: {{type: custom, implementation: "{HOSTILE}:DatasetNameReader",
                  fallback: fail}}}}
        target: {{type: parquet, path: "out/{{dataset}}", mode: overwrite}}
        """)
    result = dativo("run", str(path), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "'../victimD'" in result.stderr and "dataset name" in result.stderr  # the plugin did return it
    assert untouched(victim)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.parquet"))


@pytest.mark.parametrize("where", ["table: ../../../victimT", "namespace: ../../victimT",
                                   "datasets: {climb: {table: ../../../victimT}}"])
def test_an_iceberg_table_name_cannot_climb_out_of_the_warehouse(tmp_path: Path, where: str) -> None:
    (tmp_path / "x.csv").write_text("id\n1\n")
    path = job(tmp_path, f"""\
        version: 1
        name: climb
        source: {{type: csv, path: x.csv}}
        target: {{type: iceberg, {where}}}
        """)
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    result = dativo("run", str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "'../../" in result.stderr and "cannot name a table or namespace" in result.stderr
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before
    assert not list(tmp_path.rglob("*victimT*"))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"split_dataset": "../x"}, "returned a split of dataset '../x'"),
        ({"split_id": "../../x"}, "split id '../../x'"),
    ],
    ids=["other-dataset", "path-id"],
)
def test_a_split_cannot_name_a_path(tmp_path: Path, options: dict, expected: str) -> None:
    path = job(tmp_path, f"""\
        version: 1
        name: splits
        source: {{type: csv, path: x.csv, reader: {{type: custom, implementation: "{HOSTILE}:SplitNameReader",
                  fallback: fail, options: {json.dumps(options)}}}}}
        target: {{type: parquet, path: out/t}}
        """)
    result = dativo("run", str(path), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert expected in result.stderr
    assert not (tmp_path / "x").exists() and not any(tmp_path.parent.glob("x"))


@pytest.mark.parametrize("run_id", ["../../../victimD", "a:b", "a+b", "a/b", ".hidden", ""])
def test_run_ids_are_plain_names(tmp_path: Path, victim: Path, run_id: str) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n")
    path = job(tmp_path, """\
        version: 1
        name: ids
        source: {type: csv, path: in.csv}
        target: {type: parquet, path: out/t}
        """)
    result = dativo("run", str(path), "--run-id", run_id, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "is not a valid run id" in result.stderr
    assert untouched(victim) and not (tmp_path / "out").exists()


# --- the job file ---------------------------------------------------------------------------------


def test_a_duplicated_key_cannot_switch_the_sandbox_off(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n")
    path = job(tmp_path, """\
        version: 1
        name: dup
        source:
          type: csv
          path: in.csv
          reader:
            type: default
            sandbox:
              enabled: true
              enabled: false
        target: {type: parquet, path: out/t}
        """)
    result = dativo("run", str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "key 'enabled' is given twice (first at line 9)" in result.stderr and "line 10" in result.stderr
    assert not (tmp_path / "out").exists()


def test_yaml_merge_keys_may_still_be_overridden(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n")
    path = job(tmp_path, """\
        version: 1
        name: merge
        defaults: &defaults {type: csv, path: missing.csv}
        source:
          <<: *defaults
          path: in.csv
        target: {type: parquet, path: out/t}
        """)
    result = dativo("check", str(path), cwd=tmp_path)
    assert "given twice" not in result.stderr


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    lines = ["version: 1", "name: bomb", 'a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    lines += ["source: {type: csv, path: in.csv}", "target: {type: parquet, path: out/t}"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    result = dativo("check", str(path), cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "expands to more than 100,000 values" in result.stderr


def test_deep_nesting_is_a_config_error_not_an_internal_one(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("version: 1\nname: deep\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    result = dativo("check", str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "nested too deeply" in result.stderr and "Internal error" not in result.stderr


@pytest.mark.parametrize("target", ["/dev/zero", "big"])
def test_secret_files_are_bounded(tmp_path: Path, target: str) -> None:
    if target == "big":
        (tmp_path / "big").write_bytes(b"s" * (1 << 20))
    path = job(tmp_path, f"""\
        version: 1
        name: secretfile
        source: {{type: csv, path: "${{file:{target}}}"}}
        target: {{type: parquet, path: out/t}}
        """)
    result = dativo("check", str(path), cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stderr
    assert ("not a regular file" if target == "/dev/zero" else "larger than 64 KiB") in result.stderr
    assert "sss" not in result.stderr


# --- what is shown -----------------------------------------------------------------------------------


SECRET = 'pa"ss\\wörd-Ω\nsecond-line-of-it'


def test_a_secret_is_masked_in_every_encoding(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text(SECRET)
    path = job(tmp_path, """\
        version: 1
        name: leaky
        source: {type: csv, path: "data/${file:secret.txt}/x.csv"}
        target: {type: parquet, path: out/t}
        """)
    plain = dativo("run", str(path), cwd=tmp_path)
    machine = dativo("run", str(path), "--json", cwd=tmp_path)
    assert plain.returncode != 0 and machine.returncode != 0
    output = plain.stdout + plain.stderr + machine.stdout + machine.stderr
    assert "***" in output  # the path with the secret was shown, masked
    for form in (SECRET, json.dumps(SECRET)[1:-1], repr(SECRET)[1:-1], "second-line-of-it", 'pa"ss',
                 "pa\\\"ss"):
        assert form not in output, form


def test_a_raw_at_sign_in_a_dsn_password_is_masked(tmp_path: Path) -> None:
    path = job(tmp_path, """\
        version: 1
        name: dsn
        source: {type: postgres, connection: {dsn: "postgresql://app:p@ss-rest@127.0.0.1:1/db"}, tables: [t]}
        target: {type: parquet, path: out/t}
        """)
    result = dativo("check", str(path), cwd=tmp_path)
    assert result.returncode != 0
    assert "ss-rest" not in result.stdout + result.stderr


def test_ordinary_text_is_not_taken_for_a_secret() -> None:
    from dativo.secrets import redact

    assert redact("secret: No such file or directory") == "secret: No such file or directory"
    assert redact("token: abc123, next") == "token: ***, next"


def test_terminal_escapes_from_a_plugin_never_reach_the_terminal(tmp_path: Path) -> None:
    path = hostile_job(tmp_path, "EscapeReader", name="escapes")
    result = dativo("run", str(path), cwd=tmp_path, env={"TERM": "xterm", "FORCE_COLOR": "1"})
    assert result.returncode == 3
    assert "plugin says hi" in result.stderr  # the message was shown …
    assert "\x1b]" not in result.stderr and "\x07" not in result.stderr and "\x1b[2J" not in result.stderr
    assert "\\x1b]0;pwned" in result.stderr  # … with its escapes made visible


# --- what plugins send -------------------------------------------------------------------------------


def test_a_malformed_batch_is_refused_before_the_host_reads_it(tmp_path: Path) -> None:
    path = hostile_job(tmp_path, "MalformedReader", name="malformed")
    result = dativo("run", str(path), cwd=tmp_path)
    assert (tmp_path / "sent.txt").read_text() == "sent"  # the batch was sent
    assert result.returncode == 3, result.stderr  # a clear failure, not SIGSEGV (-11) nor a leak
    assert "malformed batch" in result.stderr and "out of bounds" in result.stderr
    assert not any((tmp_path / "out").rglob("*.parquet")) if (tmp_path / "out").exists() else True


def test_sixty_thousand_columns_are_refused_at_once(tmp_path: Path) -> None:
    path = hostile_job(tmp_path, "WideReader", name="wide")
    result = dativo("run", str(path), cwd=tmp_path, timeout=60)
    assert result.returncode == 3, result.stderr
    assert "60,000 columns (at most 10,000)" in result.stderr


def test_a_writers_row_count_is_a_claim_the_report_checks(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n2\n3\n4\n")
    path = job(tmp_path, f"""\
        version: 1
        name: boast
        source: {{type: csv, path: in.csv}}
        target: {{type: parquet, path: out/t, writer: {{type: custom, implementation: "{HOSTILE}:BoastfulWriter",
                  fallback: fail}}}}
        """)
    result = dativo("run", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows_written"] == 4 and report["datasets"][0]["rows"] == 4
    shown = dativo("run", str(path), cwd=tmp_path)
    assert shown.returncode == 0 and "says it wrote 1,999,999,998" in " ".join(shown.stderr.split())


# --- what a writer hands back, and what lies in the target --------------------------------------------


def old_entries(victim: Path) -> None:
    """Make the victim's entries look like staging a crashed run left hours ago (a sweep's prey)."""
    hours_ago = 1_700_000_000
    for entry in [victim / "precious.txt", victim]:
        os.utime(entry, (hours_ago, hours_ago))


def parquet_job(tmp_path: Path, *, mode: str = "append", writer: str = "", path: str = "out/t") -> Path:
    (tmp_path / "in.csv").write_text("id\n1\n2\n3\n")
    return job(tmp_path, f"""\
        version: 1
        name: items
        source: {{type: csv, path: in.csv}}
        target: {{type: parquet, path: "{path}", mode: {mode}{writer}}}
        """)


def claiming(**options: str) -> str:
    return (f", writer: {{type: custom, implementation: \"{HOSTILE}:ClaimingWriter\", fallback: fail, "
            f"options: {json.dumps(options)}}}")


@pytest.mark.parametrize("claim", ["{staging}/../../../../victimD/precious.txt", "VICTIM"], ids=["climb", "absolute"])
def test_a_writer_cannot_have_the_host_publish_a_file_outside_its_staging(
    tmp_path: Path, victim: Path, claim: str
) -> None:
    claim = claim.replace("VICTIM", str(victim / "precious.txt"))
    result = dativo("run", str(parquet_job(tmp_path, writer=claiming(claim=claim))), cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    message = " ".join(result.stderr.split())
    assert "refused to publish" in message and "precious.txt" in message  # the claim reached the host
    assert "is not in run" in message and "Nothing was published" in message
    assert untouched(victim)
    assert not [p for p in (tmp_path / "out" / "t").iterdir() if not p.name.startswith("_")]


@pytest.mark.parametrize(
    "options",
    [{"claim": "{staging}/../../../../victimD/precious.txt"}, {"dataset": "../victimD"}],
    ids=["file", "dataset"],
)
def test_a_writer_cannot_have_the_host_delete_outside_its_staging(
    tmp_path: Path, victim: Path, options: dict[str, str]
) -> None:
    """A rerun of a committed run id is a no-op, and the host then aborts what the writer returned."""
    (victim / "_dativo" / "staging" / "same").mkdir(parents=True)  # what the host would delete in 'victimD'
    (victim / "_dativo" / "staging" / "same" / "part-0-00000.parquet").write_text("keep me too")
    first = dativo("run", str(parquet_job(tmp_path, path="out/{dataset}")), "--run-id", "same", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    hostile = parquet_job(tmp_path, writer=claiming(**options), path="out/{dataset}")
    again = dativo("run", str(hostile), "--run-id", "same", cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # the run itself is a committed no-op …
    message = " ".join(again.stderr.split())
    assert "abort() of" in message and "refused" in message  # … and its abort refused the claim
    assert "victimD" in message
    assert (victim / "_dativo" / "staging" / "same" / "part-0-00000.parquet").read_text() == "keep me too"
    assert (victim / "precious.txt").read_text() == "keep me"
    assert not (tmp_path / "out" / "items" / "_dativo" / "staging" / "same").exists()  # its own staging went


@pytest.mark.parametrize("mode", ["append", "overwrite"])
@pytest.mark.parametrize("planted", ["out/t/_dativo/staging", "out/t/_dativo", "out/t/_dativo/staging/r1", "out/t"])
def test_links_a_failed_plugin_planted_in_the_target_are_never_followed(
    tmp_path: Path, victim: Path, planted: str, mode: str
) -> None:
    """A sandboxed writer granted ``write_paths: [out]`` can leave links behind when it fails; the built-in
    writer that falls back after it must neither delete nor write through them."""
    (victim / "r1").mkdir()  # looks like a run's staging folder, and it is old: a sweep would delete it
    old_entries(victim)
    link = tmp_path / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(victim)
    before = sorted(p.name for p in victim.iterdir())
    result = dativo("run", str(parquet_job(tmp_path, mode=mode)), "--run-id", "r1", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    message = " ".join(result.stderr.split())
    assert f"{link} is a symbolic link (to {victim})" in message  # the host met the link …
    assert "never follows a link" in message  # … and said what to do
    assert sorted(p.name for p in victim.iterdir()) == before and (victim / "precious.txt").read_text() == "keep me"
    assert not any((victim / "r1").iterdir()) and link.is_symlink()


@pytest.mark.parametrize("mode", ["append", "overwrite"])
def test_the_fallback_writer_never_follows_a_link_the_failed_plugin_planted(
    tmp_path: Path, victim: Path, mode: str
) -> None:
    old_entries(victim)
    planting = (f", writer: {{type: custom, implementation: \"{HOSTILE}:PlantingWriter\", fallback: default, "
                f"options: {{victim: \"{victim}\"}}}}")
    result = dativo("run", str(parquet_job(tmp_path, mode=mode, writer=planting)), "--run-id", "r1", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    message = " ".join(result.stderr.split())
    assert "crashed after planting a link" in message and "falling back to the built-in writer" in message
    link = tmp_path / "out" / "t" / "_dativo" / "staging" / "r1"
    assert f"{link} is a symbolic link (to {victim})" in message and "never follows a link" in message
    assert untouched(victim) and link.is_symlink()


def test_overwrite_of_a_folder_dativo_never_wrote_is_refused(tmp_path: Path, victim: Path) -> None:
    result = dativo("run", str(parquet_job(tmp_path, mode="overwrite", path=str(victim))), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert f"target.path: {victim} holds files Dativo did not write (precious.txt)" in message
    assert untouched(victim)
    appended = dativo("run", str(parquet_job(tmp_path, mode="append", path=str(victim))), cwd=tmp_path)
    assert appended.returncode == 0, appended.stderr  # append only adds a run folder beside them
    assert (victim / "precious.txt").read_text() == "keep me"
    again = dativo("run", str(parquet_job(tmp_path, mode="overwrite", path=str(victim))), cwd=tmp_path)
    assert again.returncode == 2 and (victim / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("path", "problem"),
    [("", "it is empty"), ("/", "the root of the file system"), ("/tmp/../", "the root of the file system"),
     (".", "it is the current folder"), ("../..", "holds the current folder"), ("HOME", "it is the home folder"),
     ("file:///", "the root of the file system")],
)
def test_a_target_path_that_would_replace_a_whole_tree_is_refused(tmp_path: Path, path: str, problem: str) -> None:
    home = tmp_path / "home"
    work = home / "work"
    work.mkdir(parents=True)
    path = path.replace("HOME", str(home))
    result = dativo("run", str(parquet_job(work, mode="overwrite", path=path)), cwd=work, env={"HOME": str(home)})
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "target.path" in message and "cannot be a target" in message and problem in message
    assert sorted(p.name for p in work.iterdir()) == ["in.csv", "job.yaml"]


_REPORT_PEAK = """
import atexit, runpy, sys
PEAK = sys.argv.pop(1)
def report():
    with open("/proc/self/status") as status, open(PEAK, "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM:")).split()[1])
atexit.register(report)
sys.argv[0] = "dativo"
runpy.run_module("dativo", run_name="__main__")
"""


def peak_rss_mib(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``dativo ARGS`` and return it with the peak resident memory of that process alone (MiB).

    The peak is the process's own high-water mark (``VmHWM``), read as it exits: ``ru_maxrss`` of a child
    starts at its parent's size (the test runner's), which would hide what the run itself used.
    """
    environ = subprocess_env()
    peak_file = cwd / "peak.txt"
    result = subprocess.run([sys.executable, "-c", _REPORT_PEAK, str(peak_file), *args], cwd=cwd, env=environ,
                            capture_output=True, text=True, timeout=300)
    return result, int(peak_file.read_text()) / 1024


def test_huge_batches_of_few_rows_cannot_grow_the_host_past_a_row_group(tmp_path: Path) -> None:
    """Batches of 32 MiB, 8 rows each: bounded by rows alone, a row group holds every batch in memory."""

    def run(batches: int, row_group: str = "") -> float:
        path = job(tmp_path, f"""\
            version: 1
            name: fat
            source: {{type: csv, path: x.csv, reader: {{type: custom, implementation: "{HOSTILE}:FatBatchReader",
                      fallback: fail, options: {{batches: {batches}, mib: 32}}}}}}
            target: {{type: parquet, path: out/fat{batches}{row_group[-4:]}, compression: none{row_group}}}
            """)
        result, peak = peak_rss_mib("run", str(path), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return peak

    unbounded = run(12, ", row_group_size_mb: 1024")  # as before: only the rows bound a row group
    twelve, twenty_four = run(12), run(24)  # the default bound, 64 MiB
    assert unbounded > twelve + 150, (unbounded, twelve)  # 384 MiB piled up without a byte bound …
    assert twenty_four < twelve + 48, (twelve, twenty_four)  # … and with one, twice the data costs no more
