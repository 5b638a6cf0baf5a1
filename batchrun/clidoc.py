"""The CLI reference (docs/cli.md), generated from the command line itself.

    python -m batchrun.clidoc > docs/cli.md

It walks the click commands typer builds from the declared options (batchrun/options.py), so
the page shows what `--help` shows: every command, its arguments and its options by panel, with
defaults and environment variables. tests/test_options.py fails when docs/cli.md is stale.
"""

from __future__ import annotations

from typing import Any, Iterator

import typer

from batchrun.cli import app

# typer builds click commands (typer >= 0.26 its own vendored click): they are read by their
# attributes, never by isinstance against one click.
Command = Any

HEADER = (
    "# Command-line reference\n\n"
    "Generated from the command line itself (`python -m batchrun.clidoc > docs/cli.md`); "
    "`batchrun COMMAND --help` shows the same. Every option of `run` and `bench` is also a keyword "
    "of the Python API, with the same name and default.\n"
)


def _commands(group: Command, prefix: str) -> Iterator[tuple[str, Command]]:
    for name, cmd in group.commands.items():
        if cmd.hidden:
            continue
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", cmd


def _is_argument(param: Any) -> bool:
    return bool(param.param_type_name == "argument")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _flags(param: Any) -> str:
    # Long names first: click orders a help option's names by how its context was made.
    names = sorted([*param.opts, *getattr(param, "secondary_opts", [])], key=lambda n: not n.startswith("--"))
    return ", ".join(f"`{n}`" for n in names)


def _default(param: Any) -> str:
    default: Any = param.default
    if param.required:
        return "required"
    if not _is_argument(param) and param.is_flag and param.secondary_opts:
        return f"`{param.opts[0] if default else param.secondary_opts[0]}`"
    if default is None or default is False or default == []:
        return ""
    return f"`{default}`"


def _env(param: Any) -> str:
    env = param.envvar
    return f"`{env}`" if isinstance(env, str) else ""


def _command(name: str, cmd: Command) -> list[str]:
    lines = [f"## `{name}`", "", (cmd.help or "").strip(), ""]
    arguments = [p for p in cmd.params if _is_argument(p)]
    if arguments:
        lines += ["| argument | help |", "|---|---|"]
        lines += [
            f"| `{(p.metavar or p.name or '').upper()}` | {_cell(getattr(p, 'help', '') or '')} |" for p in arguments
        ]
        lines.append("")
    panels: dict[str, list[Any]] = {}
    for param in cmd.params:
        if not _is_argument(param) and not param.hidden and param.name != "help":
            panels.setdefault(getattr(param, "rich_help_panel", None) or "Options", []).append(param)
    for panel, params in panels.items():
        lines += [f"### {panel}", "", "| option | default | env | help |", "|---|---|---|---|"]
        lines += [f"| {_flags(p)} | {_default(p)} | {_env(p)} | {_cell(p.help or '')} |" for p in params]
        lines.append("")
    return lines


def _root(root: Command, commands: list[tuple[str, Command]]) -> list[str]:
    """`batchrun` itself: its own options (which -h / --help every command takes too) and an
    index of the commands, each linked to its section."""
    lines = ["## `batchrun`", "", (root.help or "").strip(), ""]
    lines += ["| option | help |", "|---|---|"]
    params = root.get_params(_context(root))
    lines += [f"| {_flags(p)} | {_cell(p.help or '')} |" for p in params]
    lines += ["", "| command | what it does |", "|---|---|"]
    for name, cmd in commands:
        anchor = name.replace(" ", "-")
        summary = (cmd.short_help or (cmd.help or "").strip().split("\n\n")[0]).replace("\n", " ")
        lines.append(f"| [`{name}`](#{anchor}) | {_cell(summary)} |")
    return [*lines, ""]


def _context(cmd: Command) -> Any:
    """The click context a command's own parameters (its help option among them) are read in."""
    return cmd.context_class(cmd, info_name="batchrun", **(cmd.context_settings or {}))


def markdown() -> str:
    """The whole reference: `batchrun` and its commands, then one section per command."""
    root = typer.main.get_command(app)
    commands = list(_commands(root, "batchrun"))
    lines = [HEADER, *_root(root, commands)]
    for name, cmd in commands:
        lines += _command(name, cmd)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
