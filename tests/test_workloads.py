"""Workloads end to end on the built-in endpoint (completions, embeddings, synthetic lengths,
prefix sharing, time slices) and their pure parts on hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

from batchrun.analysis.slices import time_slices
from batchrun.analysis.workloads import embedding_figures, endpoint_figures, schedule_lag
from batchrun.cli import app
from batchrun.endpoint.embeddings import split_tokens
from batchrun.errors import ConfigError
from batchrun.inputs.synthetic import fit_sizer, parse_spec, plan_lengths
from batchrun.store.records import Record, read_records


def invoke(*args: str, base_url: str | None = None):
    extra = ["--base-url", base_url] if base_url else []
    return CliRunner().invoke(app, [*args, *extra], catch_exceptions=False)


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())["summary"]


# --- empty answers (chat and completions) ---


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_an_empty_answer_the_server_ended_is_ok_and_counted(fast_sim, tmp_path: Path, endpoint: str) -> None:
    """[[sim:empty]]: finish_reason stop, usage completion_tokens 1, no content, as when a stop
    sequence matches the first token."""
    write_prompts(tmp_path / "p.csv", ["[[sim:empty]] say nothing", "say something"])
    result = invoke(
        "run",
        "p.csv",
        "--endpoint",
        endpoint,
        "--out",
        "o",
        "--max-tokens",
        "4",
        "--retries",
        "0",
        base_url=fast_sim.base_url,
    )
    assert result.exit_code == 0, result.output
    records = {r.id: r for r in read_records(tmp_path / "o" / "records.jsonl")}
    empty, full = records["q0"], records["q1"]
    assert (empty.status, empty.text, empty.finish_reason, empty.completion_tokens) == ("ok", "", "stop", 1)
    assert (empty.empty, empty.attempts, empty.ttft_s, empty.latency_s) == (True, 1, None, None)
    assert full.status == "ok" and full.text and full.empty is False
    summary = summary_of(tmp_path / "o")
    assert (summary["empty"], summary["empty_by_finish_reason"], summary["success_rate"]) == (1, {"stop": 1}, 1.0)
    assert "1 of 2 ok answers are empty" in result.output
    assert pd.read_csv(tmp_path / "o" / "results.csv").set_index("id")["empty"].to_dict() == {"q0": True, "q1": False}


# --- embeddings ---


def test_embedding_tokens_split_from_a_batch_total_are_marked_estimated(fast_sim, tmp_path: Path) -> None:
    """The built-in endpoint counts max(1, ceil(chars / 4)) per input: 1, 1, 1, 4 (+ 3 alone).
    A batch of four reports 7, shared by length (1, 2, 3, 16 chars) as 0, 1, 1, 5: estimates. The
    fifth row is a batch of its own: its count is the server's, exact."""
    write_prompts(tmp_path / "p.csv", ["a", "bb", "ccc", "d" * 16, "e" * 11])
    result = invoke(
        "run", "p.csv", "--endpoint", "embeddings", "--batch-size", "4", "--out", "e", "-q", base_url=fast_sim.base_url
    )
    assert result.exit_code == 0, result.output
    records = {r.id: r for r in read_records(tmp_path / "e" / "records.jsonl")}
    assert [(records[f"q{i}"].prompt_tokens, records[f"q{i}"].tokens_estimated) for i in range(5)] == [
        (0, True),
        (1, True),
        (1, True),
        (5, True),
        (3, False),
    ]
    assert summary_of(tmp_path / "e")["tokens"]["estimated_records"] == 4
    alone = invoke(
        "run",
        "p.csv",
        "--endpoint",
        "embeddings",
        "--batch-size",
        "1",
        "--out",
        "one",
        "-q",
        base_url=fast_sim.base_url,
    )
    assert alone.exit_code == 0, alone.output
    exact = {r.id: (r.prompt_tokens, r.tokens_estimated) for r in read_records(tmp_path / "one" / "records.jsonl")}
    assert [exact[f"q{i}"] for i in range(5)] == [(1, False), (1, False), (1, False), (4, False), (3, False)]


