"""/v1/batches: create, retrieve, list, cancel -- OpenAI's Batch API over the sim's own model.

A job's life is a pure function of the time since it was created and the sim's
`batch_delay_s` (D): validating for 0.1 D, in_progress until 0.9 D (request_counts grow
linearly), finalizing until D, then completed -- or failed at 0.1 D (a bad input file, or
`batch_failure_rate`), or expired at D with half its requests done (`batch_expiry_rate`).
Cancelling stops processing where it is; the job is cancelled 0.05 D (at most 1 s) later.

Every answer is computed when the job is created (the same planner as /chat/completions,
never streamed) and released as the output / error file when the job ends, in OpenAI's
line format. Requests that fail (an invalid body, a `[[sim:error=N]]` directive, or
`batch_error_rate`) go to the error file with their HTTP status and error body; requests an
expired job never ran go there as `batch_expired`; a cancelled job's unrun requests are in
neither file. With `batch_state_dir` set, jobs survive a restart of the sim.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable

from batchrun.sim import model
from batchrun.sim.config import SimConfig
from batchrun.sim.directives import DirectiveError
from batchrun.sim.files import FileStore, list_page, query_of, subpath
from batchrun.sim.handling import check_auth, check_model
from batchrun.sim.host import AttemptCounter, Host
from batchrun.sim.hostile import broken_line, echo_errors, echo_of, patched
from batchrun.sim.http import Connection, Request
from batchrun.sim.planner import plan_request, request_directives
from batchrun.sim.structured import check_response_format
from batchrun.sim.validate import parse_body, validate_chat
from batchrun.sim.wire import ApiError, completion_body, dumps, invalid_url, server_error

ENDPOINT = "/v1/chat/completions"
MAX_REQUESTS = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024
TERMINAL = ("completed", "failed", "expired", "cancelled")
EXPIRED_DONE_SHARE = 0.5
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


# ---------------------------------------------------------------- the pure timeline


def phase(elapsed_s: float, delay_s: float) -> str:
    """validating / in_progress / finalizing / done, for a job `elapsed_s` after its creation."""
    if elapsed_s >= delay_s:
        return "done"
    if elapsed_s < 0.1 * delay_s:
        return "validating"
    return "in_progress" if elapsed_s < 0.9 * delay_s else "finalizing"


def processed_share(elapsed_s: float, delay_s: float) -> float:
    """The share of a job's requests run by `elapsed_s`: 0 while validating, 1 from finalizing on."""
    if delay_s <= 0:
        return 1.0
    return min(1.0, max(0.0, (elapsed_s - 0.1 * delay_s) / (0.8 * delay_s)))


def _cancel_s(delay_s: float) -> float:
    """How long a job stays `cancelling`: 0.05 D, at most 1 s."""
    return min(0.05 * delay_s, 1.0)


# ---------------------------------------------------------------- one request line


def answer_line(
    cfg: SimConfig, line: dict[str, Any], attempt: int, fail: bool, created: int, echo: str = ""
) -> tuple[bool, bytes]:
    """(ok, the output- or error-file line) for one validated input line; `echo` (batch_echo_auth)
    is quoted in the answer or the error message."""
    cid = line["custom_id"]
    rid = "req_" + os.urandom(12).hex()
    try:
        status, body = 200, _completion(cfg, line["body"], attempt, fail, created, echo)
    except ApiError as err:
        if echo:
            err.message += f" ({echo})"
        status, body = err.status, err.body()
    data = (
        b'{"id":"batch_req_'
        + os.urandom(12).hex().encode()
        + b'","custom_id":'
        + dumps(cid)
        + b',"response":{"status_code":%d,"request_id":"%s","body":' % (status, rid.encode())
        + body
        + b'},"error":null}\n'
    )
    kind = _line_fault(line["body"], attempt)
    return status == 200, (data if kind is None or status != 200 else broken_line(kind, data))


def _line_fault(body: Any, attempt: int) -> str | None:
    """`[[sim:batch_line=K]]` of a request, if it has one (a body the sim refused has none)."""
    try:
        return request_directives(body, attempt).batch_line
    except (DirectiveError, KeyError, TypeError, AttributeError):
        return None


