"""The iceberg writer's options: per-dataset table settings, and names that would leave the warehouse."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dativo.writers.iceberg import IcebergWriterConfig


def test_per_dataset_settings_take_the_section_values_as_defaults() -> None:
    config = IcebergWriterConfig.model_validate({
        "namespace": "raw",
        "partition_by": ["id"],
        "datasets": {
            "public.payment": {"table": "payments", "partition_by": ["month(paid_at)"]},
            "sales.*": {"namespace": "sales"},
            "public.*": {"table": "never"},  # an exact name comes first
        },
    })
    assert config.settings_for("public.payment") == (("raw", "payments"), ["month(paid_at)"])
    assert config.settings_for("sales.order_line") == (("sales", "order_line"), ["id"])
    assert config.settings_for("other.customer") == (("raw", "customer"), ["id"])


@pytest.mark.parametrize("section", [
    {"table": "../../outside"},
    {"table": ".hidden"},
    {"namespace": "raw../..x"},
    {"namespace": "a./etc"},
    {"datasets": {"x": {"table": "a/b"}}},
    {"datasets": {"x": {"namespace": "ok.a\\\\b", "table": "t"}}},
])
def test_a_table_or_namespace_that_would_leave_the_warehouse_is_refused(section: dict) -> None:
    with pytest.raises(ValidationError, match="cannot name a table or namespace"):
        IcebergWriterConfig.model_validate(section)
