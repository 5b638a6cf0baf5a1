"""Every `batchrun` example of the docs (README.md and docs/*.md) runs as written against the
built-in endpoint, so an example that drifts from the CLI fails here, named by its page and line.

What an example is and how a line is read: tests/docstext.py.

- An example marked `# needs: WHAT` (a real provider, a Ray cluster), and one inside another
  command's script (`kubectl exec ... bash -c '...'`), is checked for its options only: its
  subcommand exists and the real CLI parses its options and their values.
- Every other example runs (in-process, through the typer app), in page order and after the
  examples before it in its block: a block shares one directory, so a pilot's --out is what the
  next line resumes. The directory holds a copy of samples/ and, made when an example first names
  them, the files the docs assume the reader has (FIXTURES). A run or bench that names no endpoint
  goes to one zero-delay sim shared by the module, in place of the built-in endpoint it would
  start; SHRINKS cut its counts for time. Neither changes the docs: the test states what it changes.
- It must exit 0 (`batchrun serve` runs in the background until its block ends, then exits 130 on
  Ctrl-C, as docs/serve.md says), print the lines a console block shows, write what the docs say
  (run: results.csv, summary.json, report.md, report.html; bench: the last three; fit: the twin and
  its report), send nothing on --dry-run, and keep what the workloads page promises
  (check_workloads).
- Inline code in the prose is checked too: a `batchrun CMD ...` span names a real subcommand and
  its options, and every `--option` named is batchrun's (or a bench/ script's).
- A runnable example that would reach beyond 127.0.0.1 (an API key, a remote --base-url, Ray)
  fails until it is marked `# needs: ...`.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
import pytest
from docstext import (
    ROOT,
    SHELL_FENCES,
    DocSyntaxError,
    Example,
    cli_command,
    doc_examples,
    doc_pages,
    examples_in,
    parse_command,
    prose_code,
    script_commands,
    subcommand,
    words,
)
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.sim import SimConfig, SimProcess

EXAMPLES = doc_examples()
RUNNABLE = [example for example in EXAMPLES if example.needs is None]
SAMPLES = ROOT / "samples"
LOOPBACK = re.compile(r"^https?://(127\.0\.0\.1|localhost)(:\d+)?(/|$)")


def block_of(example: Example) -> tuple[str, int]:
    return example.page, example.block


def option_value(argv: list[str], *names: str) -> str | None:
    """The value given to the first of `names` in argv (`--x v` or `--x=v`), or None."""
    for i, word in enumerate(argv):
        name, eq, value = word.partition("=")
        if name in names:
            return value if eq else (argv[i + 1] if i + 1 < len(argv) else None)
    return None


def with_option(argv: list[str], names: tuple[str, ...], value: str) -> list[str]:
    """argv with the option's value replaced, or the option added when it is not there."""
    out = list(argv)
    for i, word in enumerate(out):
        if word in names and i + 1 < len(out):
            out[i + 1] = value
            return out
        if word.partition("=")[0] in names:
            out[i] = f"{word.partition('=')[0]}={value}"
            return out
    return [*out, names[0], value]


# --- what the test changes in a runnable example, and why (never what the example means) ---


def fewer_bench_requests(argv: list[str]) -> list[str]:
    """bench: sized the way the example sizes it, smaller. A time budget (`--time-budget S`, or the
    default 36 s a bench gets when it gives no -c, --rate or -n) becomes 1 s; otherwise each level
    measures 16 requests (`-n 16`: a level given with -c measures at least max(100, 4 x concurrency)
    by default, more until its intervals are tight, and find-max probes at least 100). Either still
    makes every table, plot and recommendation the example shows."""
    if argv[0] != "bench":
        return argv
    sized = any(option_value(argv, name) for name in ("-c", "--concurrency", "--rate", "-n", "--requests"))
    if "--find-max" not in argv and (option_value(argv, "--time-budget") or not sized):
        return with_option(argv, ("--time-budget",), "1")
    return with_option(argv, ("-n", "--requests"), "16")


def faster_rates(argv: list[str]) -> list[str]:
    """--rate: each open-loop level 100 times faster (16 requests at 2/s take 8 s; at 200/s, 0.08 s)."""
    rates = option_value(argv, "--rate")
    if rates is None:
        return argv
    return with_option(argv, ("--rate",), ",".join(f"{float(r) * 100:g}" for r in rates.split(",")))