def _completion(cfg: SimConfig, body: Any, attempt: int, fail: bool, created: int, echo: str = "") -> bytes:
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid type for 'body': expected an object.", param="body")
    validate_chat(body)
    check_response_format(body)
    if body.get("stream"):
        raise ApiError(400, "Streaming is not supported in the Batch API.", param="stream")
    check_model(cfg, body)
    try:
        directives = request_directives(body, attempt)
    except DirectiveError as err:
        raise ApiError(400, str(err), param="messages") from None
    prompt_tokens = model.estimate_prompt_tokens(body["messages"])
    plan = plan_request(cfg, body, directives, attempt, prompt_tokens)
    if plan.faults.error is not None:
        raise server_error(plan.faults.error)
    if fail:
        raise server_error(500)
    text = None if plan.calls else "".join(plan.tokens)
    if text is not None and echo:
        text += f" [{echo}]"
    if text is not None and directives.batch_bytes:
        text = _padded(text, directives.batch_bytes)
    return completion_body(
        "chatcmpl-" + os.urandom(12).hex(),
        created,
        body["model"],
        text,
        plan.calls,
        plan.finish_reason,
        plan.prompt_tokens,
        plan.completion_tokens,
    )


def _padded(text: str, line_bytes: int) -> str:
    """The answer grown so its output line is about `line_bytes` long (`[[sim:batch_bytes=N]]`):
    a provider's oversize answer."""
    return text + " " + "x" * max(0, line_bytes - 600 - len(text))


def _prompt_tokens(body: Any) -> int:
    messages = body.get("messages") if isinstance(body, dict) else None
    return model.estimate_prompt_tokens(messages) if isinstance(messages, list) else 0


def expired_line(custom_id: str, echo: str = "") -> bytes:
    message = EXPIRED_MESSAGE + (f" ({echo})" if echo else "")
    return (
        b'{"id":"batch_req_'
        + os.urandom(12).hex().encode()
        + b'","custom_id":'
        + dumps(custom_id)
        + b',"response":null,"error":{"code":"batch_expired","message":'
        + dumps(message)
        + b"}}\n"
    )


