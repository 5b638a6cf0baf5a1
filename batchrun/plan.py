"""Config -> rows -> requests: what a run (or a bench, a dry run, a Batch API run) will send.

    resolve_resume   --resume DIR: the saved run's input and request settings, unless given again
    open_rows        the input's rows, read lazily (a bad file stops here, before anything starts)
    limited          --limit N: the file's first N rows (a pilot)
    jobs             rows minus those already done, as ready-to-send request bodies

Pure of any endpoint: nothing here sends, prints or starts anything; announcements go to `notify`.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Callable, Iterator

from batchrun.config import DEFAULTS, RunConfig, env_base_url
from batchrun.endpoint.answers import AnswerCheck, response_format, strict_problems
from batchrun.endpoint.kinds import kind
from batchrun.endpoint.requests import Job, RequestDefaults, estimate_prompt_tokens, estimate_request_tokens
from batchrun.endpoint.resolve import BUILTIN
from batchrun.endpoint.transport import Endpoint
from batchrun.errors import ConfigError, InputError
from batchrun.inputs.prompt import BadRow, Prompt
from batchrun.inputs.rows import read_prompts
from batchrun.inputs.scan import setting_columns
from batchrun.inputs.synthetic import check_spec
from batchrun.store.sessions import RUN_JSON, read_run_json
from batchrun.workloads import length_trace

Notify = Callable[[str], None]

# What defines the rows and their requests: on --resume these come from the saved run unless given
# again; how to send them (concurrency, limits, timeouts) comes from now. --limit is not kept, so a
# resume without it extends a pilot to the whole file. --max-cost is kept: a budget is the whole
# run's, and a resume that forgot it must not spend without one (give a higher one to go on).
RESUMED_FIELDS = (
    "path",
    "fmt",
    "prompt_column",
    "id_column",
    "template",
    "system",
    "on_bad_row",
    "model",
    "max_tokens",
    "temperature",
    "extra_body",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "tool_module",
    "output_format",
    "mode",
    "endpoint",
    "batch_size",
    "synthetic",
    "row_settings",
    "save_request",
    "csv_formulas",
    "json_schema",
    "json_mode",
    "price_in",
    "price_out",
    "max_cost",
)


def resolve_resume(config: RunConfig) -> RunConfig:
    """For --resume DIR: the saved run's input and request settings, unless given again now (a
    value other than the option's default), and its endpoint unless --base-url names another."""
    if config.control.resume is None:
        return config
    run = read_run_json(config.control.resume)
    saved_config = {k: v for k, v in run["config"].items() if k != "base_url"}
    base = RunConfig.from_public_dict(saved_config, resume=config.control.resume, overwrite=False, dry_run=False)
    now, saved = config.flat(), base.flat()
    changes: dict[str, Any] = {"out": config.control.resume}
    if config.endpoint.base_url is None:
        changes["base_url"] = _restore_base_url(_saved_base_url(run), env_base_url(), config.endpoint.api_key)
    for name in RESUMED_FIELDS:
        given = now[name] is not None and now[name] != DEFAULTS[name] and now[name] != {}
        changes[name] = now[name] if given else saved[name]
    return config.replace(**changes)


def _saved_base_url(run: dict[str, Any]) -> str:
    """The base URL (as written: secrets masked) of the session that last ran, or `builtin`."""
    sessions = run.get("sessions") or []
    if sessions:
        endpoint = sessions[-1].get("endpoint") or {}
        return BUILTIN if endpoint.get("kind") == "builtin" else str(endpoint.get("base_url"))
    # run.json of batchrun 0.1 before sessions: the config's URL, or "embedded" for the built-in one
    url = run["config"].get("base_url")
    return url if url else BUILTIN


def _restore_base_url(saved: str, env_url: str | None, api_key: str | None) -> str:
    """The URL to resume with: the saved one, with its secrets from OPENAI_BASE_URL when the
    saved copy had them masked (they are never written down)."""
    if saved == BUILTIN or "***" not in saved:
        return saved
    if env_url and Endpoint.of(env_url, api_key).display_url == saved:
        return env_url
    raise ConfigError(
        f"this run used {saved}, whose credentials are not kept in {RUN_JSON}; "
        "set OPENAI_BASE_URL (and OPENAI_API_KEY) to the same URL with its credentials, "
        "or pass --base-url to continue with another endpoint"
    )