def tighter_find_max_slo(argv: list[str]) -> list[str]:
    """--find-max: SLO bounds 10 times tighter. On the zero-delay sim TTFT stays under 500 ms up to
    ~500 requests in flight, so the search would double up to 512 and bisect (about 10,000
    requests, 12 s here); a 50 ms bound ends it within a few probes."""
    slo = option_value(argv, "--slo")
    if "--find-max" not in argv or slo is None:
        return argv
    tighter = re.sub(r"=(\d+(?:\.\d+)?)", lambda m: f"={float(m.group(1)) / 10:g}", slo)
    return with_option(argv, ("--slo",), tighter)


def smaller_synthetic(argv: list[str]) -> list[str]:
    """--synthetic: n=200 -> n=20 prompts and think_s=0.5 -> 0.01 between a session's turns."""
    spec = option_value(argv, "--synthetic")
    if spec is None:
        return argv
    spec = re.sub(r"\bn=\d+", "n=20", spec)
    return with_option(argv, ("--synthetic",), re.sub(r"\bthink_s=[\d.]+", "think_s=0.01", spec))


def quicker_builtin_tokens(argv: list[str]) -> list[str]:
    """--builtin-option: the example starts its own built-in endpoint (not the shared sim); its
    25 ms between tokens make each 32-token answer ~1 s, so tokens come 1 ms apart here."""
    return [*argv, "--builtin-option", "itl_s=0.001"] if "--builtin-option" in argv else argv


def free_port(argv: list[str]) -> list[str]:
    """serve --port N: port 0 (a free one); the block's later `127.0.0.1:N` become that port."""
    return with_option(argv, ("--port",), "0") if argv[0] == "serve" else argv


SHRINKS: tuple[Callable[[list[str]], list[str]], ...] = (
    fewer_bench_requests,
    faster_rates,
    tighter_find_max_slo,
    smaller_synthetic,
    quicker_builtin_tokens,
    free_port,
)


def shrink(argv: list[str]) -> list[str]:
    for change in SHRINKS:
        argv = change(argv)
    return argv


def names_endpoint(argv: list[str], env: dict[str, str]) -> bool:
    """Whether the command says where to send (or, on --resume and `batch`, takes it from the run)."""
    return (
        any(word.partition("=")[0] in ("--base-url", "--builtin-option", "--resume") for word in argv)
        or "OPENAI_BASE_URL" in env
        or "OPENAI_API_KEY" in env
    )


def on_shared_sim(argv: list[str], env: dict[str, str], base_url: str) -> list[str]:
    """A run or bench that names no endpoint would start the built-in one (a latency model: ~15 s
    for samples/prompts.csv); it goes to the module's zero-delay sim instead."""
    if argv[0] in ("run", "bench") and not names_endpoint(argv, env):
        return [*argv, "--base-url", base_url]
    return argv


def reaches_out(argv: list[str], env: dict[str, str]) -> str | None:
    """What in a command would leave 127.0.0.1, or None."""
    base_url = option_value(argv, "--base-url") or env.get("OPENAI_BASE_URL")
    if base_url and base_url != "builtin" and not LOOPBACK.match(base_url):
        return f"it sends to {base_url}"
    if "OPENAI_API_KEY" in env and not base_url:
        return "OPENAI_API_KEY alone means OpenAI"
    if any(word.startswith("--ray") for word in argv):
        return "it runs on Ray"
    return None


# --- the files the docs assume the reader has ---

Maker = Callable[["Block", str], None]


def text_file(content: str) -> Maker:
    def make(block: Block, path: str) -> None:
        (block.dir / path).parent.mkdir(parents=True, exist_ok=True)
        (block.dir / path).write_text(content, encoding="utf-8")

    return make


def sample_copy(name: str) -> Maker:
    def make(block: Block, path: str) -> None:
        (block.dir / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLES / name, block.dir / path)

    return make


def made_by(command: str) -> Maker:
    """A directory a batchrun command writes (shrunk and on the shared sim, as an example would be)."""

    def make(block: Block, path: str) -> None:
        block.run_quietly(words(command))

    return make


