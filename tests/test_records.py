"""store/records.py's RecordSink: records are written and flushed by a writer thread, off the
caller's event loop, at least every flush window and on every way out; what a SIGKILL may lose
is the last window (and what was in flight), and a resume sends exactly those rows again, once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.errors import OutputError
from batchrun.sim import SimConfig, SimProcess
from batchrun.store.outputs import done_ids
from batchrun.store.records import Record, RecordSink, read_records, record_lines


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines() if path.exists() else []


def test_write_only_queues_and_flush_or_close_puts_whole_lines_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    sink = RecordSink(path, flush_every_s=3600)  # the window never ends by itself here
    sink.write(Record(id="a", row=0))
    sink.write_many([Record(id="b", row=1), Record(id="c", row=2)])
    assert lines(path) == []  # nothing written on the caller's thread
    sink.flush()
    assert [json.loads(line)["id"] for line in lines(path)] == ["a", "b", "c"]
    sink.write(Record(id="d", row=3))
    sink.close()
    assert [r.id for r in read_records(path)] == ["a", "b", "c", "d"]
    sink.close()  # twice is harmless
    with pytest.raises(OutputError, match="closed"):
        sink.write(Record(id="e", row=4))


def test_the_writer_flushes_within_its_window_without_being_asked(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    with RecordSink(path, flush_every_s=0.01) as sink:
        sink.write(Record(id="a", row=0))
        deadline = time.monotonic() + 10  # generous: only a stuck writer fails
        while not lines(path) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(lines(path)) == 1


def test_an_exception_in_the_with_block_still_flushes(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    with pytest.raises(RuntimeError):
        with RecordSink(path, flush_every_s=3600) as sink:
            sink.write(Record(id="a", row=0))
            raise RuntimeError("boom")
    assert [r.id for r in read_records(path)] == ["a"]


def test_a_process_that_exits_without_close_still_flushes(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    script = textwrap.dedent(f"""
        from pathlib import Path
        from batchrun.store.records import Record, RecordSink
        sink = RecordSink(Path({str(path)!r}), flush_every_s=3600)
        sink.write(Record(id="a", row=0))
        raise SystemExit(3)                  # no close(): the exit hook flushes
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert [r.id for r in read_records(path)] == ["a"]


def test_a_full_disk_is_a_clear_output_error_in_the_callers_thread(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    sink = RecordSink(Path("/dev/full"), flush_every_s=3600)
    sink.write(Record(id="a", row=0))
    with pytest.raises(OutputError, match=r"cannot write /dev/full: No space left on device \(is the disk full\?\)"):
        sink.flush()
    with pytest.raises(OutputError, match="No space left"):  # and every write after it
        sink.write(Record(id="b", row=1))
    with pytest.raises(OutputError, match="No space left"):
        sink.close()


def test_sigkill_loses_only_the_last_window_and_resume_sends_those_rows_once(tmp_path: Path) -> None:
    """A kill in the middle of a 2 s flush window: the file holds only whole lines written at
    flushes; the rows that finished in the window were sent but are not on disk, so a resume
    sends each of them again, exactly once, and every row ends ok once."""
    n = 2000
    write_prompts(tmp_path / "p.csv", n)
    records = tmp_path / "o" / "records.jsonl"
    # 10 ms to the first token, 4 tokens 2 ms apart, 4 at a time: at most ~250 rows/s however fast
    # the machine, so the 2,000 rows cannot all finish before the kill (~3 s in).
    with SimProcess(SimConfig(fixed_ttft_s=0.01, fixed_itl_s=0.002, output_tokens=4)) as sim:
        code = "import batchrun.store.records as r; r.FLUSH_EVERY_S = 2.0; from batchrun.cli import main; main()"
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "run", "p.csv", "--base-url", sim.base_url, "--out", "o", "-q", "-c", "4"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not lines(records) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)  # the first flush
        time.sleep(1.0)  # well inside the next 2 s window
        assert proc.poll() is None, f"the run ended before the kill: {proc.communicate()[1][-2000:]}"
        proc.kill()
        proc.communicate(timeout=30)
        sent_first = sim.stats()["by_endpoint"]["chat"]
        on_disk = [json.loads(line) for line in lines(records)]  # whole lines only: flushes are whole
        assert 0 < len(on_disk) < n
        lost = sent_first - len(on_disk)  # finished in the window, or in flight (at most 4)
        assert lost > 4, f"nothing finished in the window: {sent_first} sent, {len(on_disk)} on disk"
        assert len(done_ids(records)) == len(on_disk)  # what resume skips: exactly what is on disk
        again = CliRunner().invoke(
            app,
            ["run", "--resume", str(tmp_path / "o"), "--base-url", sim.base_url, "-q", "-c", "4"],
            catch_exceptions=False,
        )
        assert again.exit_code == 0, again.output
        sent_second = sim.stats()["by_endpoint"]["chat"] - sent_first
    ids = [r.id for r in read_records(records)]
    assert sorted(ids) == sorted(f"q{i}" for i in range(n))  # every row once, none twice
    assert sent_second == n - len(on_disk)  # resume sent exactly the rows not on disk


