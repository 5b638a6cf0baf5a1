"""The user documentation (README.md and docs/*.md) as text, for tests that check what it says,
and the `batchrun` commands its shell examples run.

An example is a command whose word is `batchrun`, in a fenced `bash`/`sh`/`shell` block (every line
is a command) or on a `$ ` line of any fenced block (a `console` block's other lines are the output
the doc shows for the command above them). A line is read as bash would read it, for what the docs
use: `\\` continues it, `#` after a space starts its comment, `&&` `||` `;` `|` separate commands,
`NAME=value` before a command is its environment, a line of `NAME=value` words (or `export
NAME=value`) sets them for the rest of the block, and `$NAME` / `${NAME}` expands (outside single
quotes; an unquoted one stays one word, where bash would split it: the docs quote theirs). A
`batchrun` command inside another command's quoted script (`bash -c '...'`, `ray exec FILE '...'`)
is an example too, run where that command sends it. Every other line (pip, python, kubectl, export
alone) is not an example and is left alone.

An example whose comment says `needs: WHAT` (e.g. `# needs: an OpenAI key`) needs something a test
cannot have (a real provider, a Ray cluster): it is checked for its options only.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent

SHELL_FENCES = ("bash", "sh", "shell")
OPERATORS = ("&&", "||", ";", "|")
_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_NEEDS = re.compile(r"\bneeds: *([^;)]+)")


def doc_pages() -> list[Path]:
    """README.md, then every page under docs/ in name order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def docs_text() -> str:
    """README.md and every page under docs/, joined: where an option or a command is documented."""
    return "\n".join(page.read_text(encoding="utf-8") for page in doc_pages())