def copy_of(source: str) -> Maker:
    """A copy of another directory (made first if needed): a baseline compared with the run it was
    copied from passes whatever this machine's load did to the run's timings."""

    def make(block: Block, path: str) -> None:
        block.provide(source)
        shutil.copytree(block.dir / source, block.dir / path)

    return make


FIXTURES: dict[str, Maker] = {
    "data.csv": text_file("id,text\n" + "".join(f"d{i},Line {i} of a document to summarise.\n" for i in range(12))),
    "big.csv": text_file("id,prompt\n" + "".join(f"b{i},Say something about the number {i}.\n" for i in range(200))),
    "prompts.csv": sample_copy("prompts.csv"),
    "perf/prompts.csv": sample_copy("prompts.csv"),
    "results/perf": made_by("bench perf/prompts.csv -c 8 --no-sync -q --out results/perf"),
    "perf/baseline": copy_of("results/perf"),
    "baseline": copy_of("results/perf"),
    "current": copy_of("results/perf"),
    "results/prompts-20261123-101500": made_by("run samples/prompts.csv -q --out results/prompts-20261123-101500"),
    "results/data-20261124-101500": made_by("run data.csv --mode batch -q --out results/data-20261124-101500"),
    "bench-real": made_by("bench prompts.csv -c 1,4,16 --no-sync -q --out bench-real"),
}


# --- what a runnable example must have done, beyond exit 0 ---

WRITES = {
    "run": ("results.csv", "summary.json", "report.md", "report.html"),
    "bench": ("summary.json", "report.md", "report.html"),
    "report": ("summary.json", "report.md", "report.html"),
}


@dataclass(frozen=True)
class Sent:
    """The shared sim's counters around one example."""

    before: dict[str, Any]
    after: dict[str, Any]

    def count(self, key: str = "requests") -> int:
        return self.after[key] - self.before[key]

    def by_endpoint(self, name: str) -> int:
        return self.after["by_endpoint"].get(name, 0) - self.before["by_endpoint"].get(name, 0)


def check_workloads(argv: list[str], summary: dict[str, Any], out: Path, sent: Sent) -> None:
    """What docs/workloads.md promises of each workload, beyond every row being ok."""
    line = " ".join(argv)
    if argv[0] == "bench":
        if "--synthetic" in argv:  # the headline run's lengths, requested vs realised
            assert summary["synthetic"]["output_tokens_error"]["max"] == 0
            assert "realised (usage)" in (out / "report.md").read_text(encoding="utf-8")
        return
    if "--synthetic" in argv and "sessions=" not in line:
        syn = summary["synthetic"]  # lengths held exactly on the built-in endpoint
        for key in ("prompt_tokens_error", "output_tokens_error"):
            assert syn[key]["min"] == syn[key]["max"] == 0, (line, key, syn[key])
        assert "calibrated" in syn["sizing"]["source"]
    if "shared_prefix_tokens" in line:  # every prompt after the first of its prefix hits the cache
        assert sent.count("prefix_cache_hit_tokens") >= (20 - 4) * 496
    if "sessions" in line:
        assert [t["turn"] for t in summary["turns"]] == list(range(1, len(summary["turns"]) + 1))
        assert len(summary["turns"]) >= 3
    if "trace.csv" in line:
        assert summary["schedule_lag_s"]["count"] == summary["counts"]["ok"]
    if "--slice" in argv:
        assert (out / "slices.svg").stat().st_size > 1000
        assert "| window (s) |" in (out / "slices.md").read_text(encoding="utf-8")
        assert sum(w["requests"] for w in summary["slices"]) == summary["counts"]["total"]
    if option_value(argv, "--endpoint") == "completions":
        assert sent.by_endpoint("completions") >= 10
        assert summary["ttft_s"]["count"] == summary["counts"]["ok"]
    if option_value(argv, "--endpoint") == "embeddings":
        vectors = pd.read_parquet(out / "embeddings.parquet")
        assert len(vectors) == summary["counts"]["ok"] == summary["embeddings"]["inputs"]


# --- a block's directory, its background servers, and running one example ---