def open_rows(config: RunConfig) -> Iterator[Prompt | BadRow]:
    """The input's rows, read lazily; a missing, empty or unreadable file, or a bad
    --template / --prompt-column, raises InputError here, before anything is started."""
    source = config.input
    if source.synthetic is not None:  # checked now; generated once the endpoint is known
        check_spec(source.synthetic)
        return iter(())
    assert source.path is not None
    rows = read_prompts(
        source.path,
        fmt=source.fmt,
        prompt_column=source.prompt_column,
        id_column=source.id_column,
        template=source.template,
        system=source.system,
        on_bad_row=source.on_bad_row,
        row_settings=source.row_settings,
    )
    if length_trace(config):  # lengths without text: prompts are sized once the endpoint is known
        return iter(())
    # Header-level problems (which column is the prompt?) surface with the first row: read it now.
    first = next(rows, None)
    return rows if first is None else itertools.chain([first], rows)


def limited(rows: Iterator[Prompt | BadRow], limit: int | None) -> Iterator[Prompt | BadRow]:
    """--limit N: the file's first N rows that can be sent (a pilot). With --on-bad-row skip the
    bad rows met on the way come too (each recorded as skipped) but do not count towards N;
    reading stops right after the Nth good row, so a bad row past the pilot cannot stop it."""
    if limit is None:
        return rows
    return _first_rows(rows, limit)


def _first_rows(rows: Iterator[Prompt | BadRow], limit: int) -> Iterator[Prompt | BadRow]:
    if limit < 1:
        return
    good = 0
    for item in rows:
        yield item
        if isinstance(item, Prompt):
            good += 1
            if good >= limit:
                return


def request_defaults(config: RunConfig) -> RequestDefaults:
    request, tools = config.request, config.tools
    return RequestDefaults(
        model=config.endpoint.model,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        extra_body=request.extra_body,
        tools=tools.tools,
        tool_choice=tools.tool_choice,
        parallel_tool_calls=tools.parallel_tool_calls,
        response_format=response_format(request.json_schema, request.json_mode),
    )


def saved_request(body: dict[str, Any]) -> dict[str, Any]:
    """What the record keeps of a body: all of it but the streaming plumbing batchrun adds."""
    return {k: v for k, v in body.items() if k not in ("stream", "stream_options")}


def jobs(config: RunConfig, rows: Iterator[Prompt | BadRow], skip: set[str]) -> Iterator[Job | BadRow]:
    """Rows minus those already done, as ready-to-send Jobs."""
    defaults = request_defaults(config)
    build = kind(config.endpoint.endpoint).build_body
    path = config.input.path
    for item in rows:
        if item.id in skip:
            continue
        if isinstance(item, BadRow):
            yield item
            continue
        try:
            body = build(item, defaults)
            data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()  # NaN is not JSON
        except (TypeError, ValueError, RecursionError) as exc:  # e.g. a Parquet date inside messages
            reason = f"{path} line {item.line}: the row cannot be sent as JSON ({exc})"
            if config.input.on_bad_row == "fail":
                raise InputError(
                    f"the row cannot be sent as JSON ({exc})",
                    path=str(path),
                    line=item.line,
                    hint="fix the row or use --on-bad-row skip",
                ) from None
            yield BadRow(item.id, item.row, item.line, reason, data=item.data)
            continue
        yield Job(
            prompt=item,
            body=data,
            estimated_tokens=estimate_request_tokens(body, config.request.max_tokens),
            prompt_tokens_estimate=estimate_prompt_tokens(body),
            request=saved_request(body) if config.output.save_request else None,
        )


def output_check(config: RunConfig) -> AnswerCheck | None:
    """--json / --json-schema: how every answer is checked (None: it is not)."""
    if config.request.json_schema is None and not config.request.json_mode:
        return None
    return AnswerCheck(config.request.json_schema)


def announce_row_settings(config: RunConfig, notify: Notify) -> None:
    """Input columns named like request settings override the flags: say so once, up front."""
    if config.input.path is None:
        return
    found = setting_columns(config.input.path, config.input.fmt)
    if not found:
        return
    listed = ", ".join(f"'{name}' ({n} distinct value{'s' if n != 1 else ''})" for name, n in found.items())
    if config.input.row_settings:
        notify(
            f"input columns {listed} set those request fields per row, over the flags (--no-row-settings ignores them)"
        )
    else:
        notify(f"--no-row-settings: input columns {listed} are kept as data, not sent as request fields")


def announce_schema(config: RunConfig, notify: Notify) -> None:
    """--json-schema: warn up front when OpenAI's strict mode would refuse the schema."""
    schema = config.request.json_schema
    problems = strict_problems(schema) if schema is not None else []
    if problems:
        notify(
            "warning: OpenAI's strict structured outputs would reject this schema ("
            + "; ".join(problems[:3])
            + "); servers that accept it still get it"
        )