def test_embeddings_batched_one_vector_per_input_exactly_once_across_resume(fast_sim, tmp_path: Path) -> None:
    texts = [f"text {i}" for i in range(10)]
    texts[9] = "[[sim:error=500x1]] fails the first time"  # the last batch (rows 8, 9) fails once
    write_prompts(tmp_path / "p.csv", texts)
    before = fast_sim.stats()["by_endpoint"].get("embeddings", 0)
    first = invoke(
        "run",
        "p.csv",
        "--endpoint",
        "embeddings",
        "--batch-size",
        "4",
        "--retries",
        "0",
        "--out",
        "e",
        "-q",
        base_url=fast_sim.base_url,
    )
    assert first.exit_code == 0, first.output
    assert fast_sim.stats()["by_endpoint"]["embeddings"] - before == 3  # 4 + 4 + 2 inputs
    rows = pd.read_csv(tmp_path / "e" / "results.csv")
    assert rows.set_index("id").status.to_dict() == {**{f"q{i}": "ok" for i in range(8)}, "q8": "error", "q9": "error"}
    # A crash after a part was written but before its records: drop two ok records.
    records = (tmp_path / "e" / "records.jsonl").read_text().splitlines()
    kept = [line for line in records if json.loads(line)["id"] not in ("q0", "q1")]
    (tmp_path / "e" / "records.jsonl").write_text("\n".join(kept) + "\n")
    second = invoke("run", "--resume", "e", "-q", base_url=fast_sim.base_url)
    assert second.exit_code == 0, second.output
    vectors = pd.read_parquet(tmp_path / "e" / "embeddings.parquet")
    assert sorted(vectors.id) == sorted(f"q{i}" for i in range(10))  # one row per input
    assert len({len(v) for v in vectors.embedding}) == 1
    norms = np.linalg.norm(np.stack(vectors.embedding.to_numpy()), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5)
    emb = summary_of(tmp_path / "e")["embeddings"]
    assert emb["inputs"] == 10 and emb["batches"] >= 2
    rebuilt = CliRunner().invoke(app, ["report", "e"], catch_exceptions=False)  # `report` keeps the section
    assert rebuilt.exit_code == 0 and summary_of(tmp_path / "e")["embeddings"] == emb


def test_split_tokens_adds_up_to_the_batch_usage() -> None:
    assert split_tokens(10, ["aaaa", "a", "aaaaa"]) == [4, 1, 5]
    assert sum(split_tokens(7, ["ab", "abc", "a"])) == 7
    assert split_tokens(None, ["a"]) == [None]