# Record fields batchrun fills itself (figures, the row, the request as sent, labels). Every other
# field holds provider text and must be in PROVIDER_VALUES / PROVIDER_MESSAGES, so redact_record
# masks it: a new field has to be put on one side or the other.
OURS = {
    "id",
    "row",
    "status",
    "http_status",
    "attempts",
    "prompt_tokens",
    "completion_tokens",
    "tokens_estimated",
    "batch_id",
    "batch_created_at",
    "batch_completed_at",
    "queued_at",
    "scheduled_s",
    "queue_wait_s",
    "sent_s",
    "end_s",
    "ttft_s",
    "latency_s",
    "total_s",
    "itl_s",
    "output_chunks",
    "output_tokens_per_s",
    "endpoint",
    "session",
    "ttfo_s",
    "reasoning_tokens",
    "input",
    "request",
    "synthetic_id",
    "reconnects",
    "cached_tokens",
    "empty",
    "tool_choice_ignored",
    "usage_chunk",
}


def test_every_record_field_is_either_ours_or_redacted_as_provider_text() -> None:
    from dataclasses import fields

    from batchrun.store.records import PROVIDER_MESSAGES, PROVIDER_VALUES

    names = {f.name for f in fields(Record)}
    provider = set(PROVIDER_VALUES) | set(PROVIDER_MESSAGES)
    assert not provider & OURS and names == provider | OURS, names ^ (provider | OURS)


def test_redact_record_masks_provider_text_and_keeps_the_users_own() -> None:
    from batchrun.store.records import Attempt, redact_record

    secret = "hrd-SECRET-0a1b2c3d"
    record = Record(
        id="a",
        row=0,
        text=f"echo {secret}",
        error=f"HTTP 500: Bearer {secret} and Bearer other-tok",
        request_id=f"req-{secret}",
        tool_calls=[{"name": "f", "arguments": f'{{"k": "{secret}"}}'}],
        attempt_log=[Attempt(status="error", sent_s=0.0, duration_s=1.0, error=f"key={secret}")],
        input={"prompt": f"my own {secret}"},
        other_choices=[secret],
        parsed={secret: secret},
    )
    redact_record(record, (secret,))
    assert record.text == "echo ***" and record.request_id == "req-***" and record.other_choices == ["***"]
    assert record.error == "HTTP 500: Bearer *** and Bearer ***"  # messages: patterns too
    assert record.tool_calls == [{"name": "f", "arguments": '{"k": "***"}'}] and record.parsed == {"***": "***"}
    assert record.attempt_log[0].error == "key=***"
    assert record.input == {"prompt": f"my own {secret}"}  # the user's row is theirs
    answer = Record(id="b", row=1, text="Authorization: Bearer $TOKEN")  # an answer is not a message
    assert redact_record(answer, (secret,)).text == "Authorization: Bearer $TOKEN"


def test_records_jsonl_has_one_reader_for_every_use(tmp_path) -> None:
    """record_lines decides what a record line is, for read_records and for the index of --resume
    and the results alike: a blank line, a JSON value that is no object, and a torn last line are
    passed over; an object that is no record (no id) is left to each reader to refuse."""
    lines = [
        Record(id="a", row=0).to_json() + b"\n",
        b"\n",
        b"[1, 2]\n",
        b'{"no": "id"}\n',
        Record(id="b", row=1).to_json() + b"\n",
        b'{"id": "c", "ro',
    ]
    path = tmp_path / "records.jsonl"
    path.write_bytes(b"".join(lines))
    starts = [sum(map(len, lines[:i])) for i in range(len(lines))]
    assert [offset for offset, _ in record_lines(path)] == [starts[0], starts[3], starts[4]]
    assert [r.id for r in read_records(path)] == ["a", "b"]
    assert done_ids(path) == {"a", "b"}
    assert list(record_lines(tmp_path / "none.jsonl")) == []