@dataclass
class Serving:
    """A `batchrun serve` example, running until its block ends."""

    example: Example
    proc: subprocess.Popen[str]
    reader: threading.Thread  # copies the server's output lines into `lines`
    lines: queue.Queue[str | None]
    seen: list[str] = field(default_factory=list)

    def read_until(self, done: Callable[[list[str]], bool], timeout_s: float = 60.0) -> list[str]:
        while not done(self.seen):
            try:
                line = self.lines.get(timeout=timeout_s)
            except queue.Empty:
                raise AssertionError(f"{self.example.id}: nothing more after {timeout_s:g} s: {self.seen}") from None
            if line is None:
                raise AssertionError(f"{self.example.id}: serve exited {self.proc.wait()}: {self.seen}")
            self.seen.append(line.rstrip("\n"))
        return self.seen

    def stop(self) -> int:
        """Ctrl-C, as the reader would stop it; the exit code."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.example.id}: serve did not stop on Ctrl-C within 30 s") from None
        finally:
            self.close()

    def kill(self) -> None:
        """Stop it after a failed example (no exit code to check)."""
        self.proc.kill()
        self.proc.wait()
        self.close()

    def close(self) -> None:
        self.reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@dataclass
class Block:
    """One fenced block's directory and state: its examples run in order and share it."""

    dir: Path
    sim: SimProcess
    ports: dict[str, str] = field(default_factory=dict)  # a port the docs name -> the one serve got
    serving: list[Serving] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)

    @classmethod
    def open(cls, where: Path, sim: SimProcess) -> Block:
        shutil.copytree(SAMPLES, where / "samples")
        return cls(where, sim)

    def localise(self, text: str) -> str:
        for doc_port, port in self.ports.items():
            text = re.sub(rf"\b(127\.0\.0\.1|localhost):{doc_port}\b", rf"\1:{port}", text)
        return text

    def command(self, example: Example) -> list[str]:
        """The example's words as this test runs them."""
        argv = on_shared_sim(shrink(list(example.argv)), dict(example.env), self.sim.base_url)
        return [self.localise(word) for word in argv]

    def provide(self, path: str) -> None:
        """Make a fixture the block does not have yet."""
        if not (self.dir / path).exists():
            FIXTURES[path](self, path)

    def provide_named(self, argv: list[str]) -> None:
        """Make the fixtures a command reads (what it writes, its --out, it makes itself)."""
        for before, word in zip(["", *argv], argv):
            if word.rstrip("/") in FIXTURES and before != "--out":
                self.provide(word.rstrip("/"))

    def run_quietly(self, argv: list[str]) -> None:
        argv = on_shared_sim(shrink(argv), {}, self.sim.base_url)
        self.provide_named(argv)
        result = invoke(argv, {})
        assert result.exit_code == 0, (
            f"fixture `batchrun {shlex.join(argv)}` exited {result.exit_code}:\n{result.output}"
        )

    def run(self, example: Example) -> None:
        env = dict(example.env)
        argv = self.command(example)
        why = reaches_out(argv, env)
        assert why is None, f"{example.id}: {why}; mark it `# needs: ...` or make it run on 127.0.0.1"
        self.provide_named(argv)
        if argv[0] == "serve":
            self.serve(example, argv)
            return
        results = listing(self.dir / "results")
        before = self.sim.stats()
        result = invoke(argv, env)
        shown = f"`batchrun {shlex.join(argv)}`"
        assert result.exit_code == 0, f"{example.id}: {shown} exited {result.exit_code}:\n{result.output}"
        for line in example.output:
            assert self.localise(line) in result.output, f"{example.id}: {shown} did not print {line!r}"
        check_writes(example, argv, sorted(listing(self.dir / "results") - results), Sent(before, self.sim.stats()))

    def serve(self, example: Example, argv: list[str]) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchrun", *argv],
            cwd=self.dir,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **dict(example.env), "PYTHONUNBUFFERED": "1"},
        )
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=pump, args=(proc, lines), daemon=True)
        reader.start()
        serving = Serving(example, proc, reader, lines)
        self.serving.append(serving)
        listening = re.compile(r"listening on http://127\.0\.0\.1:(\d+)/v1")
        seen = serving.read_until(lambda seen: any(listening.search(line) for line in seen))
        port = next(m.group(1) for m in map(listening.search, seen) if m)
        doc_port = option_value(list(example.argv), "--port") or "8000"
        self.ports[doc_port] = port
        expected = [self.localise(line).rstrip() for line in example.output]
        shown = serving.read_until(lambda seen: len(seen) >= len(expected))[: len(expected)]
        assert shown == expected, f"{example.id}: serve printed {shown}, the docs show {expected}"

    def stop(self) -> None:
        """Stop the block's servers as the reader would (Ctrl-C); each exits 130."""
        while self.serving:
            serving = self.serving.pop()
            code = serving.stop()
            assert code == 130, f"{serving.example.id}: serve exited {code} on Ctrl-C, the docs say 130"


