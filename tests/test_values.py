"""values.py: each option's text form -> the config's value, against hand-written values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from batchrun import values
from batchrun.errors import ConfigError, InputError
from batchrun.values import parse_duration_s, parse_slo


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.5s", 0.5),
        ("1.5", 1.5),
        ("0", 0.0),
        ("250us", 0.00025),
        (" 2s ", 2.0),
    ],
)
def test_duration_strings(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [None, "", "abc", "1x", "s", "-1s", "-3", "nan", "inf", "1s2", "ms1"])
def test_bad_durations_are_none(text: str | None) -> None:
    assert parse_duration_s(text) is None


def test_a_duration_option_takes_text_or_seconds_and_names_itself_when_unreadable() -> None:
    assert values.duration("2h", "--deadline") == 7200.0
    assert values.duration(90, "--deadline") == 90.0
    assert values.duration(None, "--deadline") is None
    with pytest.raises(ConfigError, match="--deadline: cannot read 'soon' as a duration"):
        values.duration("soon", "--deadline")


def test_parse_slo():
    assert parse_slo("ttft=500ms, tpot=50ms,e2e=10s") == {"ttft": 0.5, "tpot": 0.05, "e2e": 10.0}
    assert parse_slo("E2E=1.5S") == {"e2e": 1.5}


@pytest.mark.parametrize(
    "text, match",
    [
        ("ttft=500", "with a unit"),
        ("ttft:500ms", "NAME=VALUE"),
        ("latency=1s", "unknown SLO name.*valid names: ttft, tpot, e2e"),
        ("ttft=0ms", "positive"),
        ("ttft=-1s", "with a unit"),
        ("ttft=1s,ttft=2s", "given twice"),
        ("", "NAME=VALUE"),
    ],
)
def test_parse_slo_rejects_bad_input(text, match):
    with pytest.raises(ValueError, match=match):
        parse_slo(text)


def test_check_slo_returns_seconds_as_floats_and_refuses_what_is_not_positive():
    assert values.check_slo({"ttft": 1, "e2e": 2.5}) == {"ttft": 1.0, "e2e": 2.5}
    for bad in ({"ttft": 0}, {"ttft": math.inf}, {"ttft": "1"}, {}):
        with pytest.raises(ValueError):
            values.check_slo(bad)


def test_the_slo_option_takes_text_or_a_mapping() -> None:
    assert values.slo("ttft=500ms") == {"ttft": 0.5}
    assert values.slo({"e2e": 2}) == {"e2e": 2.0}
    assert values.slo(None) is None
    with pytest.raises(ConfigError, match="--slo: unknown SLO name"):
        values.slo({"p99": 1.0})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("auto", (None, True)),
        ("off", (None, False)),
        ("600", (600.0, False)),
        (None, (None, True)),
        (90, (90.0, False)),
    ],
)
def test_rate_limits(text, expected) -> None:
    assert values.rpm(text) == expected


@pytest.mark.parametrize(
    "text, match", [("fast", "takes a number per minute"), ("nan", "finite"), ("0", "positive number per minute")]
)
def test_bad_rate_limits_name_the_option(text, match) -> None:
    with pytest.raises(ConfigError, match=f"--tpm.*{match}|{match}"):
        values.tpm(text)


def test_counts_or_auto() -> None:
    assert values.concurrency("auto") == (values.AUTO_CEILING, True)
    assert values.concurrency(8) == (8, False)
    assert values.workers("AUTO") == (1, True)
    with pytest.raises(ConfigError, match="--workers takes a whole number or 'auto', got 'many'"):
        values.workers("many")


def test_json_options_take_text_or_the_value() -> None:
    assert values.extra_body('{"top_p": 0.9}') == {"top_p": 0.9}
    assert values.extra_body({"top_p": 0.9}) == {"top_p": 0.9}
    assert values.extra_body(None) == {}
    with pytest.raises(ConfigError, match="--extra-body is not valid JSON"):
        values.extra_body("{top_p}")
    with pytest.raises(ConfigError, match="NaN is not a number JSON allows"):
        values.extra_body('{"top_p": NaN}')


def test_tool_choice_names_a_function_unless_it_is_a_keyword() -> None:
    assert values.tool_choice("auto") == "auto"
    assert values.tool_choice("lookup") == {"type": "function", "function": {"name": "lookup"}}


def test_tools_from_a_file_or_a_list(tmp_path: Path) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    (tmp_path / "t.json").write_text(json.dumps(tool))
    assert values.tools(tmp_path / "t.json") == [tool]
    assert values.tools([tool]) == [tool]
    (tmp_path / "bad.json").write_text(json.dumps([{"type": "function"}]))
    with pytest.raises(InputError, match=r"bad.json: tool #1 has no function.name"):
        values.tools(tmp_path / "bad.json")


def test_a_schema_file_that_is_not_a_schema_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        values.load_schema("{nope", "s.json")
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        values.load_schema('{"type": 12}', "s.json")
    with pytest.raises(ConfigError, match="json_schema must hold a JSON Schema object"):
        values.json_schema([1])
    schema = {"type": "object", "properties": {"label": {"type": "string"}}}
    (tmp_path / "s.json").write_text(json.dumps(schema))
    assert values.json_schema(tmp_path / "s.json") == schema == values.json_schema(schema)


def test_levels() -> None:
    assert values.levels("1, 2,4") == (1, 2, 4)
    assert values.levels([8, 16]) == (8, 16)
    assert values.rates("0.5,2") == (0.5, 2.0)
    with pytest.raises(ConfigError, match="comma-separated list of numbers"):
        values.levels("1,two")


@pytest.mark.parametrize("address", ["local", "auto", "ray://head:10001", "10.0.0.5:6379"])
def test_ray_addresses(address: str) -> None:
    assert values.ray_address(address) == address


def test_a_ray_address_without_a_port_is_refused() -> None:
    with pytest.raises(ConfigError, match="--ray-address takes auto, ray://HOST:PORT or HOST:PORT"):
        values.ray_address("head")
