"""CommitRecord: what one commit says, in JSON, and what older or foreign records are read as."""

from __future__ import annotations

from dativo.storage import CommitRecord


def test_the_json_form_has_the_writers_fields_at_the_top_level() -> None:
    record = CommitRecord(job="j", run_id="r7", seq=7, mode="overwrite", files=["a.parquet"], rows=3,
                          committed_at=1.5, extra={"state": {"w": 1}, "schema": ""})
    data = record.to_json()
    assert data == {
        "format": 1, "job": "j", "run_id": "r7", "seq": 7, "folder": "000007-r7", "mode": "overwrite",
        "rows": 3, "files": ["a.parquet"], "committed_at": 1.5, "staging": "r7",
        "state": {"w": 1}, "schema": "",
    }
    assert CommitRecord.from_json(data) == record


def test_the_writers_fields_never_override_the_protocols() -> None:
    assert CommitRecord(job="j", run_id="r", seq=1, extra={"seq": 99}).to_json()["seq"] == 1


def test_a_record_found_in_a_run_folder_takes_its_slot_and_run_id_from_the_name() -> None:
    data = {"job": "go", "files": ["x.parquet"], "schema": "s"}
    record = CommitRecord.from_json(data, folder="000012-first")
    assert (record.seq, record.run_id, record.folder) == (12, "first", "000012-first")
    assert record.staging == "first"
    assert record.extra == {"schema": "s"} and record.mode == "append"