def pump(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put(line)
    lines.put(None)


def invoke(argv: list[str], env: dict[str, str]) -> Any:
    return CliRunner().invoke(app, argv, env=env, catch_exceptions=False, prog_name="batchrun")


def listing(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


def check_writes(example: Example, argv: list[str], new: list[str], sent: Sent) -> None:
    """What the docs say the command writes (and that a dry run sends and writes nothing)."""
    if "--dry-run" in argv:
        assert not new and sent.count() == 0, f"{example.id}: a dry run sent {sent.count()} requests, wrote {new}"
        return
    command = argv[0]
    if command == "fit":
        twin = Path(option_value(argv, "--out") or "twin.json")
        for path in (twin, twin.with_suffix(".html"), twin.with_suffix(".md")):
            assert path.is_file(), f"{example.id}: no {path}"
    if command not in WRITES:
        return
    out = Path(option_value(argv, "--out", "--resume") or (argv[1] if command == "report" else ""))
    if command != "report" and option_value(argv, "--out", "--resume") is None:
        assert len(new) == 1, f"{example.id}: wrote {new} under results/, expected one new directory"
        out = Path("results") / new[0]
    missing = [name for name in WRITES[command] if not (out / name).is_file()]
    assert not missing, f"{example.id}: {out} has no {', '.join(missing)}"
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))["summary"]
    if command == "run":
        counts = summary["counts"]
        assert counts["ok"] == counts["total"] > 0, f"{example.id}: {counts}"
    if command in ("run", "bench"):
        check_workloads(argv, summary, out, sent)


@pytest.fixture(scope="module")
def docs_sim() -> Iterator[SimProcess]:
    """The module's one endpoint: zero delays, and a Batch API job done 0.2 s after it is created
    (2 s by default: three `--mode batch` examples wait for theirs)."""
    with SimProcess(SimConfig(fast=True, batch_delay_s=0.2)) as sim:
        yield sim


@pytest.fixture(scope="module")
def blocks(docs_sim: SimProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, int], Block]]:
    """Each block's directory, made when its first example runs; servers left running are stopped."""
    opened: dict[tuple[str, int], Block] = {}
    yield opened
    for block in opened.values():
        for serving in block.serving:
            serving.kill()


@pytest.mark.parametrize("example", RUNNABLE, ids=lambda example: example.id)
def test_example_runs(
    example: Example,
    blocks: dict[tuple[str, int], Block],
    docs_sim: SimProcess,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = block_of(example)
    if key not in blocks:
        blocks[key] = Block.open(tmp_path_factory.mktemp(f"{Path(key[0]).stem}-{key[1]}"), docs_sim)
    block = blocks[key]
    monkeypatch.chdir(block.dir)
    mates = [other for other in RUNNABLE if block_of(other) == key]
    for earlier in mates[: mates.index(example)]:
        if earlier.id in block.failed:
            pytest.skip(f"{earlier.id}, before it in its block, failed")
        if earlier.id not in block.done:  # this example was picked alone: its block's lines first
            block.run(earlier)
            block.done.add(earlier.id)
    try:
        block.run(example)
    except BaseException:
        block.failed.add(example.id)
        raise
    block.done.add(example.id)
    if example is mates[-1]:
        block.stop()


# --- options only: the examples that need what a test cannot have ---


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.id)
def test_example_options_parse(example: Example) -> None:
    """Its subcommand exists, and the CLI's own parser takes every option and value it gives."""
    try:
        parse_command(example.argv)
    except AssertionError as exc:
        raise AssertionError(f"{example.id}: {exc}") from None