def test_embedding_figures_by_hand() -> None:
    recs = [
        Record(id=f"r{i}", row=i, status="ok", request_id=f"b{i // 2}", latency_s=0.1 * (1 + i // 2), prompt_tokens=3)
        for i in range(4)
    ] + [Record(id="x", row=4, status="error")]
    figures = embedding_figures(recs, wall_time_s=2.0)
    assert figures["inputs"] == 4 and figures["batches"] == 2 and figures["inputs_per_s"] == 2.0
    assert figures["prompt_tokens_per_s"] == 6.0 and figures["inputs_per_batch"] == 2.0
    assert figures["batch_latency_s"]["mean"] == pytest.approx(0.15)


# --- synthetic ---


def test_bad_synthetic_spec_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("run", "--synthetic", "prompt_tokens=10,output_tokens=x")
    assert result.exit_code == 2 and "--synthetic" in result.output
    write_prompts(tmp_path / "p.csv", 2)
    both = invoke("run", "p.csv", "--synthetic", "prompt_tokens=10,output_tokens=5")
    assert both.exit_code == 2 and "not both" in both.output
    with pytest.raises(ConfigError, match="needs prompt_tokens"):
        parse_spec("output_tokens=5")
    with pytest.raises(ConfigError, match="smaller than the shortest"):
        parse_spec("prompt_tokens=100,output_tokens=5,shared_prefix_tokens=100")


def test_plan_lengths_are_seeded_and_ranges_hold() -> None:
    spec = parse_spec("prompt_tokens=10-20,output_tokens=5,seed=1,shared_prefix_tokens=4,prefix_pool=3")
    plans = plan_lengths(spec, 50)
    assert plans == plan_lengths(spec, 50)
    assert all(10 <= p.prompt_tokens <= 20 and p.output_tokens == 5 for p in plans)
    assert [p.prefix for p in plans[:4]] == [0, 1, 2, 0]


def test_fit_sizer_through_two_probes() -> None:
    sizer = fit_sizer([(200, 60), (2000, 510)])  # 0.25 tokens per character, 10 tokens overhead
    assert sizer is not None and sizer.per_char == 0.25 and sizer.overhead == 10
    assert fit_sizer([(200, 60)]) is None and fit_sizer([(200, 60), (2000, 60)]) is None


# --- time slices and schedule lag ---


def test_time_slices_by_hand() -> None:
    def rec(end: float, status: str = "ok", ttft: float = 0.1, tokens: int = 10) -> Record:
        return Record(
            id=str(end),
            row=0,
            status=status,
            sent_s=end - 0.5,
            end_s=end,
            ttft_s=ttft,
            latency_s=0.5,
            completion_tokens=tokens,
        )

    records = [
        rec(0.5),
        rec(1.5),
        rec(9.0, ttft=0.3),
        rec(12.0, "error"),
        rec(14.0),
        Record(id="skip", row=9, status="skipped"),
    ]
    windows = time_slices(records, 10.0)
    assert [w["requests"] for w in windows] == [3, 2]
    first, last = windows
    assert first["requests_per_s"] == 0.3 and first["output_tokens_per_s"] == 3.0
    assert first["ttft_s"]["max"] == 0.3 and first["ttft_s"]["count"] == 3
    assert last["length_s"] == 4.0 and last["ok"] == 1 and last["failed"] == 1
    assert last["requests_per_s"] == 0.25
    assert time_slices([], 1.0) == []


def test_schedule_lag_by_hand() -> None:
    recs = [
        Record(id="a", row=0, scheduled_s=1.0, sent_s=1.25),
        Record(id="b", row=1, scheduled_s=2.0, sent_s=2.05),
        Record(id="c", row=2, sent_s=3.0),
    ]
    lag = schedule_lag(recs)
    assert lag["count"] == 2 and lag["max"] == 0.25 and lag["min"] == pytest.approx(0.05)


def test_figures_by_endpoint_by_hand() -> None:
    def rec(i: int, endpoint: str, status: str = "ok", latency: float = 0.5) -> Record:
        return Record(
            id=str(i),
            row=i,
            status=status,
            endpoint=endpoint,
            sent_s=0.0,
            end_s=latency,
            ttft_s=0.25,
            latency_s=latency if status == "ok" else None,
            completion_tokens=4,
            prompt_tokens=2,
        )

    records = [
        rec(0, "http://a/v1"),
        rec(1, "http://a/v1", latency=1.0),
        rec(2, "http://b/v1"),
        rec(3, "http://b/v1", "error"),
    ]
    by = endpoint_figures(records, wall_time_s=4.0)
    a, b = by["http://a/v1"], by["http://b/v1"]
    # a: 2 ok of 2, 2 / 4 s; latencies 0.5 and 1.0; tokens of ok records 2 x 4
    assert (a["counts"]["ok"], a["success_rate"], a["throughput"]["requests_per_s"]) == (2, 1.0, 0.5)
    assert (a["latency_s"]["p50"], a["tokens"]["completion"]) == (0.75, 8)
    # b: 1 ok of 2, 1 / 4 s over the whole run's wall time
    assert (b["counts"]["ok"], b["success_rate"], b["throughput"]["requests_per_s"]) == (1, 0.5, 0.25)
    assert endpoint_figures([], 1.0) == {}


def test_tokenizer_sizes_prompts_exactly(fast_sim, tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    from batchrun.inputs.synthetic import _WORDS, Sizer, synthetic_prompts

    vocab = {w: i for i, w in enumerate(["[UNK]", *sorted(set(_WORDS))])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.decoder = tokenizers.decoders.WordPiece()
    tok.save(str(tmp_path / "tokenizer.json"))
    spec = parse_spec(
        f"prompt_tokens=20-60,output_tokens=4,n=10,shared_prefix_tokens=12,tokenizer={tmp_path / 'tokenizer.json'}"
    )
    sizer = Sizer(tokenizer=tok)
    for prompt, planned in zip(synthetic_prompts(spec, 10, sizer), plan_lengths(spec, 10)):
        text = prompt.messages[0]["content"]
        assert len(tok.encode(text, add_special_tokens=False).ids) == planned.prompt_tokens
    result = invoke("run", "--synthetic", spec.text, "--out", "t", "-q", base_url=fast_sim.base_url)
    assert result.exit_code == 0, result.output
    assert "tokenizer" in summary_of(tmp_path / "t")["synthetic"]["sizing"]["source"]
    bad = invoke("run", "--synthetic", "prompt_tokens=5,output_tokens=5,tokenizer=nope.json")
    assert bad.exit_code == 2 and "tokenizer" in bad.output


def test_embeddings_stop_at_max_errors(fast_sim, tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", [f"[[sim:error=400]] {i}" for i in range(8)])
    before = fast_sim.stats()["by_endpoint"].get("embeddings", 0)
    result = invoke(
        "run",
        "p.csv",
        "--endpoint",
        "embeddings",
        "--batch-size",
        "2",
        "-c",
        "1",
        "--max-errors",
        "2",
        "--out",
        "e",
        "-q",
        base_url=fast_sim.base_url,
    )
    assert result.exit_code == 1 and "--max-errors 2" in result.output
    assert fast_sim.stats()["by_endpoint"]["embeddings"] - before == 1
    assert summary_of(tmp_path / "e")["counts"]["error"] == 2


def test_embeddings_stop_at_a_bad_row_after_sending_the_rows_before_it(fast_sim, tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("id,prompt\na,one\nb,two\nc,three\nd,four\ne,\nf,six\n")
    before = fast_sim.stats()["by_endpoint"].get("embeddings", 0)
    result = invoke(
        "run",
        "p.csv",
        "--endpoint",
        "embeddings",
        "--batch-size",
        "2",
        "-c",
        "1",
        "--out",
        "e",
        "-q",
        base_url=fast_sim.base_url,
    )
    assert result.exit_code == 2 and "p.csv line 6, column 'prompt'" in result.output
    assert fast_sim.stats()["by_endpoint"]["embeddings"] - before == 2  # a+b, c+d; nothing after
    assert summary_of(tmp_path / "e")["counts"]["ok"] == 4
    assert len(pd.read_parquet(tmp_path / "e" / "embeddings.parquet")) == 4


def test_a_skipped_embeddings_row_keeps_its_input_and_its_made_up_id_flag(fast_sim, tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("id,prompt,topic\na,one,x\na,two,y\nb,,z\n")
    result = invoke(
        "run",
        "p.csv",
        "--endpoint",
        "embeddings",
        "--on-bad-row",
        "skip",
        "--out",
        "e",
        "-q",
        base_url=fast_sim.base_url,
    )
    assert result.exit_code == 0, result.output
    by_id = {r.id: r for r in read_records(tmp_path / "e" / "records.jsonl")}
    duplicate, empty = by_id["a#duplicate-row-1"], by_id["b"]
    assert duplicate.status == empty.status == "skipped"
    assert duplicate.synthetic_id and not empty.synthetic_id  # a made-up id never passes for a real one
    assert (duplicate.input, empty.input) == (
        {"id": "a", "prompt": "two", "topic": "y"},
        {"id": "b", "prompt": "", "topic": "z"},
    )


def test_parse_embeddings_base64_float_and_bad_shapes() -> None:
    import base64

    from batchrun.endpoint.embeddings import EmbedResult, parse_embeddings

    vecs = np.arange(8, dtype="<f4").reshape(2, 4)
    data = {
        "data": [
            {"index": 1, "embedding": base64.b64encode(vecs[1].tobytes()).decode()},
            {"index": 0, "embedding": vecs[0].tolist()},
        ],
        "model": "m",
        "usage": {"prompt_tokens": 5},
    }
    result = EmbedResult(sent=0.0, inputs=2)
    parse_embeddings(data, result)  # mixed forms, out of order: sorted by index
    assert result.vectors.tolist() == vecs.tolist() and result.prompt_tokens == 5
    for bad in (
        {"data": [{"index": 0, "embedding": [1.0]}]},  # one vector for two inputs
        {"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 2.0]}]},
    ):
        with pytest.raises(ValueError):
            parse_embeddings(bad, EmbedResult(sent=0.0, inputs=2))