def check_lines(raw: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the input file's request lines, validation errors in OpenAI's `errors.data` shape)."""
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    if len(raw) > MAX_FILE_BYTES:
        return [], [_err("file_too_large", f"The input file is larger than {MAX_FILE_BYTES} bytes.", None)]
    for n, text in enumerate(raw.splitlines(), 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except ValueError:
            errors.append(_err("invalid_json_line", "This line is not parseable as valid JSON.", n))
            continue
        problem = _line_problem(line, seen)
        if problem:
            errors.append(_err(problem[0], problem[1], n))
            continue
        seen.add(line["custom_id"])
        lines.append(line)
    if len(lines) > MAX_REQUESTS:
        errors.append(_err("too_many_requests", f"The input file has more than {MAX_REQUESTS} requests.", None))
    if not lines and not errors:
        errors.append(_err("empty_file", "The input file has no requests.", None))
    return lines, errors


def _line_problem(line: Any, seen: set[str]) -> tuple[str, str] | None:
    if not isinstance(line, dict):
        return "invalid_request", "Each line must be a JSON object."
    cid = line.get("custom_id")
    if not isinstance(cid, str) or not cid:
        return "missing_required_parameter", "Missing required parameter: 'custom_id'."
    if cid in seen:
        return "duplicate_custom_id", f"The custom_id {cid!r} is used more than once in this file."
    if line.get("method") != "POST":
        return "invalid_value", "The 'method' of every request must be 'POST'."
    if line.get("url") != ENDPOINT:
        return "mismatched_endpoint", f"The 'url' of every request must be the batch's endpoint {ENDPOINT}."
    if "body" not in line:
        return "missing_required_parameter", "Missing required parameter: 'body'."
    return None


def _err(code: str, message: str, line: int | None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": None, "line": line}


# ---------------------------------------------------------------- the store


class BatchStore:
    """Jobs by id: their state (JSON-able dicts) and, until they end, their answers."""

    def __init__(
        self, config: SimConfig, files: FileStore, attempts: AttemptCounter, clock: Callable[[], float] = time.time
    ) -> None:
        self.config, self.files, self.attempts, self.clock = config, files, attempts, clock
        self._jobs: dict[str, dict[str, Any]] = {}
        self._answers: dict[str, list[bytes]] = {}
        self._dir = Path(config.batch_state_dir) / "batches" if config.batch_state_dir else None
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            for path in sorted(self._dir.glob("*.json")):
                job = json.loads(path.read_text(encoding="utf-8"))
                self._jobs[job["id"]] = job
            self._replay_attempts()

    def _replay_attempts(self) -> None:
        """Count the saved jobs' request bodies again, so `[[sim:...xN]]` directives go on counting
        submissions across a restart (the resubmitted row of a killed run then succeeds)."""
        for job in sorted(self._jobs.values(), key=lambda j: j["t0"]):
            if job["errors"]:
                continue
            try:
                lines, _ = check_lines(self.files.content(job["input_file_id"]))
            except ApiError:  # the input file was deleted
                continue
            for line in lines:
                self.attempts.next(dumps(line["body"]))

    # --- API operations ---
    def create(self, params: Any, echo: str = "") -> dict[str, Any]:
        """A new job from `params` (the create call's body); `echo`: the credentials it came with,
        quoted back in the job's errors and lines (batch_echo_auth)."""
        input_file_id = self._check_params(params)
        now = self.clock()
        bid = "batch_" + os.urandom(12).hex()
        lines, errors = check_lines(self.files.content(input_file_id))
        rng = random.Random(f"{self.config.seed}:{bid}")
        if not errors and rng.random() < self.config.batch_failure_rate:
            why = "The sim failed this job (batch_failure_rate)." + (f" {echo}" if echo else "")
            errors = [_err("batch_failed", why, None)]
        job = {
            "id": bid,
            "t0": now,
            "delay_s": self.config.batch_delay_s,
            "input_file_id": input_file_id,
            "metadata": params.get("metadata"),
            "completion_window": params["completion_window"],
            "errors": errors,
            "expires": not errors and rng.random() < self.config.batch_expiry_rate,
            "custom_ids": [line["custom_id"] for line in lines],
            "ok": "",
            "cancel_at": None,
            "model": next((ln["body"].get("model") for ln in lines if isinstance(ln["body"], dict)), None),
            "tokens": sum(_prompt_tokens(line["body"]) for line in lines),
            "output_file_id": None,
            "error_file_id": None,
            "final": None,
            "echo": echo,
        }
        if not errors:
            job["errors"] = errors = self._over_token_limit(job)
        if not errors:
            self._answer_all(job, lines, int(now))
        self._jobs[bid] = job
        self._save(job)
        return self.view(bid)

    def view(self, bid: str) -> dict[str, Any]:
        """The job as OpenAI's Batch object, finalized first when its time has come."""
        job = self._jobs.get(bid)
        if job is None:
            raise ApiError(404, f"No batch found with id '{bid}'.", param="batch_id")
        status = self._status(job)  # read the clock once: the object must match its files
        if job["final"] is None and status in TERMINAL:
            self._finalize(job, status)
        obj = self._object(job, status)
        if job.get("echo") and not job["errors"]:
            obj["errors"] = {"object": "list", "data": echo_errors(job["echo"])}
        return patched(obj, self.config.batch_patch)

    def cancel(self, bid: str) -> dict[str, Any]:
        status = self.view(bid)["status"]
        job = self._jobs[bid]
        if status in TERMINAL or status == "cancelling":
            raise ApiError(409, f"Cannot cancel a batch with status '{status}'.")
        job["cancel_at"] = self.clock()
        self._save(job)
        return self.view(bid)

    def ids(self) -> list[str]:
        return list(self._jobs)

    def _over_token_limit(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """OpenAI's enqueued-token limit: prompt tokens of a model's unfinished jobs. A job past it is
        created and fails at once (as OpenAI's do) with `token_limit_exceeded`."""
        limit = self.config.batch_token_limit
        if limit is None:
            return []
        enqueued = sum(
            j.get("tokens", 0)
            for j in self._jobs.values()
            if j["model"] == job["model"] and not j["errors"] and self._status(j) not in TERMINAL
        )
        if enqueued + job["tokens"] <= limit:
            return []
        return [
            _err(
                "token_limit_exceeded",
                f"Enqueued token limit reached for {job['model']} in organization "
                f"org-sim. Limit: {limit:,} enqueued tokens. Please try again once some in_progress batches "
                "have been completed.",
                None,
            )
        ]

    # --- internals ---
    def _check_params(self, params: Any) -> str:
        if not isinstance(params, dict):
            raise ApiError(400, "Invalid type for body: expected an object.")
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(params.get(name), str):
                raise ApiError(
                    400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
                )
        if params["endpoint"] != ENDPOINT:
            raise ApiError(
                400,
                f"Invalid value for 'endpoint': the sim runs {ENDPOINT} batches only.",
                param="endpoint",
                code="invalid_value",
            )
        if params["completion_window"] != "24h":
            raise ApiError(
                400,
                "Invalid value for 'completion_window': only '24h' is supported.",
                param="completion_window",
                code="invalid_value",
            )
        meta = self.files.get(params["input_file_id"])
        if meta["purpose"] != "batch":
            raise ApiError(
                400,
                f"File {meta['id']} has purpose {meta['purpose']!r}; a batch input needs 'batch'.",
                param="input_file_id",
            )
        return params["input_file_id"]

    def _answer_all(self, job: dict[str, Any], lines: list[dict[str, Any]], created: int) -> None:
        answers, ok = [], []
        for line in lines:
            attempt = self.attempts.next(dumps(line["body"]))
            fail = (
                random.Random(f"{self.config.seed}:{job['id']}:{line['custom_id']}").random()
                < self.config.batch_error_rate
            )
            good, data = answer_line(self.config, line, attempt, fail, created, job.get("echo", ""))
            answers.append(data)
            ok.append("1" if good else "0")
        job["ok"] = "".join(ok)
        self._answers[job["id"]] = answers
        if self._dir is not None:
            (self._dir / f"{job['id']}.answers").write_bytes(_pack(answers))

    def _elapsed(self, job: dict[str, Any]) -> float:
        return self.clock() - job["t0"]

    def _status(self, job: dict[str, Any]) -> str:
        if job["final"] is not None:
            return job["final"]
        d, elapsed = job["delay_s"], self._elapsed(job)
        if job["errors"]:
            return "validating" if elapsed < 0.1 * d else "failed"
        if job["cancel_at"] is not None:
            return "cancelling" if elapsed < job["cancel_at"] - job["t0"] + _cancel_s(d) else "cancelled"
        p = phase(elapsed, d)
        return ("expired" if job["expires"] else "completed") if p == "done" else p

    def _done_count(self, job: dict[str, Any], status: str) -> int:
        total, d = len(job["custom_ids"]), job["delay_s"]
        if status == "expired":
            return math.floor(total * EXPIRED_DONE_SHARE)
        until = job["cancel_at"] - job["t0"] if job["cancel_at"] is not None else self._elapsed(job)
        share = processed_share(until, d)
        if job["expires"]:
            share = min(share, EXPIRED_DONE_SHARE)
        return math.floor(total * share)

    def _finalize(self, job: dict[str, Any], status: str) -> None:
        if status != "failed":
            done = self._done_count(job, status)
            answers = self._load_answers(job)
            out = [a for a, ok in zip(answers[:done], job["ok"]) if ok == "1"]
            err = [a for a, ok in zip(answers[:done], job["ok"]) if ok == "0"]
            if status == "expired":
                err += [expired_line(cid, job.get("echo", "")) for cid in job["custom_ids"][done:]]
            job["done"] = done
            job["output_file_id"] = self._file(job, "output", out)
            job["error_file_id"] = self._file(job, "error", err)
        job["final"] = status
        self._answers.pop(job["id"], None)
        self._save(job)

    def _file(self, job: dict[str, Any], kind: str, lines: list[bytes]) -> str | None:
        if not lines:
            return None
        return self.files.add(b"".join(lines), f"{job['id']}_{kind}.jsonl", "batch_output")["id"]

    def _load_answers(self, job: dict[str, Any]) -> list[bytes]:
        if job["id"] in self._answers:
            return self._answers[job["id"]]
        path = self._dir / f"{job['id']}.answers" if self._dir is not None else None
        return _unpack(path.read_bytes()) if path is not None and path.exists() else []

    def _save(self, job: dict[str, Any]) -> None:
        if self._dir is None:
            return
        tmp = self._dir / f"{job['id']}.json.tmp"
        tmp.write_text(json.dumps(job), encoding="utf-8")
        os.replace(tmp, self._dir / f"{job['id']}.json")

    def _object(self, job: dict[str, Any], status: str) -> dict[str, Any]:
        t0, d = job["t0"], job["delay_s"]
        at = lambda share: int(t0 + share * d)  # noqa: E731
        obj: dict[str, Any] = dict.fromkeys(
            (
                "cancelled_at",
                "cancelling_at",
                "completed_at",
                "error_file_id",
                "errors",
                "expired_at",
                "failed_at",
                "finalizing_at",
                "in_progress_at",
                "output_file_id",
                "usage",
            )
        )
        obj.update(
            id=job["id"],
            object="batch",
            endpoint=ENDPOINT,
            input_file_id=job["input_file_id"],
            completion_window=job["completion_window"],
            status=status,
            created_at=int(t0),
            expires_at=int(t0) + 86_400,
            metadata=job["metadata"],
            model=job["model"],
        )
        total = len(job["custom_ids"])
        if job["errors"]:
            obj["errors"] = {"object": "list", "data": job["errors"]}
            obj["request_counts"] = {"total": 0, "completed": 0, "failed": 0}
            if status == "failed":
                obj["failed_at"] = at(0.1)
            return obj
        done = job["done"] if job["final"] else self._done_count(job, status)  # final: _finalize counted them
        ok = job["ok"][:done].count("1")
        failed = done - ok + (total - done if status == "expired" else 0)
        obj["request_counts"] = {"total": total, "completed": ok, "failed": failed}
        ran_until = job["cancel_at"] - t0 if job["cancel_at"] is not None else self._elapsed(job)
        if ran_until >= 0.1 * d and status != "validating":  # a job cancelled while validating never ran
            obj["in_progress_at"] = at(0.1)
        if status in ("finalizing", "completed"):
            obj["finalizing_at"] = at(0.9)
        if job["cancel_at"] is not None:
            obj["cancelling_at"] = int(job["cancel_at"])
        ended: dict[str, dict[str, Any]] = {
            "completed": {"completed_at": at(1.0)},
            "expired": {"expired_at": at(1.0)},
            "cancelled": {"cancelled_at": int(job["cancel_at"] + _cancel_s(d)) if job["cancel_at"] else None},
        }
        obj.update(ended.get(status, {}))
        if job["final"]:
            obj["output_file_id"], obj["error_file_id"] = job["output_file_id"], job["error_file_id"]
        return obj


_PACKED = b"#answers-v2\n"  # one JSON string per answer: a hostile answer may span two lines


def _pack(answers: list[bytes]) -> bytes:
    """The answers of a job as saved (latin-1 maps each byte to one character and back)."""
    return _PACKED + b"".join(dumps(a.decode("latin-1")) + b"\n" for a in answers)


def _unpack(data: bytes) -> list[bytes]:
    if not data.startswith(_PACKED):  # saved by an earlier sim: one line per answer
        return data.splitlines(keepends=True)
    return [json.loads(line).encode("latin-1") for line in data[len(_PACKED) :].splitlines()]


# ---------------------------------------------------------------- HTTP


def handle_batches(server: Host, conn: Connection, req: Request, rid: str) -> None:
    try:
        check_auth(server.config.api_key, req)
        body = _route(server.batches, req)
    except ApiError as err:
        return server.send_error(conn, req, rid, err)
    server.send_json(conn, req, rid, 200, body)


def _route(store: BatchStore, req: Request) -> bytes:
    parts = subpath(req, "/batches")
    if req.method == "POST" and not parts:
        return dumps(store.create(parse_body(req.body), echo_of(req) if store.config.batch_echo_auth else ""))
    if req.method == "GET" and not parts:
        return list_page([store.view(bid) for bid in store.ids()], query_of(req), 20)
    if req.method == "GET" and len(parts) == 1:
        return dumps(store.view(parts[0]))
    if req.method == "POST" and len(parts) == 2 and parts[1] == "cancel":
        return dumps(store.cancel(parts[0]))
    raise invalid_url(req.method, req.path)