@pytest.mark.parametrize(
    "argv, says",
    [
        (("run", "p.csv", "--no-such-option"), "No such option: --no-such-option"),
        (("bench", "p.csv", "-n", "many"), "'many' is not a valid int"),
        (("bench", "p.csv", "--requests", "many"), "'many' is not a valid int"),
        (("batch", "nothing"), "no command `batchrun batch nothing`"),
        (("comprae", "a", "b"), "no command `batchrun comprae`"),
        (("batch",), "`batchrun batch` needs a subcommand"),
        (("compare", "only-one"), "Missing argument"),
    ],
)
def test_options_only_parse_refuses_what_the_cli_refuses(argv: tuple[str, ...], says: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(says)):
        test_example_options_parse(Example("p.md", 1, 1, argv))


def option_names(command: Any) -> set[str]:
    names = {"--help"}  # click adds it to every command, outside params
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names


def all_option_names(command: Any) -> set[str]:
    return option_names(command).union(*(all_option_names(sub) for sub in getattr(command, "commands", {}).values()))


# Options the prose names that belong to programs batchrun's own code never starts with them.
OTHER_PROGRAMS = {"--enable-prompt-tokens-details": "vLLM's server"}


def scripts_options() -> str:
    """The source of bench/ scripts and of the tests that start other programs (llama-server, vLLM):
    an option quoted there is that script's or that program's."""
    sources = [*(ROOT / "bench").glob("*.py"), *(ROOT / "tests").rglob("*.py")]
    return "\n".join(path.read_text(encoding="utf-8") for path in sources if path.resolve() != Path(__file__).resolve())


def test_every_option_the_prose_names_exists() -> None:
    """An option in a code span of the prose (`--rpm`, `--fault-*`) is one of batchrun's, or one a
    bench/ script or a test server quotes, or listed in OTHER_PROGRAMS."""
    ours, scripts = all_option_names(cli_command()), scripts_options()
    unknown = []
    for page in doc_pages():
        for number, span in prose_code(page.read_text(encoding="utf-8")):
            for name in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", span):
                known = (
                    name in ours
                    or f'"{name}"' in scripts
                    or name in OTHER_PROGRAMS
                    or (name.endswith("-") and any(o.startswith(name) for o in ours))
                )  # `--fault-*`
                if not known:
                    unknown.append(f"{page.relative_to(ROOT)}:{number}: {name} in `{span}`")
    assert not unknown, "\n".join(unknown)


def test_every_command_the_prose_names_exists_with_its_options() -> None:
    """`batchrun report DIR`, `batchrun run FILE --dry-run`: the subcommand, and each option on it."""
    wrong, seen = [], 0
    for page in doc_pages():
        for number, span in prose_code(page.read_text(encoding="utf-8")):
            if not re.match(r"batchrun [a-z]+(\s|$)", span):  # not `batchrun compare: failed: ...`, a message
                continue
            seen += 1
            where = f"{page.relative_to(ROOT)}:{number}: `{span}`"
            try:
                command, name, args = subcommand(tuple(span.split()[1:]))
            except AssertionError as exc:
                wrong.append(f"{where}: {exc}")
                continue
            wrong += [
                f"{where}: `{name}` has no {word}"
                for word in args
                if word.startswith("-") and word.split("=")[0] not in option_names(command)
            ]
    assert not wrong, "\n".join(wrong)
    assert seen >= 20


def test_examples_are_found_on_every_page() -> None:
    """Each line of a shell block that starts with `batchrun` (or `$ batchrun`) is an example's line,
    so a change to how the docs are written cannot hide examples from this module."""
    starts = {example.id for example in EXAMPLES}
    for example in EXAMPLES:
        assert example.argv, f"{example.id}: `batchrun` alone"
    for page in doc_pages():
        name, fence = str(page.relative_to(ROOT)), None
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            opening = re.match(r"\s*```+\s*(\w*)", line)
            if opening:
                fence = None if fence is not None else opening.group(1)
            elif fence is not None and re.match(
                r"\s*\$ batchrun |\s*batchrun " if fence in SHELL_FENCES else r"\s*\$ batchrun ", line
            ):
                assert f"{name}:{number}" in starts, f"{name}:{number} is not read as an example"
    assert len(RUNNABLE) >= 30 and len(EXAMPLES) - len(RUNNABLE) >= 5


# --- how a line of the docs is read ---


