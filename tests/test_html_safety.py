"""report.html is safe to open whatever the model, the prompts file or the server said: a real
headless browser loads a report full of script payloads, and no script runs.

Without /usr/bin/chromium the browser test is skipped locally and fails in CI (CI=true), where
.ci/run installs Debian's chromium.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from aiohttp import web
from faultserver import prompt_of
from rawserver import DONE, chunk, raw_server, sse, usage_chunk
from typer.testing import CliRunner

from batchrun.cli import app

SCRIPT = "<script>document.title='PWNED'</script>"
IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
LINK = "<a id=\"pwn\" href=\"javascript:document.body.setAttribute('data-pwned','2')\">click</a>"
PAYLOADS = (SCRIPT, IMG, LINK)
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing in CI: .ci/run must install it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")
    return path


async def payload_server(request: web.Request) -> web.StreamResponse:
    """The model says each payload; some rows fail with a payload in the error."""
    prompt = prompt_of(await request.read())
    kind = prompt.rsplit(" ", 1)[-1]
    if kind == "error":
        return web.json_response({"error": {"message": f"bad {SCRIPT} {IMG}"}}, status=500)
    if kind == "stream_error":
        body = json.dumps({"error": {"message": f"{LINK} {IMG}"}})
        return await sse(request, [chunk("x"), f"data: {body}\n\n".encode()])
    say = dict(script=SCRIPT, img=IMG, link=LINK).get(kind, " ".join(PAYLOADS))
    return await sse(
        request,
        [
            chunk("", role="assistant"),
            chunk(say[:20]),
            chunk(say[20:]),
            chunk(finish=SCRIPT if kind == "script" else "stop"),
            usage_chunk(3, 2),
            DONE,
        ],
    )


def write_rows(path: Path) -> None:
    # Payloads in ids and prompts too; ids stay unique.
    rows = [(f"id-{p}", f"{p} please say script") for p in PAYLOADS[:1]]
    rows += [
        (f"id-{IMG}", "say img"),
        (f"id-{LINK}", f"{LINK} say link"),
        ("e1", f"{SCRIPT} error"),
        ("e2", "stream_error"),
        ("all", "say all"),
    ]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt"])
        writer.writerows(rows)


async def make_report(tmp_path: Path) -> Path:
    """A real `batchrun run` through the CLI (its own loop, in a thread) against the payload server."""
    write_rows(tmp_path / "p.csv")
    async with raw_server(payload_server) as url:
        result = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["run", "p.csv", "--base-url", url, "--out", "o", "-q", "--retries", "0", "--system", f"be brief {IMG}"],
            catch_exceptions=False,
        )
    assert result.exit_code == 0, result.output
    return tmp_path / "o"


class DomFacts(HTMLParser):
    """What a script would have changed, and which live elements the payloads could have made."""

    def __init__(self) -> None:
        super().__init__()
        self.title, self.body_attrs, self.live = "", {}, []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "title":
            self._in_title = True
        if tag == "body":
            self.body_attrs = attributes
        if (
            tag == "script"
            or any(k.startswith("on") for k in attributes)
            or (tag == "a" and (attributes.get("href") or "").lower().startswith("javascript:"))
        ):
            self.live.append((tag, attributes))

    def handle_endtag(self, tag: str) -> None:
        self._in_title = self._in_title and tag != "title"

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def dump_dom(chromium: str, page: Path, profile: Path) -> str:
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0 and "<body" in done.stdout, done.stderr[-2000:]
    return done.stdout


def facts(dom: str) -> DomFacts:
    parser = DomFacts()
    parser.feed(dom)
    return parser


async def test_no_script_runs_when_the_report_is_opened(chromium: str, tmp_path: Path) -> None:
    out = await make_report(tmp_path)
    html = (out / "report.html").read_text(encoding="utf-8")
    for payload in PAYLOADS:  # the payloads did reach the page, as text
        assert payload not in html
    # The harness can see a script run: the same payloads unescaped, without the report's CSP.
    control = tmp_path / "control.html"
    control.write_text(f"<!DOCTYPE html><html><head><title>t</title></head><body>{''.join(PAYLOADS)}</body></html>")
    seen = facts(await asyncio.to_thread(dump_dom, chromium, control, tmp_path / "profile-control"))
    assert seen.title == "PWNED" and seen.body_attrs.get("data-pwned") == "1"

    dom = await asyncio.to_thread(dump_dom, chromium, out / "report.html", tmp_path / "profile")
    report = facts(dom)
    assert "PWNED" not in report.title and report.title.startswith("batchrun")
    assert "data-pwned" not in report.body_attrs
    assert report.live == []  # no script, no on* handler, no javascript: link
    escaped = {
        SCRIPT: "&lt;script&gt;document.title='PWNED'&lt;/script&gt;",
        IMG: "&lt;img src=x onerror=\"document.body.setAttribute('data-pwned','1')\"&gt;",
        LINK: "&lt;a id=\"pwn\" href=\"javascript:document.body.setAttribute('data-pwned','2')\"&gt;click&lt;/a&gt;",
    }
    for payload, text in escaped.items():
        assert text in dom, f"{payload} is not shown as text"
    assert "id-&lt;img src=x onerror=" in dom  # from the ids column
    assert "bad &lt;script&gt;" in dom  # from an error message
    assert "be brief &lt;img" in dom  # from --system, in the settings table


async def test_markdown_report_escapes_the_payloads_too(tmp_path: Path) -> None:
    out = await make_report(tmp_path)
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "<script" not in markdown.lower() and "<img" not in markdown.lower() and "<a " not in markdown.lower()
    assert "&lt;script&gt;document.title='PWNED'&lt;/script&gt;" in markdown


@pytest.mark.parametrize(
    "template", ["{row.__class__}", "{text.__class__.__mro__}", "{text[0]}", "{text!r}", "{text:>{width}}", "{0}", "{}"]
)
def test_template_cannot_reach_python_attributes(tmp_path: Path, template: str) -> None:
    (tmp_path / "p.csv").write_text("text,width\nhello,5\n", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["run", "p.csv", "--template", template, "--base-url", "http://127.0.0.1:9/v1", "--out", "o", "-q"]
    )
    assert result.exit_code == 2, result.output
    assert "--template" in result.output and "Traceback" not in result.output
    assert "class" not in result.output.replace(template, "")  # nothing was evaluated
    assert not (tmp_path / "o" / "records.jsonl").exists()