def doc_page(name: str) -> str:
    """One page of docs/, e.g. `doc_page("ci-gate.md")`."""
    return (ROOT / "docs" / name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Example:
    """One `batchrun` command of the docs, as the shell would run it."""

    page: str  # README.md or docs/<name>.md
    line: int  # 1-based line where the command starts
    block: int  # line of its block's opening fence: examples of one block share a directory
    argv: tuple[str, ...]  # the words after `batchrun`
    env: tuple[tuple[str, str], ...] = ()  # NAME=value before it, and exported earlier in its block
    comment: str = ""  # its `#` comment, without the `#`
    needs: str | None = None  # what it needs that a test cannot have: checked for its options only
    output: tuple[str, ...] = ()  # the lines a console block shows after it

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def shown(self) -> str:
        """The command as a reader would type it (after variables expanded)."""
        prefix = "".join(f"{name}={shlex.quote(value)} " for name, value in self.env)
        return prefix + shlex.join(("batchrun", *self.argv))


class DocSyntaxError(ValueError):
    """A shell line of the docs that cannot be read (an open quote, a `$NAME` nothing defines)."""


def split_comment(line: str) -> tuple[str, str]:
    """(code, comment) of one shell line: `#` starts a comment at the start of a word, outside quotes."""
    quote, escaped = "", False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def expand(code: str, variables: dict[str, str]) -> str:
    """`$NAME` and `${NAME}` replaced by their values outside single quotes, quoted so each stays one word."""
    out, quote, i = [], "", 0
    while i < len(code):
        char = code[i]
        match = _VARIABLE.match(code, i) if char == "$" and quote != "'" else None
        name = match and (match.group(1) or match.group(2))
        if match and name in variables:
            value = variables[name]
            out.append(re.sub(r'([\\"$`])', r"\\\1", value) if quote == '"' else shlex.quote(value))
            i = match.end()
            continue
        if char in "'\"" and quote in ("", char):
            quote = "" if quote else char
        out.append(char)
        i += 1
    return "".join(out)


def words(code: str) -> list[str]:
    """The words of a line of code, with `&&`, `||`, `;` and `|` as words of their own."""
    lexer = shlex.shlex(code, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError as exc:
        raise DocSyntaxError(f"{code!r}: {exc}") from exc


def commands(tokens: list[str]) -> Iterator[list[str]]:
    """The commands of a line: its words split at `&&`, `||`, `;` and `|`."""
    current: list[str] = []
    for token in tokens:
        if token in OPERATORS:
            if current:
                yield current
            current = []
        else:
            current.append(token)
    if current:
        yield current


@dataclass
class _Block:
    page: str
    fence: int
    shell: bool  # bash/sh: every line is a command; else only `$ ` lines
    variables: dict[str, str]
    exported: dict[str, str]


def _simple_commands(block: _Block, code: str) -> Iterator[tuple[list[str], dict[str, str]]]:
    """Each simple command of a line and its environment; the line's assignments (`T='...'` alone,
    `export NAME=value`) are kept in the block for the lines after it."""
    for command in commands(words(expand(code, block.variables))):
        assigned: dict[str, str] = {}
        while command and _ASSIGNMENT.match(command[0]):
            name, value = command.pop(0).split("=", 1)
            assigned[name] = value
        if not command:
            block.variables.update(assigned)
        elif command[0] == "export":
            for name, value in (w.split("=", 1) for w in command[1:] if _ASSIGNMENT.match(w)):
                block.variables[name] = block.exported[name] = value
        else:
            yield command, {**block.exported, **assigned}


def _examples_of_line(
    block: _Block, line: int, code: str, comment: str, inside: str | None = None
) -> Iterator[Example]:
    """The examples of one logical line (several when it chains commands or nests a script)."""
    try:
        simple = list(_simple_commands(block, code))
    except DocSyntaxError:
        if "batchrun" in code:
            raise
        return  # not an example: a line of another tool's syntax
    marked = _NEEDS.search(comment)
    for command, env in simple:
        if command[0] == "batchrun":
            unexpanded = [w for w in command if _VARIABLE.search(w)]
            if unexpanded and inside is None:
                raise DocSyntaxError(
                    f"{block.page}:{line}: {unexpanded[0]!r} is not set by a line before it in its block"
                )
            needs = marked.group(1).strip().rstrip(".") if marked else inside
            yield Example(block.page, line, block.fence, tuple(command[1:]), tuple(env.items()), comment, needs)
            continue
        for word in command[1:]:  # a script handed to another command
            if "batchrun" in word and word != "batchrun":
                yield from _examples_of_line(block, line, word, comment, inside=f"runs where `{command[0]}` sends it")


def _logical_lines(block: _Block, body: list[tuple[int, str]]) -> Iterator[tuple[int, str, str, tuple[str, ...]]]:
    """(line, code, comment, output shown after it) of each command line of a block."""
    i = 0
    while i < len(body):
        number, text = body[i]
        i += 1
        if not block.shell:
            if not text.lstrip().startswith("$ "):
                continue
            text = text.lstrip()[2:]
        code, comment = split_comment(text)
        while code.endswith("\\") and i < len(body):
            more, comment = split_comment(body[i][1])
            code = code[:-1].rstrip() + " " + more.strip()
            i += 1
        output: list[str] = []
        while not block.shell and i < len(body) and not body[i][1].lstrip().startswith("$ "):
            output.append(body[i][1])
            i += 1
        yield number, code, comment, tuple(output)


def examples_in(page: str, text: str) -> list[Example]:
    """Every `batchrun` example of one page's Markdown, in page order."""
    lines = text.splitlines()
    examples: list[Example] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        i += 1
        if not opening:
            continue
        fence, body, start = opening.group(1), [], i
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append((i + 1, lines[i]))
            i += 1
        i += 1
        block = _Block(page, start, opening.group(2) in SHELL_FENCES, {}, {})
        for number, code, comment, output in _logical_lines(block, body):
            for example in _examples_of_line(block, number, code, comment):
                examples.append(dataclasses.replace(example, output=output))
    return examples


def script_commands(script: str) -> Iterator[list[str]]:
    """The words of every simple command of a shell script (a workflow's `run:`), read as a
    block's lines are: continuations joined, comments dropped, split at `&&` `||` `;` `|`, the
    script's variables expanded, `NAME=value` prefixes dropped."""
    block = _Block("script", 0, True, {}, {})
    for _, code, _, _ in _logical_lines(block, list(enumerate(script.splitlines(), 1))):
        for command, _env in _simple_commands(block, code):
            yield command


@functools.cache
def cli_command() -> Any:
    """batchrun's typer app as a click command (typer 0.27 brings its own copy of click, so this is
    read by duck typing: `.commands`, `.params`, `.make_context`)."""
    import typer.main

    from batchrun.cli import app

    return typer.main.get_command(app)


def subcommand(argv: Sequence[str]) -> tuple[Any, str, list[str]]:
    """The click command the words after `batchrun` name (`batch status` too), its name, its arguments."""
    command, name, rest = cli_command(), "batchrun", list(argv)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        found = command.commands.get(rest[0])
        if found is None:
            raise AssertionError(f"batchrun has no command `{name} {rest[0]}` (it has: {', '.join(command.commands)})")
        command, name, rest = found, f"{name} {rest[0]}", rest[1:]
    if hasattr(command, "commands"):
        raise AssertionError(f"`{name}` needs a subcommand")
    return command, name, rest


def parse_command(argv: Sequence[str]) -> str:
    """Parse the words after `batchrun` with the real CLI, running nothing; the subcommand's name.
    An unknown command or option, a missing argument or a value of the wrong type raises
    AssertionError with the CLI's own message."""
    command, name, args = subcommand(argv)
    try:
        with command.make_context(name, args):
            pass
    except Exception as exc:  # click's UsageError (typer's own copy, or click's)
        message = exc.format_message() if hasattr(exc, "format_message") else repr(exc)
        raise AssertionError(f"`{shlex.join(['batchrun', *argv])}`: {message}") from None
    return name


def prose_code(text: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every inline code span outside fenced blocks: `--rpm`, `batchrun report DIR`."""
    fence = ""
    for number, line in enumerate(text.splitlines(), 1):
        opening = _FENCE.match(line)
        if opening and (not fence or line.strip().startswith(fence)):
            fence = "" if fence else opening.group(1)
        elif not fence:
            for span in re.findall(r"(`+)(.+?)\1", line):
                yield number, span[1].strip()


def doc_examples() -> list[Example]:
    """Every `batchrun` example of README.md and docs/*.md."""
    return [
        example
        for page in doc_pages()
        for example in examples_in(str(page.relative_to(ROOT)), page.read_text(encoding="utf-8"))
    ]