def test_a_line_is_read_as_bash_reads_it() -> None:
    page = "\n".join(
        [
            "```bash",
            "T='Say {x}: \"#1\"'",
            "export BATCHRUN_MAX_TOKENS=5",
            'OPENAI_BASE_URL=http://127.0.0.1:9/v1 batchrun run a.csv --template "$T" \\',
            "    --system 'no # comment' --out ${T}x   # the comment",
            "pip install -e . && batchrun report out; echo 'not batchrun'",
            "```",
        ]
    )
    run, report = examples_in("p.md", page)
    assert run.id == "p.md:4" and run.block == 1 and run.comment == "the comment" and run.needs is None
    assert run.argv == (
        "run",
        "a.csv",
        "--template",
        'Say {x}: "#1"',
        "--system",
        "no # comment",
        "--out",
        'Say {x}: "#1"x',
    )
    assert dict(run.env) == {"BATCHRUN_MAX_TOKENS": "5", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    assert (report.id, report.argv) == ("p.md:6", ("report", "out"))


def test_needs_and_nested_scripts_are_options_only_and_console_output_is_kept() -> None:
    page = "\n".join(
        [
            "```bash",
            "batchrun run big.csv --ray   # needs: a Ray cluster; and more",
            "ray exec c.yaml 'cd ~ && batchrun run p.csv -c 8'",
            "```",
            "text",
            "```console",
            "$ batchrun serve --port 8000",
            "listening on 8000",
            "$ ls",
            "```",
        ]
    )
    ray, nested, serve = examples_in("p.md", page)
    assert ray.needs == "a Ray cluster" and ray.argv == ("run", "big.csv", "--ray")
    assert nested.needs == "runs where `ray` sends it" and nested.argv == ("run", "p.csv", "-c", "8")
    assert serve.needs is None and serve.output == ("listening on 8000",) and serve.block == 6


def test_a_script_is_read_as_a_block_is() -> None:
    script = (
        "D=perf  # where\npip install -e tools/batchrun && X=1 batchrun bench \\\n  $D/p.csv -q # measure\necho 'a;b'\n"
    )
    assert list(script_commands(script)) == [
        ["pip", "install", "-e", "tools/batchrun"],
        ["batchrun", "bench", "perf/p.csv", "-q"],
        ["echo", "a;b"],
    ]


@pytest.mark.parametrize("line", ["batchrun run 'open quote", 'batchrun run --template "$UNSET"'])
def test_an_unreadable_example_is_an_error_and_another_tools_line_is_not(line: str) -> None:
    with pytest.raises(DocSyntaxError):
        examples_in("p.md", f"```bash\n{line}\n```\n")
    assert examples_in("p.md", "```bash\necho 'open quote\nkubectl get $UNSET\n```\n") == []


def test_shrinks_change_counts_only() -> None:
    assert shrink(["bench", "p.csv", "-n", "200", "--rate", "2,4,8"]) == [
        "bench",
        "p.csv",
        "-n",
        "16",
        "--rate",
        "200,400,800",
    ]
    assert shrink(["bench", "p.csv", "-c", "1,4"]) == ["bench", "p.csv", "-c", "1,4", "-n", "16"]
    assert shrink(["bench", "p.csv"]) == ["bench", "p.csv", "--time-budget", "1"]
    assert shrink(["bench", "p.csv", "--time-budget", "300"]) == ["bench", "p.csv", "--time-budget", "1"]
    assert (
        option_value(shrink(["bench", "p.csv", "--find-max", "--slo", "ttft=500ms,e2e=10s"]), "--slo")
        == "ttft=50ms,e2e=1s"
    )
    assert (
        option_value(shrink(["run", "--synthetic", "a=1,n=200,think_s=0.5"]), "--synthetic") == "a=1,n=20,think_s=0.01"
    )
    assert shrink(["run", "p.csv", "-c", "64"]) == ["run", "p.csv", "-c", "64"]
    assert shrink(["serve", "--port", "8000"]) == ["serve", "--port", "0"]
    assert on_shared_sim(["run", "p.csv"], {}, "U") == ["run", "p.csv", "--base-url", "U"]
    assert on_shared_sim(["run", "--resume", "d"], {}, "U") == ["run", "--resume", "d"]
    assert reaches_out(["run", "p.csv"], {"OPENAI_API_KEY": "sk-..."}) and reaches_out(["run", "--ray"], {})
    assert reaches_out(["run", "--base-url", "http://gpu-box:8080/v1"], {})
    assert reaches_out(["run", "--base-url", "http://127.0.0.1:8000/v1"], {}) is None
