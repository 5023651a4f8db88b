"""When a built-in may replace a failed custom reader, and the fallback advice a failed job gets."""

from __future__ import annotations

import pyarrow as pa
import pytest

from dativo.api import Dataset
from dativo.config import parse_job
from dativo.errors import PluginFailed, fallback_hint
from dativo.fallback import same_datasets, situated

IDS = pa.schema([("id", pa.int64())])


def test_the_same_datasets_and_columns_may_replace_the_custom_reader() -> None:
    same_datasets([Dataset("orders", IDS)], [Dataset("orders", IDS)], "csv", job="j")
    same_datasets(None, [Dataset("anything")], "csv", job="j")  # the custom one never said: nothing to compare
    same_datasets([Dataset("orders")], [Dataset("orders", IDS)], "csv", job="j")  # undeclared: the table decides


@pytest.mark.parametrize(("custom", "builtin", "message"), [
    ([Dataset("orders", IDS)], [Dataset("job", IDS)], "reads dataset.s. job where the custom reader read orders"),
    ([Dataset("orders", IDS)], [Dataset("orders", pa.schema([("key", pa.int64())]))],
     "its dataset 'orders' has columns key where the custom reader's has id"),
])
def test_other_datasets_or_columns_refuse_the_fallback(custom, builtin, message) -> None:
    with pytest.raises(PluginFailed, match=message):
        same_datasets(custom, builtin, "csv", job="j")


def _job(source: str) -> object:
    return parse_job(f"version: 1\nname: j\nsource: {source}\ntarget: {{type: parquet, path: out}}\n")


@pytest.mark.parametrize(("source", "advice"), [
    ("{type: csv, path: x.csv, reader: {type: custom, implementation: 'a:B', fallback: fail}}",
     fallback_hint("reader")),
    ("{type: acme, reader: {type: custom, implementation: 'a:B'}}", "'acme' has no built-in reader"),
    ("{type: csv, path: x.csv, reader: {type: custom, implementation: 'a:B'}}", "the built-in fallback did not help"),
    ("{type: csv, path: x.csv}", ""),
])
def test_the_fallback_advice_fits_the_job(source: str, advice: str) -> None:
    error = PluginFailed("boom", role="reader", stage="read", hint=f"Retry later. {fallback_hint('reader')}")
    hint = situated(error, _job(source)).hint or ""  # type: ignore[arg-type]
    assert hint.startswith("Retry later.") and advice in hint
    if advice != fallback_hint("reader"):
        assert fallback_hint("reader") not in hint
    assert error.hint.endswith(fallback_hint("reader"))  # the caught error is never changed
