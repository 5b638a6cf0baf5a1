"""Every reader, fed garbage: arbitrary bytes, truncated files, mixed encodings, NUL bytes, huge
fields, absurd nesting, random Batch API bodies, broken Parquet. Each input either yields
Prompt / BadRow objects (whose request bodies serialise) or raises an InputError naming the
file (and the line, where there is one): never another exception, never a hang."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from batchrun.endpoint.requests import RequestDefaults, build_body
from batchrun.errors import InputError
from batchrun.inputs.prompt import BadRow, Prompt
from batchrun.inputs.rows import read_prompts

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
HANG_S = 20.0  # a safety bound only: every example here reads in milliseconds
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def read_all(path: Path, **options: Any) -> list[Prompt | BadRow] | InputError:
    """All of `path`'s items, or its InputError; in a thread, so a hang (even inside pyarrow's
    C++ code, where no Python signal handler runs) fails the test instead of stalling it."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["items"] = items = list(read_prompts(path, **options))
            # What the runner does next, in the same thread: each Prompt's body serialises.
            for item in items:
                if isinstance(item, Prompt):
                    json.dumps(build_body(item, RequestDefaults()), ensure_ascii=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread to judge
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(HANG_S)
    assert not worker.is_alive(), f"reading {path} hung for {HANG_S} s"
    error = box.get("error")
    if error is None:
        return check_items(path, box["items"])
    if not isinstance(error, InputError):
        raise AssertionError(f"{type(error).__name__} escaped the reader: {error}") from error
    check_error(path, error)
    return error


def check_error(path: Path, error: InputError) -> None:
    text = str(error)
    assert error.path == str(path) and text.startswith(str(path)), text
    if error.line is not None:
        assert f"line {error.line}" in text or f"row {error.line}" in text, text


def check_items(path: Path, items: list[Any]) -> list[Prompt | BadRow]:
    for item in items:
        assert isinstance(item, (Prompt, BadRow)), item
        if isinstance(item, BadRow):
            assert item.reason.startswith(str(path)), item.reason
    return items


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- strategies -------------------------------------------------------------------------------

ENCODINGS = ["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16", "utf-16-le", "shift_jis", "koi8-r"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mixed_encoding_lines(draw: Any, header: bytes) -> bytes:
    """A header, then lines each in its own encoding, some with NUL bytes or cut short."""
    lines = [header]
    for _ in range(draw(st.integers(1, 6))):
        text = draw(st.text(max_size=30))
        encoded = text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace")
        if draw(st.booleans()):
            at = draw(st.integers(0, len(encoded)))
            encoded = encoded[:at] + b"\x00" + encoded[at:]
        if draw(st.booleans()):
            encoded = encoded[: draw(st.integers(0, len(encoded)))]
        lines.append(encoded)
    return draw(st.sampled_from([b"\n", b"\r\n", b"\r"])).join(lines)


# --- CSV / JSONL ------------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=400) | mixed_encoding_lines(b"id,prompt,messages,max_tokens"), skip=st.booleans())
def test_csv_arbitrary_bytes_and_mixed_encodings(tmp_path: Path, data: bytes, skip: bool) -> None:
    read_all(write(tmp_path, "f.csv", data), on_bad_row="skip" if skip else "fail")


@st.composite
def jsonl_files(draw: Any) -> bytes:
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            value: Any = draw(json_values)
        elif kind == 1:
            value = {"id": draw(json_values), "prompt": draw(json_values)}
        elif kind == 2:
            value = {
                "prompt": draw(st.text(max_size=20)),
                "messages": draw(json_values),
                "max_tokens": draw(json_values),
                "temperature": draw(json_values),
                "tools": draw(json_values),
                "tool_choice": draw(json_values),
            }
        else:
            value = {
                "messages": [
                    {"role": draw(st.sampled_from(["user", "system", "tool", "x"])), "content": draw(json_values)}
                ]
            }
        lines.append(json.dumps(value).encode())
    data = b"\n".join(lines)
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]  # a file cut short anywhere
    return data


@FUZZ
@given(data=st.binary(max_size=400) | jsonl_files() | mixed_encoding_lines(b'{"prompt": "a"}'), skip=st.booleans())
def test_jsonl_arbitrary_bytes_and_random_objects(tmp_path: Path, data: bytes, skip: bool) -> None:
    read_all(write(tmp_path, "f.jsonl", data), on_bad_row="skip" if skip else "fail")


@FUZZ
@given(
    value=st.floats() | st.integers(-5, 10**6) | st.sampled_from(["nan", " NaN ", "inf", "-Infinity", "1e400", "0.5"]),
    column=st.sampled_from(["temperature", "max_tokens", "max_completion_tokens"]),
    name=st.sampled_from(["p.csv", "p.jsonl"]),
)
@example(value=float("nan"), column="temperature", name="p.jsonl")  # was dropped: sent with the flag's value
@example(value=float("-inf"), column="max_tokens", name="p.jsonl")
def test_a_row_setting_is_used_or_refused_never_dropped(tmp_path: Path, value: Any, column: str, name: str) -> None:
    """NaN, infinities, huge and negative numbers, as numbers or text: the row either carries the
    value as a finite number or is a bad row naming the column; it never goes out without it."""
    if name == "p.csv":
        data = f"prompt,{column}\nhi,{value}\n".encode()
    else:
        data = json.dumps({"prompt": "hi", column: value}).encode()  # NaN / Infinity as Python writes them
    items = read_all(write(tmp_path, name, data), on_bad_row="skip")
    assert isinstance(items, list) and len(items) == 1
    item = items[0]
    if isinstance(item, BadRow):
        assert f"column '{column}'" in item.reason, item.reason
    else:
        sent = item.params[column]
        assert isinstance(sent, (int, float)) and sent == sent and abs(sent) != float("inf"), item.params


@FUZZ
@given(
    sample=st.sampled_from(["prompts.csv", "prompts.jsonl", "batch_api.jsonl", "bad_prompts.csv"]),
    cut=st.floats(0, 1),
    nul=st.booleans(),
    skip=st.booleans(),
)
def test_truncated_samples(tmp_path: Path, sample: str, cut: float, nul: bool, skip: bool) -> None:
    """Valid files cut at any byte (mid-line, mid-quote, mid-character), optionally with a NUL."""
    data = (SAMPLES / sample).read_bytes()
    data = data[: int(len(data) * cut)]
    if nul:
        data = data[: len(data) // 2] + b"\x00" + data[len(data) // 2 :]
    read_all(write(tmp_path, sample, data), on_bad_row="skip" if skip else "fail")


@st.composite
def batch_lines(draw: Any) -> bytes:
    lines = []
    for i in range(draw(st.integers(1, 5))):
        body = draw(
            json_values
            | st.fixed_dictionaries(
                {
                    "model": json_values,
                    "messages": json_values
                    | st.lists(
                        st.fixed_dictionaries(
                            {"role": st.sampled_from(["user", "assistant", "bogus"]), "content": json_values}
                        ),
                        max_size=3,
                    ),
                },
                optional={"max_tokens": json_values, "tools": json_values},
            )
        )
        line = {
            "custom_id": draw(st.sampled_from([f"r{i}", "dup", "", None, 7])),
            "method": draw(st.sampled_from(["POST", "post", "GET", None])),
            "url": draw(st.sampled_from(["/v1/chat/completions", "/chat/completions", "/v1/embeddings", 3])),
            "body": body,
        }
        lines.append(json.dumps(line).encode())
    return b"\n".join(lines)


@FUZZ
@given(data=batch_lines(), skip=st.booleans())
def test_batch_api_lines_with_random_bodies(tmp_path: Path, data: bytes, skip: bool) -> None:
    result = read_all(write(tmp_path, "batch.jsonl", data), on_bad_row="skip" if skip else "fail")
    if isinstance(result, list):
        for item in result:
            if isinstance(item, Prompt):
                assert isinstance(item.body, dict) and isinstance(item.body["messages"], list)


# --- huge fields, NUL bytes and absurd nesting --------------------------------------------------

MB = "x" * (1 << 20)


@pytest.mark.parametrize(
    "name, data",
    [
        ("huge.csv", f'id,prompt\na,"{MB}"\nb,short\n'.encode()),
        ("huge-unquoted.csv", f"id,prompt\na,{MB}\n".encode()),
        (
            "huge.jsonl",
            (json.dumps({"id": "a", "prompt": MB}) + "\n" + json.dumps({"id": "b", "prompt": "short"})).encode(),
        ),
    ],
)
def test_a_one_megabyte_field_is_read_whole(tmp_path: Path, name: str, data: bytes) -> None:
    items = read_all(write(tmp_path, name, data))
    assert isinstance(items, list) and isinstance(items[0], Prompt)
    assert items[0].messages[-1]["content"] == MB


@pytest.mark.parametrize(
    "name, data",
    [
        ("nul.csv", b"id,prompt\na,hel\x00lo\n"),
        ("nul-header.csv", b"i\x00d,prompt\na,hello\n"),
        ("nul.jsonl", b'{"prompt": "hel\x00lo"}\n'),
        ("nul-escaped.jsonl", b'{"prompt": "hel\\u0000lo"}\n'),
        ("only-nul.csv", b"\x00" * 64),
        ("only-nul.jsonl", b"\x00" * 64),
    ],
)
def test_nul_bytes(tmp_path: Path, name: str, data: bytes) -> None:
    read_all(write(tmp_path, name, data))
    read_all(tmp_path / name, on_bad_row="skip")


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# json.loads accepts nesting up to about the recursion limit, less the caller's stack depth;
# a value parsed near that edge can then fail to serialise deeper in the stack. The sweep
# crosses that edge wherever it lies; 10,000 levels is far past it.
DEPTHS = [*range(940, 1001, 3), 10_000]


@pytest.mark.parametrize(
    "shape",
    ["line", "extra_field", "template_field", "messages_column", "message_content", "batch_body", "csv_messages"],
)
def test_deeply_nested_json(tmp_path: Path, shape: str) -> None:
    for depth in DEPTHS:
        deep, options = _nested(depth), {}
        name = "deep.csv" if shape == "csv_messages" else "deep.jsonl"
        text = {
            "line": f'{{"prompt": "first"}}\n{deep}\n',
            "extra_field": f'{{"prompt": "hi", "meta": {deep}}}\n',
            "template_field": f'{{"text": "hi", "meta": {deep}}}\n',
            "messages_column": f'{{"messages": {deep}}}\n',
            "message_content": f'{{"messages": [{{"role": "user", "content": {deep}}}]}}\n',
            "batch_body": (
                '{"custom_id": "a", "url": "/v1/chat/completions", "body": {"model": "m", '
                f'"messages": [{{"role": "user", "content": "hi"}}], "metadata": {deep}}}}}\n'
            ),
            "csv_messages": 'prompt,messages\nhi,"' + deep + '"\n',
        }[shape]
        if shape == "template_field":
            options["template"] = "{text}: {meta}"
        for skip in (False, True):
            read_all(write(tmp_path, name, text.encode()), on_bad_row="skip" if skip else "fail", **options)


# --- Parquet ----------------------------------------------------------------------------------


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


VALID_PARQUET = parquet_bytes(
    pa.table(
        {
            "id": [f"r{i}" for i in range(50)],
            "prompt": [f"p {i}" for i in range(50)],
            "max_tokens": [i % 7 or None for i in range(50)],
        }
    )
)


@FEW
@given(
    cut=st.integers(0, len(VALID_PARQUET)),
    flips=st.lists(st.tuples(st.integers(0, len(VALID_PARQUET) - 1), st.integers(0, 255)), max_size=4),
)
def test_parquet_truncated_or_corrupted(tmp_path: Path, cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID_PARQUET)
    for at, value in flips:
        data[at] = value
    read_all(write(tmp_path, "p.parquet", bytes(data[:cut] if not flips else data)), on_bad_row="skip")


@FEW
@given(data=st.binary(max_size=300), magic=st.booleans())
def test_parquet_random_bytes(tmp_path: Path, data: bytes, magic: bool) -> None:
    assume(data or magic)
    read_all(write(tmp_path, "p.parquet", b"PAR1" + data + b"PAR1" if magic else data))


columns = st.sampled_from(
    [
        pa.array(["a", "b", None]),
        pa.array([1, None, 3]),
        pa.array([1.5, float("nan"), None]),
        pa.array([b"\x00\xff", b"", None]),
        pa.array([[1, 2], None, []]),
        pa.array([{"x": 1}, None, {"x": None}]),
        pa.array([True, False, None]),
        pa.array(["a", "a", "b"]).dictionary_encode(),
        pa.array([0, 1, 2], type=pa.timestamp("s")),
        pa.array(["", "   ", "ok"]),
    ]
)


@FEW
@given(
    names=st.lists(
        st.sampled_from(["prompt", "id", "messages", "max_tokens", "temperature", "text", "model", "tools", "x"]),
        min_size=1,
        max_size=4,
        unique=True,
    ),
    data=st.data(),
    template=st.booleans(),
)
def test_parquet_with_random_column_types(tmp_path: Path, names: list[str], data: Any, template: bool) -> None:
    table = pa.table({name: data.draw(columns) for name in names})
    options = {"template": "{" + names[0] + "}"} if template else {}
    read_all(write(tmp_path, "t.parquet", parquet_bytes(table)), on_bad_row="skip", **options)
