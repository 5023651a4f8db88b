"""The protocol's messages (``dativo.plugins.protocol``): each survives its round trip; bad ones are named."""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pytest

from dativo.api import CommitInfo, Context, Dataset, Split, WrittenFiles
from dativo.errors import PluginIncompatible
from dativo.plugins import protocol
from dativo.plugins.serve import PluginServer

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), ("name", pa.string())])


def test_datasets_round_trip_with_and_without_a_schema() -> None:
    dataset = Dataset("public.orders", SCHEMA, ("id",), ("updated_at", "id"))
    assert (
        protocol.dataset_from_json(json.loads(protocol.dumps(protocol.dataset_to_json(dataset)))) == dataset
    )
    bare = protocol.dataset_to_json(dataset, schema=False)
    assert "schema" not in bare and protocol.dataset_from_json(bare) == Dataset(
        "public.orders", None, ("id",), ("updated_at", "id")
    )
    with pytest.raises(ValueError, match='is not {"name": str'):
        protocol.dataset_from_json({"name": "", "primary_key": []})
    with pytest.raises(ValueError, match="dataset 'x' has an unreadable schema"):
        protocol.dataset_from_json({"name": "x", "schema": "bm90IGEgc2NoZW1h"})


def test_splits_round_trip_and_a_plan_is_checked() -> None:
    split = Split("orders", "3", {"low": 1, "high": 9})
    assert protocol.split_from_json(protocol.split_to_json(split)) == split
    assert protocol.split_of_command(protocol.split_command(split), "the ticket") == split
    dataset = Dataset("orders")
    assert protocol.splits_from_json(dataset, [{"id": 1}, {"id": "2", "params": {"p": 1}}]) == [
        Split("orders", "1"),
        Split("orders", "2", {"p": 1}),
    ]
    with pytest.raises(ValueError, match="duplicate ids"):
        protocol.splits_from_json(dataset, [{"id": 1}, {"id": "1"}])
    with pytest.raises(ValueError, match="is not a list of splits"):
        protocol.splits_from_json(dataset, {"id": 1})


def test_written_files_keep_only_what_json_carries() -> None:
    written = WrittenFiles("orders", "0", ["a.parquet"], 3, 100, {"kept": [1, 2], "dropped": object()})
    back = protocol.written_from_json(json.loads(protocol.dumps(protocol.written_to_json(written))))
    assert back == WrittenFiles("orders", "0", ["a.parquet"], 3, 100, {"kept": [1, 2]})
    assert protocol.written_from_json({"files": []}, dataset="d", split="s").dataset == "d"
    with pytest.raises(ValueError, match='"rows": int'):
        protocol.written_from_json({"files": ["a"], "rows": "three"})


def test_commit_results() -> None:
    info = CommitInfo("snap-1", 3, no_op=False)
    assert protocol.commit_from_json(protocol.commit_to_json(info)) == info
    assert protocol.commit_from_json({"commit_id": 7}) == CommitInfo("7", 0, False)
    with pytest.raises(ValueError, match='is not {"commit_id", "rows", "no_op"}'):
        protocol.commit_from_json({"rows": "many"})


def test_configure_carries_the_context() -> None:
    logger = logging.getLogger("t")
    ctx = Context("job", "run-1", "p", logger, {"path": "x"}, parallelism=3, cursor="ts", work_dir="/w",
                  memory_bytes=96 << 20, batch_bytes=2 << 20)
    body = json.loads(protocol.dumps(protocol.configure_body({"rows": 1}, ctx, role="reader")))
    assert (body["role"], body["options"], body["settings"]) == ("reader", {"rows": 1}, {"path": "x"})
    assert "role" not in protocol.configure_body({}, ctx)
    again = protocol.context_from_json(
        body["context"], settings=body["settings"], plugin="other", logger=logger
    )
    assert again == ctx
    assert protocol.context_from_json(None, settings={}, plugin="p", logger=logger).job == "job"
    older = protocol.context_from_json({"job": "j", "memory_bytes": "lots", "batch_bytes": -1}, settings={},
                                       plugin="p", logger=logger)
    assert (older.memory_bytes, older.batch_bytes) == (Context.memory_bytes, Context.batch_bytes)


def test_spec_problems_name_the_bad_fields() -> None:
    good = {"name": "x", "version": "1", "language": "go", "roles": ["reader"], "api_version": ">=1,<2"}
    assert protocol.spec_problems(good) == []
    assert protocol.spec_problems({**good, "roles": "reader", "allow_fallback": "no"}) == [
        "roles",
        "allow_fallback",
    ]


def test_the_handshake() -> None:
    line = protocol.handshake_line("grpc+unix:///tmp/p.sock", name="n", version="1.0")
    handshake = protocol.parse_handshake(line)
    assert handshake == {
        "dativo_flight": 1,
        "location": "grpc+unix:///tmp/p.sock",
        "name": "n",
        "version": "1.0",
    }
    assert protocol.parse_handshake("Starting my plugin ...") is None
    assert protocol.parse_handshake('{"location": "grpc://x"}') is None
    assert protocol.unix_location("/tmp/p.sock") == "grpc+unix:///tmp/p.sock"
    assert protocol.protocol_mismatch(protocol.PROTOCOL_VERSION) is None
    mismatch = protocol.protocol_mismatch(2)
    assert isinstance(mismatch, PluginIncompatible)
    assert "speaks plugin protocol 2, but this Dativo speaks protocol 1" in str(mismatch)


def test_error_lines_survive_grpc_s_own_text() -> None:
    line = protocol.error_line("ConfigError", "bad 'table'\nsecond line", "Fix it.")
    assert "\n" not in line and line.startswith(protocol.ERROR_PREFIX)
    wrapped = (
        f"Flight returned internal error, with message: {line}. Detail: Internal. gRPC client debug context"
    )
    assert protocol.parse_error(wrapped) == {
        "kind": "ConfigError",
        "message": "bad 'table'\nsecond line",
        "hint": "Fix it.",
    }
    assert (
        json.loads(protocol.error_line("Nonsense", "m").removeprefix(protocol.ERROR_PREFIX))["kind"]
        == "PluginFailed"
    )
    assert protocol.parse_error("no line here") is None


def test_small_pieces() -> None:
    assert (
        protocol.is_abort(protocol.ABORT_NOTE)
        and not protocol.is_abort(b"{}")
        and not protocol.is_abort(b"x")
    )
    assert [protocol.stage_of(a) for a in ("spec", "configure", "health", "read", "commit")] == [
        "load",
        "load",
        "load",
        "read",
        "commit",
    ]
    assert protocol.dumps({"rows": 1}) == b'{"rows": 1}'  # "key": value, as simple C plugins search for it
    with pytest.raises(ValueError, match="the body of 'x' is a JSON list"):
        protocol.loads_object(b"[1]", "the body of 'x'")
    assert protocol.loads_object(b"  ", "empty") == {}


def test_the_python_server_answers_every_action() -> None:
    assert all(callable(getattr(PluginServer, f"_action_{name}", None)) for name in protocol.ACTIONS)
