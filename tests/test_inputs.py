"""inputs/ (readers.py, rows.py): every format, every bad input, and the guarantees (streaming, only InputError)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchrun.errors import InputError
from batchrun.inputs.prompt import BadRow, Prompt
from batchrun.inputs.rows import read_prompts
from batchrun.inputs.scan import count_rows
from batchrun.inputs.sessions import file_sessions
from batchrun.inputs.traces import trace_offsets

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def jsonl(tmp_path: Path, *rows: Any, name: str = "p.jsonl") -> Path:
    return write(tmp_path, name, "".join(r if isinstance(r, str) else json.dumps(r) for r in rows))


def read(path: Path, **options: Any) -> list[Prompt | BadRow]:
    return list(read_prompts(path, **options))


def fails(path: Path, **options: Any) -> InputError:
    with pytest.raises(InputError) as caught:
        read(path, **options)
    return caught.value


def user_text(prompt: Prompt | BadRow) -> str:
    assert isinstance(prompt, Prompt) and prompt.messages
    return prompt.messages[-1]["content"]


# --- formats ----------------------------------------------------------------------------------


def test_csv_rows_become_user_messages_with_row_ids_and_start_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", 'id,prompt\na,"Hello, world"\nb,"two\nlines"\nc,last\n')
    prompts = read(path)
    assert [(p.id, p.row, p.line) for p in prompts] == [("a", 0, 2), ("b", 1, 3), ("c", 2, 5)]
    assert prompts[0].messages == [{"role": "user", "content": "Hello, world"}]
    assert user_text(prompts[1]) == "two\nlines"


def test_csv_bom_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", b"\xef\xbb\xbfprompt\r\nfirst\r\n\r\nsecond\r\n")
    prompts = read(path)
    assert [user_text(p) for p in prompts] == ["first", "second"]
    assert [p.line for p in prompts] == [2, 4]


def test_jsonl_skips_blank_lines_and_keeps_exact_line_numbers(tmp_path: Path) -> None:
    path = jsonl(tmp_path, "\n", '{"prompt": "a"}\n', "   \n", '{"prompt": "b"}\n')
    assert [(p.row, p.line, user_text(p)) for p in read(path)] == [(0, 2, "a"), (1, 4, "b")]


def test_parquet_rows_with_typed_params(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"id": [7, 8], "prompt": ["x", "y"], "max_tokens": [10.0, None], "note": ["n", "m"]}), path)
    prompts = read(path, id_column="id")
    assert [(p.id, p.row, p.line, user_text(p)) for p in prompts] == [("7", 0, 1, "x"), ("8", 1, 2, "y")]
    assert [p.params for p in prompts] == [{"max_tokens": 10}, {}]


def test_parquet_errors_say_row(tmp_path: Path) -> None:
    path = tmp_path / "p.pq"
    pq.write_table(pa.table({"prompt": ["ok", ""]}), path)
    err = fails(path)
    assert str(err).startswith(f"{path} row 2, column 'prompt': the prompt is empty")
    assert (err.path, err.line, err.column) == (str(path), 2, "prompt")


@pytest.mark.parametrize("name", ["p.ndjson", "p.json", "p.JSONL"])
def test_json_lines_extensions(tmp_path: Path, name: str) -> None:
    assert user_text(read(jsonl(tmp_path, {"prompt": "hi"}, name=name))[0]) == "hi"


def test_format_option_overrides_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "prompts.txt", "prompt\nhello\n")
    assert user_text(read(path, fmt="csv")[0]) == "hello"


def test_unknown_extension_asks_for_format(tmp_path: Path) -> None:
    path = write(tmp_path, "prompts.txt", "prompt\nhello\n")
    with pytest.raises(InputError, match=r"prompts\.txt.*'\.txt'.*pass --format"):
        read_prompts(path)


def test_batch_api_lines_are_detected(tmp_path: Path) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    path = jsonl(tmp_path, {"custom_id": "r-1", "method": "POST", "url": "/v1/chat/completions", "body": body})
    [prompt] = read(path, system="ignored for batch lines", id_column="nope")
    assert isinstance(prompt, Prompt)
    assert (prompt.id, prompt.body, prompt.messages) == ("r-1", body, None)


def test_batch_api_other_endpoint_is_a_bad_row(tmp_path: Path) -> None:
    line = {"custom_id": "e", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}}
    err = fails(jsonl(tmp_path, line))
    assert "line 1, column 'url'" in str(err) and "not supported" in str(err)


def test_samples_are_valid() -> None:
    assert [p.id for p in read(SAMPLES / "prompts.csv")] == [f"q{i:03}" for i in range(1, 41)]
    assert all(isinstance(p, Prompt) for p in read(SAMPLES / "prompts.jsonl"))
    assert all(isinstance(p, Prompt) and p.body for p in read(SAMPLES / "batch_api.jsonl"))


def test_bad_sample_has_one_bad_row_of_each_kind() -> None:
    items = read(SAMPLES / "bad_prompts.csv", on_bad_row="skip")
    reasons = [i.reason for i in items if isinstance(i, BadRow)]
    assert len(reasons) == 5 and len(items) == 7
    assert "line 3, column 'prompt': the prompt is empty" in reasons[0]


# --- prompt text: columns, system, template, messages ----------------------------------------


def test_only_text_column_is_the_prompt(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", "id,question,max_tokens\n1,Why?,5\n")
    assert user_text(read(path)[0]) == "Why?"


def test_ambiguous_prompt_column_lists_columns(tmp_path: Path) -> None:
    err = fails(write(tmp_path, "p.csv", "title,body\na,b\n"))
    assert "'title', 'body'" in str(err) and "--prompt-column" in str(err)


def test_prompt_column_option(tmp_path: Path) -> None:
    assert user_text(read(write(tmp_path, "p.csv", "title,body\na,b\n"), prompt_column="body")[0]) == "b"


@pytest.mark.parametrize("option", ["prompt_column", "id_column"])
def test_named_column_missing_from_header(tmp_path: Path, option: str) -> None:
    err = fails(write(tmp_path, "p.csv", "prompt\nhi\n"), **{option: "text"})
    assert "no column 'text'" in str(err) and "'prompt'" in str(err)


def test_system_message_comes_first_unless_row_has_one(tmp_path: Path) -> None:
    own = [{"role": "system", "content": "mine"}, {"role": "user", "content": "q"}]
    path = jsonl(tmp_path, {"prompt": "hi"}, "\n", {"messages": own})
    first, second = read(path, system="be brief")
    assert isinstance(first, Prompt) and isinstance(second, Prompt)
    assert first.messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert second.messages == own


def test_template_fills_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", "text,lang,prompt\nbonjour,French,unused\n")
    assert user_text(read(path, template="Translate from {lang}: {text} {{literal}}")[0]) == (
        "Translate from French: bonjour {literal}"
    )


def test_template_renders_non_text_jsonl_values_as_json(tmp_path: Path) -> None:
    path = jsonl(tmp_path, {"n": 3, "tags": ["a", "b"]})
    assert user_text(read(path, template="{n}: {tags}")[0]) == '3: ["a", "b"]'


def test_template_column_missing_from_header_is_named(tmp_path: Path) -> None:
    err = fails(write(tmp_path, "p.csv", "prompt\nhi\n"), template="Summarise: {text}")
    assert "{text}" in str(err) and "no column 'text'" in str(err)


def test_template_field_missing_from_jsonl_row_is_a_bad_row(tmp_path: Path) -> None:
    err = fails(jsonl(tmp_path, {"text": "a"}, "\n", {"other": "b"}), template="S: {text}")
    assert (err.line, err.column) == (2, "text") and "missing --template field" in str(err)


@pytest.mark.parametrize("template", ["{row.__class__}", "{x[0]}", "{x!r}", "{x:>10}", "{x:{y}}", "{}", "{0}"])
def test_template_rejects_anything_but_plain_names(tmp_path: Path, template: str) -> None:
    path = write(tmp_path, "p.csv", "x,y\na,b\n")
    with pytest.raises(InputError, match="not allowed: only plain"):
        read_prompts(path, template=template)  # at call time, before any row is read


@pytest.mark.parametrize("template", ["{x", "x}", "no fields"])
def test_malformed_template(tmp_path: Path, template: str) -> None:
    with pytest.raises(InputError, match="--template"):
        read_prompts(write(tmp_path, "p.csv", "x\na\n"), template=template)


def test_messages_column_in_csv_is_json_text(tmp_path: Path) -> None:
    conversation = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    cell = json.dumps(conversation).replace('"', '""')
    path = write(tmp_path, "p.csv", f'id,messages\n1,"{cell}"\n')
    assert read(path)[0].messages == conversation  # type: ignore[union-attr]


def test_empty_messages_cell_falls_back_to_prompt(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", "prompt,messages\nhello,\n")
    assert user_text(read(path)[0]) == "hello"


@pytest.mark.parametrize(
    "messages, problem",
    [
        ("not json", "not valid JSON"),
        ({"role": "user"}, "non-empty list"),
        ([], "an empty list"),
        (["hi"], "message 0: expected an object"),
        ([{"role": "usr", "content": "hi"}], "message 0: role 'usr'"),
        ([{"role": "user", "content": "a"}, {"role": "user"}], "message 1: needs 'content'"),
    ],
)
def test_bad_messages_name_the_column(tmp_path: Path, messages: Any, problem: str) -> None:
    err = fails(jsonl(tmp_path, {"messages": messages}))
    assert (err.line, err.column) == (1, "messages") and problem in str(err)


def test_assistant_tool_call_without_content_is_valid(tmp_path: Path) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c", "content": "42"},
    ]
    assert read(jsonl(tmp_path, {"messages": messages}))[0].messages == messages  # type: ignore[union-attr]


# --- per-row request fields -------------------------------------------------------------------


def test_csv_params_are_typed_and_blank_means_unset(tmp_path: Path) -> None:
    tools = json.dumps([{"type": "function", "function": {"name": "f"}}]).replace('"', '""')
    path = write(
        tmp_path,
        "p.csv",
        "prompt,model,max_tokens,temperature,tools,tool_choice\n"
        f'a,m1, 256 ,0.5,"{tools}",required\n'
        "b,,,,,\n"
        'c,m2,256.0,1,[],"{""type"": ""function""}"\n',
    )
    a, b, c = (p.params for p in read(path))  # type: ignore[union-attr]
    assert a == {
        "model": "m1",
        "max_tokens": 256,
        "temperature": 0.5,
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": "required",
    }
    assert b == {}
    assert c == {"model": "m2", "max_tokens": 256, "temperature": 1.0, "tool_choice": {"type": "function"}}
    assert isinstance(c["temperature"], float)


def test_jsonl_null_params_are_unset(tmp_path: Path) -> None:
    path = jsonl(tmp_path, {"prompt": "a", "max_completion_tokens": 9, "temperature": None})
    assert read(path)[0].params == {"max_completion_tokens": 9}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "column, value",
    [
        ("max_tokens", "lots"),
        ("max_tokens", 0),
        ("max_tokens", 2.5),
        ("max_tokens", True),
        ("max_tokens", "nan"),
        ("temperature", -1),
        ("temperature", "warm"),
        ("temperature", "inf"),
        ("model", 5),
        ("tools", "{not json"),
        ("tools", {"type": "function"}),
        ("tool_choice", "sometimes"),
    ],
)
def test_bad_param_value_names_the_column(tmp_path: Path, column: str, value: Any) -> None:
    err = fails(jsonl(tmp_path, {"prompt": "ok"}, "\n", {"prompt": "x", column: value}))
    assert (err.path, err.line, err.column) == (str(tmp_path / "p.jsonl"), 2, column)
    assert f"line 2, column '{column}'" in str(err) and "--on-bad-row skip" in str(err)


def non_finite_file(tmp_path: Path, fmt: str, column: str, spelling: str) -> Path:
    """Two rows; the second has a non-finite `column` ('nan', 'inf' or '-inf') as each format writes it."""
    value = float(spelling)
    if fmt == "csv":
        return write(tmp_path, "p.csv", f"prompt,{column}\nok,1\nx,{spelling}\n")
    if fmt == "jsonl":  # Python's json writes NaN / Infinity / -Infinity, as pandas records dumped by hand have
        return jsonl(tmp_path, {"prompt": "ok", column: 1}, "\n", {"prompt": "x", column: value})
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": ["ok", "x"], column: pa.array([1.0, value], from_pandas=False)}), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("column", ["temperature", "max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("spelling", ["nan", "inf", "-inf"])
def test_non_finite_row_setting_is_a_bad_row_never_dropped(
    tmp_path: Path, fmt: str, column: str, spelling: str
) -> None:
    path = non_finite_file(tmp_path, fmt, column, spelling)
    err = fails(path)
    unit, line = {"csv": ("line", 3), "jsonl": ("line", 2), "parquet": ("row", 2)}[fmt]
    assert (err.path, err.line, err.column) == (str(path), line, column)
    assert str(err).startswith(f"{path} {unit} {line}, column '{column}': ")
    word = {"nan": "NaN", "inf": "infinite", "-inf": "infinite"}[spelling]
    assert word in str(err) and "leave it empty" in str(err) and "--on-bad-row skip" in str(err)
    first, second = read(path, on_bad_row="skip")
    assert isinstance(first, Prompt) and isinstance(second, BadRow) and f"column '{column}'" in second.reason


def test_nan_in_a_plain_data_column_is_data(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": ["x"], "score": pa.array([float("nan")], from_pandas=False)}), path)
    (prompt,) = read(path)
    assert isinstance(prompt, Prompt) and prompt.params == {} and user_text(prompt) == "x"
    assert prompt.data is not None and prompt.data["score"] != prompt.data["score"]  # NaN, as written


def test_nan_prompt_or_template_field_is_a_bad_row_that_says_nan(tmp_path: Path) -> None:
    nan = float("nan")
    err = fails(jsonl(tmp_path, {"prompt": "ok"}, "\n", {"prompt": nan}))
    assert (err.line, err.column) == (2, "prompt") and "NaN" in str(err)
    err = fails(jsonl(tmp_path, {"text": "a"}, "\n", {"text": nan}), template="S: {text}")
    assert (err.line, err.column) == (2, "text") and "NaN" in str(err)


def test_nan_think_time_is_an_error_not_zero(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path,
        {"prompt": "a", "session_id": "s", "turn": 1},
        "\n",
        {"prompt": "b", "session_id": "s", "turn": 2, "think_s": float("nan")},
    )
    with pytest.raises(InputError) as caught:
        file_sessions(path, None, read(path))
    err = caught.value
    assert (err.path, err.line, err.column) == (str(path), 2, "think_s") and "NaN" in str(err)
    assert str(err).count(str(path)) == 1  # said once, not "p.jsonl line 2: p.jsonl line 2"


@pytest.mark.parametrize("column, value", [("delay_s", "nan"), ("delay_s", "-1"), ("timestamp", "inf")])
def test_trace_times_must_be_finite(tmp_path: Path, column: str, value: str) -> None:
    path = write(tmp_path, "t.csv", f"prompt,{column}\na,0\nb,{value}\n")
    with pytest.raises(InputError) as caught:
        trace_offsets(path, None, 1.0)
    err = caught.value
    assert (err.line, err.column) == (3, column) and str(err).count(str(path)) == 1


# --- ids ---------------------------------------------------------------------------------------


def test_ids_are_row_numbers_without_an_id_column(tmp_path: Path) -> None:
    path = jsonl(tmp_path, {"prompt": "a", "key": "k1"}, "\n", {"prompt": "b", "key": "k1"})
    assert [p.id for p in read(path)] == ["0", "1"]
    assert [p.id for p in read(path, id_column="key", on_bad_row="skip")] == [
        "k1",
        "k1#duplicate-row-1",
    ]  # 2nd: a BadRow with an id of its own


def test_an_id_column_is_used_by_default(tmp_path: Path) -> None:
    assert [p.id for p in read(jsonl(tmp_path, {"id": 5, "prompt": "a"}, "\n", {"id": "x", "prompt": "b"}))] == [
        "5",
        "x",
    ]


def test_id_column_and_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", "id,prompt\nx,a\ny,b\nx,c\n")
    err = fails(path, id_column="id")
    assert (err.line, err.column) == (4, "id") and "duplicate id 'x'" in str(err)
    assert str(err).startswith(f"{path} line 4, column 'id'")


def test_duplicate_custom_ids(tmp_path: Path) -> None:
    line = {"custom_id": "same", "body": {"messages": [{"role": "user", "content": "q"}]}}
    items = read(jsonl(tmp_path, line, "\n", line), on_bad_row="skip")
    assert isinstance(items[1], BadRow) and items[1].id == "same#duplicate-row-1" and "duplicate id" in items[1].reason


def test_empty_id_is_a_bad_row(tmp_path: Path) -> None:
    err = fails(write(tmp_path, "p.csv", "id,prompt\n,a\n"), id_column="id")
    assert (err.line, err.column) == (2, "id")


# --- bad rows, fail and skip --------------------------------------------------------------------


def test_skip_mode_yields_bad_rows_and_keeps_going(tmp_path: Path) -> None:
    path = jsonl(tmp_path, {"prompt": "a"}, "\n", "  {oops\n", "[1, 2]\n", {"prompt": ""}, "\n", {"prompt": "z"})
    items = read(path, on_bad_row="skip")
    assert [type(i).__name__ for i in items] == ["Prompt", "BadRow", "BadRow", "BadRow", "Prompt"]
    bad = [i for i in items if isinstance(i, BadRow)]
    assert [(b.id, b.row, b.line) for b in bad] == [("1", 1, 2), ("2", 2, 3), ("3", 3, 4)]
    assert bad[0].reason.startswith(f"{path} line 2, column 4: invalid JSON")
    assert "got an array" in bad[1].reason and "prompt is empty" in bad[2].reason
    assert "--on-bad-row" not in bad[0].reason
    assert (items[-1].row, items[-1].line) == (4, 5)


def test_invalid_json_fails_with_line_and_character(tmp_path: Path) -> None:
    err = fails(jsonl(tmp_path, {"prompt": "a"}, "\n", '{"prompt": "b",}\n'))
    assert str(err).startswith(f"{tmp_path / 'p.jsonl'} line 2, column 16: invalid JSON")
    assert err.hint == "fix the row or use --on-bad-row skip"


def test_non_object_json_line(tmp_path: Path) -> None:
    err = fails(jsonl(tmp_path, {"prompt": "a"}, "\n", '"just a string"\n'))
    assert err.line == 2 and "expected a JSON object" in str(err)


def test_json_array_file_suggests_jsonl(tmp_path: Path) -> None:
    err = fails(write(tmp_path, "p.json", '[{"prompt": "a"},\n {"prompt": "b"}]\n'), on_bad_row="skip")
    assert "JSON array" in str(err) and "jq" in str(err)


def test_csv_row_with_wrong_field_count(tmp_path: Path) -> None:
    err = fails(write(tmp_path, "p.csv", "id,prompt\n1,a,b,c\n"))
    assert err.line == 2 and "4 fields but the header has 2" in str(err)


def test_csv_trailing_empty_fields_are_tolerated(tmp_path: Path) -> None:
    assert user_text(read(write(tmp_path, "p.csv", "prompt,\nhi,,\n"))[0]) == "hi"


# --- whole-file problems: always raised, with a next step ---------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.csv: no such file \(check the path"):
        read_prompts(tmp_path / "nope.csv")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "data.csv"
    folder.mkdir()
    write(folder, "prompts.csv", "prompt\na\n")
    with pytest.raises(InputError, match=r"is a directory.*pass a file inside it, e\.g\. .*prompts\.csv"):
        read_prompts(folder)


@pytest.mark.parametrize("name", ["p.csv", "p.jsonl", "p.parquet"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match=r"is empty"):
        read_prompts(write(tmp_path, name, b""), on_bad_row="skip")


def test_header_only_csv(tmp_path: Path) -> None:
    err = fails(write(tmp_path, "p.csv", "id,prompt\n\n"), on_bad_row="skip")
    assert str(err).startswith(f"{tmp_path / 'p.csv'}: has a header but no rows")


def test_blank_only_jsonl(tmp_path: Path) -> None:
    assert "only blank lines" in str(fails(write(tmp_path, "p.jsonl", "\n  \n"), on_bad_row="skip"))


@pytest.mark.parametrize("name", ["p.csv", "p.jsonl"])
def test_latin1_line_names_line_and_byte(tmp_path: Path, name: str) -> None:
    first = "prompt\nok\n" if name.endswith("csv") else '{"prompt": "ok"}\n'
    path = write(tmp_path, name, first.encode() + "caf\xe9\n".encode("latin-1"))
    err = fails(path)
    assert err.line == first.count("\n") + 1
    assert "byte 0xe9" in str(err) and "re-save the file as UTF-8" in str(err)
    if name.endswith("jsonl"):
        assert f"at byte offset {len(first) + 3}" in str(err)


@pytest.mark.parametrize("name", ["p.csv", "p.jsonl"])
def test_skip_passes_over_an_undecodable_line_late_in_the_file(tmp_path: Path, name: str) -> None:
    rows = (
        ["prompt", "one", "caf\xe9", "three"]
        if name.endswith("csv")
        else ['{"prompt": "one"}', '{"prompt": "caf\xe9"}', '{"prompt": "three"}']
    )
    path = write(tmp_path, name, "\n".join(rows).encode("latin-1") + b"\n")
    items = list(read_prompts(path, on_bad_row="skip"))
    assert [type(i).__name__ for i in items] == ["Prompt", "BadRow", "Prompt"]
    assert "not UTF-8" in items[1].reason and "0xe9" in items[1].reason
    assert items[2].messages == [{"role": "user", "content": "three"}]


def test_utf16_file(tmp_path: Path) -> None:
    err = fails(write(tmp_path, "p.csv", "prompt\nhi\n".encode("utf-16")))
    assert "UTF-16" in str(err) and "UTF-8" in str(err)


def test_unreadable_parquet(tmp_path: Path) -> None:
    err = fails(write(tmp_path, "p.parquet", b"PAR1 this is not parquet"))
    assert "not a readable Parquet file" in str(err)


def test_unknown_on_bad_row(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--on-bad-row"):
        read_prompts(write(tmp_path, "p.csv", "prompt\na\n"), on_bad_row="ignore")  # type: ignore[arg-type]


# --- guarantees -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["big.csv", "big.jsonl"])
def test_first_prompt_does_not_read_the_whole_file(tmp_path: Path, name: str) -> None:
    row = "a moderately long prompt that pads every row of this file to a realistic size " * 2
    path = tmp_path / name
    with open(path, "w", encoding="utf-8") as f:
        f.write("id,prompt\n" if name.endswith(".csv") else "")
        for i in range(200_000):
            f.write(f"{i},{row}\n" if name.endswith(".csv") else json.dumps({"id": i, "prompt": row}) + "\n")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        stream = read_prompts(path, id_column="id")
        first = next(stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stream.close()  # type: ignore[attr-defined]
    assert isinstance(first, Prompt) and first.id == "0"
    assert peak < size / 50, (peak, size)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=st.binary(max_size=300)
    | st.text(max_size=200).map(str.encode)
    | st.text(st.sampled_from(list('prompt,messages"role:content[]{}\n\r 0.5')), max_size=200).map(str.encode),
    name=st.sampled_from(["f.csv", "f.jsonl"]),
    skip=st.booleans(),
)
def test_arbitrary_bytes_give_prompts_or_input_error(tmp_path: Path, content: bytes, name: str, skip: bool) -> None:
    path = write(tmp_path, name, content)
    try:
        items = list(read_prompts(path, on_bad_row="skip" if skip else "fail"))
    except InputError:
        return
    assert all(isinstance(i, (Prompt, BadRow)) for i in items)


# --- counting rows (the progress total, the pacing warning) ------------------------------------


def test_count_rows_respects_quoted_newlines_and_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_bytes(b'id,prompt\n1,"two\nlines"\n\n2,plain\n3,"a ""quoted"" word"\n4,last')
    assert count_rows(tmp_path / "p.csv") == 4
    (tmp_path / "p.jsonl").write_text('{"prompt": "a"}\n\n{"prompt": "b"}\n')
    assert count_rows(tmp_path / "p.jsonl") == 2
    assert count_rows(tmp_path / "missing.csv") is None


def test_count_rows_of_parquet_and_of_a_file_named_by_format(tmp_path: Path) -> None:
    pq.write_table(pa.table({"prompt": ["a", "b", "c"]}), tmp_path / "p.parquet")
    assert count_rows(tmp_path / "p.parquet") == 3
    (tmp_path / "prompts.txt").write_text('prompt\n"a\nb"\nc\n')
    assert count_rows(tmp_path / "prompts.txt") is None  # no format: no count
    assert count_rows(tmp_path / "prompts.txt", "csv") == 2
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    assert count_rows(tmp_path / "broken.parquet") is None


@pytest.mark.parametrize(
    "name, content",
    [
        ("p.csv", "id,prompt\nq0,a\n\nq1,b\n"),
        ("p.jsonl", '{"prompt": "a"}\n\n{"prompt": "b"}\n'),
    ],
)
def test_count_rows_agrees_with_the_reader(tmp_path: Path, name: str, content: str) -> None:
    path = write(tmp_path, name, content)
    assert count_rows(path) == len(read(path)) == 2


def test_csv_quote_left_open_is_an_error_at_its_line_not_one_giant_prompt(tmp_path: Path) -> None:
    # Without strict parsing, row 2's open quote swallowed rows 3 and 4 into its prompt: two rows lost.
    path = write(tmp_path, "p.csv", 'id,prompt\n1,hi\n2,"open\n3,three\n4,four\n')
    err = fails(path)
    assert "line 3" in str(err) and "unexpected end of data" in str(err) and "quoting" in str(err)


def test_csv_text_after_a_closing_quote_is_an_error_not_glued_on(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", 'id,prompt\n1,"quoted"tail\n')
    err = fails(path)
    assert "line 2" in str(err) and "quoting" in str(err)
