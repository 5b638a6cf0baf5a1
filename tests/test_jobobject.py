"""batchapi/jobobject.py: a provider's Batch object checked field by field, on literal objects
and on the openai SDK's own Batch built (without validation) from garbage."""

from __future__ import annotations

from typing import Any

import pytest
from openai._models import construct_type
from openai.types import Batch

from batchrun.batchapi.jobobject import UNREADABLE, plain, read_job

GOOD = {
    "id": "batch_1",
    "object": "batch",
    "status": "completed",
    "created_at": 1_700_000_000,
    "completed_at": 1_700_000_100,
    "output_file_id": "file-out",
    "error_file_id": None,
    "request_counts": {"total": 5, "completed": 4, "failed": 1},
    "errors": None,
}


def test_a_sound_object_is_kept_as_it_is() -> None:
    view = read_job(GOOD, requests=5)
    assert (view.batch_id, view.status, view.created_at, view.ended_at) == (
        "batch_1",
        "completed",
        1_700_000_000,
        1_700_000_100,
    )
    assert view.request_counts == {"total": 5, "completed": 4, "failed": 1}
    assert (view.output_file_id, view.error_file_id, view.errors, view.problems) == ("file-out", None, [], [])


GARBAGE_COUNTS = [
    ({"completed": -5, "failed": None}, ["request_counts.completed is negative"]),
    ({"completed": "4", "failed": 1}, ["request_counts.completed is not a number (str)"]),
    ({"completed": 10**300, "total": 5}, ["request_counts.completed is more than the job's 5 requests"]),
    (
        {"completed": 2.0, "failed": True},
        ["request_counts.completed is a decimal number", "request_counts.failed is not a number (bool)"],
    ),
    ("lots", ["request_counts is not an object"]),
]


@pytest.mark.parametrize("counts, problems", GARBAGE_COUNTS)
def test_figures_that_are_not_counts_are_left_out_and_never_repeated(counts: Any, problems: list[str]) -> None:
    view = read_job({**GOOD, "request_counts": counts}, requests=5)
    assert view.problems == problems
    assert all(isinstance(v, int) and 0 <= v <= 5 for v in view.request_counts.values())
    assert "10000000000" not in " ".join(view.problems)


def test_times_ids_statuses_and_errors_are_checked() -> None:
    secret = "hrd-SECRET-9f8e7d"
    view = read_job(
        {
            **GOOD,
            "id": ["x"],
            "status": "Completed!",
            "created_at": "yesterday",
            "completed_at": -1,
            "output_file_id": "file with spaces",
            "errors": {"data": "boom"},
        },
        requests=5,
        secrets=(secret,),
    )
    assert (view.batch_id, view.status, view.created_at, view.ended_at, view.output_file_id) == (
        None,
        UNREADABLE,
        None,
        None,
        None,
    )
    assert view.problems == [
        "id is not an id",
        "status is not a status name",
        "created_at is not a time (unix seconds between 2000 and 2200)",
        "completed_at is not a time (unix seconds between 2000 and 2200)",
        "output_file_id is not an id",
        "errors is not a list of errors",
    ]
    errors = {"data": [{"code": "x", "message": f"bad key {secret}, Authorization: Bearer {secret}", "line": "2"}]}
    [error] = read_job({**GOOD, "errors": errors}, requests=5, secrets=(secret,)).errors
    assert secret not in str(error) and error["line"] is None and error["code"] == "x"
    assert read_job({**GOOD, "status": "paused_forever"}, requests=5).status == "paused_forever"
    assert read_job({**GOOD, "status": secret.lower()}, requests=5, secrets=(secret.lower(),)).status == UNREADABLE


def test_the_sdks_unvalidated_batch_reads_the_same() -> None:
    """The openai SDK builds its Batch without validation: any JSON the provider sent is in it."""
    raw = {**GOOD, "request_counts": {"total": "x", "completed": -5, "failed": None}, "errors": "lots"}
    batch = construct_type(type_=Batch, value=raw)
    assert plain(batch)["errors"] == "lots"
    view = read_job(batch, requests=5)
    assert view.request_counts == {} and view.errors == []
    assert view.problems == [
        "request_counts.total is not a number (str)",
        "request_counts.completed is negative",
        "errors is not a list of errors",
    ]
    assert plain(construct_type(type_=Batch, value=[1, 2])) == {}
