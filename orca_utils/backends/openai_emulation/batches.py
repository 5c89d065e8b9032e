"""The Batch API's input validation and life cycle: `start_batch` runs one batch of the local server in a thread,
from `validating` (line count, size, JSON, duplicate `custom_id`, `url`, one model per batch, the per-model
enqueued-token limit) through `in_progress` and `finalizing` to `completed`, or `failed`, `expired` or `cancelled`,
and writes its output and error files."""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from ..base import Completion, ServerFault
from .capabilities import ReasoningPlan, emulated_prompt_tokens
from .emulation import Emulation
from .errors import openai_error

__all__ = ["start_batch"]

log = logging.getLogger(__name__)

# OpenAPI `Batch.status` (openai/openai-openapi@f85dbe2): validating, failed, in_progress, finalizing, completed,
# expired, cancelling, cancelled; `Batch.errors.data[]` is `BatchError` {code, message, param, line}.
# Validation happens after `POST /v1/batches` has answered `validating`: input-file errors surface as a created
# batch that later reports `status: "failed"` with `errors.data[]` entries (stdapi-ai/stdapi.ai#240, which lists the
# documented codes invalid_json_line, duplicate_custom_id, url_mismatch, model_mismatch, empty_file, too_many_tasks;
# community.openai.com "Undocumented batch behavior: output_file_id not returned at creation, must query
# /v1/batches/{id} to detect errors").
_IN_FLIGHT = ("validating", "in_progress", "finalizing")


def _batch_error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict:
    return {"code": code, "message": message, "param": param, "line": line}


def _line_record(custom_id, status: int | None = None, body: dict | None = None, error: dict | None = None) -> dict:
    # The Batch request output object (OpenAI API reference "The request output object"): id, custom_id,
    # response {status_code, request_id, body} or null, error {code, message} or null.
    rid = f"batch_req_{uuid.uuid4().hex[:24]}"
    response = None if status is None else {"status_code": status, "request_id": rid, "body": body}
    return {"id": rid, "custom_id": custom_id, "response": response, "error": error}


@dataclass
class _Line:
    n: int                      # 1-based line number in the input file
    custom_id: Any
    body: dict
    record: dict | None = None  # the finished output/error record
    ok: bool = False


def _validate_input(emu: Emulation, content: bytes, endpoint: str) -> tuple[list[_Line], list[dict]]:
    """The input file's lines, or the `errors.data` entries that make the batch `failed`."""
    if len(content) > emu.batch_max_bytes:
        # Limit: CreateBatchRequest.input_file_id ("can be up to 200 MB in size"); the code is the emulator's own
        # (no documented code found for it).
        return [], [_batch_error("file_too_large", f"The input file is {len(content):,} bytes; the limit is "
                                 f"{emu.batch_max_bytes:,} bytes.")]
    raw = [(n, text) for n, text in enumerate(content.decode("utf-8", errors="replace").splitlines(), 1)
           if text.strip()]
    if not raw:
        return [], [_batch_error("empty_file", "The input file is empty.")]
    if len(raw) > emu.batch_max_lines:
        return [], [_batch_error("too_many_tasks", f"The batch input file has {len(raw):,} requests; the limit is "
                                 f"{emu.batch_max_lines:,} requests per batch.")]
    lines, errors, seen, model = [], [], set(), None
    for n, text in raw:
        try:
            item = json.loads(text)
        except json.JSONDecodeError:
            errors.append(_batch_error("invalid_json_line", "This line is not parseable as valid JSON.", n))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("body"), dict):
            errors.append(_batch_error("invalid_request", "Each line must be an object with custom_id, method, url "
                                       "and an object body.", n, "body"))
            continue
        cid = item.get("custom_id")
        if cid in seen:
            errors.append(_batch_error("duplicate_custom_id", f"The custom_id {cid!r} is used on more than one line; "
                                       "custom_id values must be unique within a batch.", n, "custom_id"))
            continue
        seen.add(cid)
        if item.get("url") != endpoint:
            errors.append(_batch_error("url_mismatch", f"The url {item.get('url')!r} does not match the batch's "
                                       f"endpoint {endpoint!r}.", n, "url"))
            continue
        if str(item.get("method", "")).upper() != "POST":
            # The request input object: "method: The HTTP method to be used for the request. Currently only POST
            # is supported." (the code is the emulator's own).
            errors.append(_batch_error("invalid_method", "Only POST is supported.", n, "method"))
            continue
        line_model = item["body"].get("model")
        if model is None:
            model = line_model
        elif line_model != model:
            errors.append(_batch_error("model_mismatch", f"The model {line_model!r} differs from the batch's model "
                                       f"{model!r}; a batch may use one model only.", n, "body.model"))
            continue
        lines.append(_Line(n, cid, item["body"]))
    return lines, errors


def attach_result_files(batch: dict, outputs: list[dict], errors: list[dict], add_file: Callable) -> None:
    """The Batch object's `request_counts`, and its output and error files (JSONL, one record a line; a file only
    when it has a line), as the Batch API reports a finished batch (OpenAPI `Batch`: output_file_id, error_file_id)."""
    batch["request_counts"].update(completed=len(outputs), failed=len(errors))
    if outputs:
        batch["output_file_id"] = add_file("".join(json.dumps(o) + "\n" for o in outputs).encode(),
                                           f"{batch['id']}_output.jsonl", "batch_output")
    if errors:
        batch["error_file_id"] = add_file("".join(json.dumps(e) + "\n" for e in errors).encode(),
                                          f"{batch['id']}_error.jsonl", "batch_output")


def start_batch(emu: Emulation, state, bid: str, run_batch: Callable, chat_body: Callable,
                add_file: Callable) -> threading.Thread:
    """Run batch `bid` of the server's `state` in a thread, through OpenAI's life cycle (this module's docstring)."""
    thread = threading.Thread(target=_run_batch_lifecycle, args=(emu, state, bid, run_batch, chat_body, add_file),
                              daemon=True, name=f"emulated-{bid}")
    thread.start()
    return thread


def _now() -> int:
    return int(time.time())


def _sleep_unless_cancelled(batch: dict, seconds: float) -> bool:
    """Sleep `seconds`; True if the batch was cancelled meanwhile."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if batch["status"] == "cancelling":
            return True
        time.sleep(min(0.01, max(0.0, end - time.monotonic())))
    return batch["status"] == "cancelling"


def _run_batch_lifecycle(emu: Emulation, state, bid: str, run_batch, chat_body, add_file) -> None:
    batch = state.batches[bid]
    try:
        _lifecycle(emu, state, batch, run_batch, chat_body, add_file)
    except Exception as exc:  # noqa: BLE001 - an emulator bug ends the batch `failed`, the server stays up
        log.exception("emulated batch %s failed", bid)
        batch.update(status="failed", failed_at=_now(), errors={"object": "list", "data": [
            _batch_error("server_error", f"emulator error: {type(exc).__name__}: {exc}")]})
    finally:
        _release(emu, state, batch)


def _release(emu: Emulation, state, batch: dict) -> None:
    """The batch's prompt tokens leave the model's enqueued total (once; before its terminal status shows)."""
    with emu._lock:
        for model, tokens in (batch.pop("_enqueued", None) or {}).items():
            state.enqueued[model] = max(0, state.enqueued.get(model, 0) - tokens)


def _lifecycle(emu: Emulation, state, batch: dict, run_batch, chat_body, add_file) -> None:
    window_end = time.time() + emu.completion_window_s
    if _sleep_unless_cancelled(batch, emu.batch_validation_s):
        batch.update(status="cancelled", cancelled_at=_now())
        return
    lines, errors = _validate_input(emu, state.files[batch["input_file_id"]]["content"], batch["endpoint"])
    if errors:
        batch.update(status="failed", failed_at=_now(), errors={"object": "list", "data": errors[:1000]})
        return
    # The enqueued-token limit: per model, the prompt tokens of the batches in validating / in_progress / finalizing
    # plus this one's. OpenAI reports it on the batch, after create (openai/openai-python#2084: a created batch
    # whose errors carry BatchError(code='token_limit_exceeded', line=None, message='Enqueued token limit reached
    # for gpt-4o-mini in organization org-... Limit: 2,000,000 enqueued tokens. Please try again once some
    # in_progress batches have been completed.', param=None)); Azure OpenAI the same way (learn.microsoft.com Q&A
    # 2285577: "the total number of tokens across all enqueued and in-progress batch jobs").
    model = lines[0].body.get("model")
    tokens = sum(emulated_prompt_tokens(line.body) for line in lines)
    limit = emu.batch_enqueued_token_limit
    with emu._lock:
        enqueued = state.enqueued.get(model, 0)
        if limit is not None and enqueued + tokens > limit:
            state.stats["batches_over_token_limit"] = state.stats.get("batches_over_token_limit", 0) + 1
            over = True
        else:
            state.enqueued[model] = enqueued + tokens
            batch["_enqueued"] = {model: tokens}
            over = False
    if over:
        batch.update(status="failed", failed_at=_now(), errors={"object": "list", "data": [_batch_error(
            "token_limit_exceeded", f"Enqueued token limit reached for {model} in organization org-emulated. "
            f"Limit: {limit:,} enqueued tokens. Please try again once some in_progress batches have been "
            f"completed.")]})
        return
    if batch["status"] == "cancelling":
        _release(emu, state, batch)
        batch.update(status="cancelled", cancelled_at=_now())
        return

    batch.update(status="in_progress", in_progress_at=_now())
    batch["request_counts"] = {"total": len(lines), "completed": 0, "failed": 0}
    started = time.monotonic()
    _answer_lines(emu, state, lines, run_batch, chat_body)
    stalled = {i for i in range(max(0, len(lines) - emu.batch_stalled_lines), len(lines))} \
        if emu.batch_stalled_lines else set()
    due = [started + emu.batch_latency_s * (i + 1) / len(lines) for i in range(len(lines))]
    finished: set[int] = set()
    end_status = "completed"
    while True:
        now = time.monotonic()
        finished = {i for i in range(len(lines)) if i not in stalled and now >= due[i]}
        batch["request_counts"].update(completed=sum(lines[i].ok for i in finished),
                                       failed=sum(not lines[i].ok for i in finished))
        if len(finished) == len(lines):
            break
        if batch["status"] == "cancelling":
            end_status = "cancelled"
            break
        if time.time() >= window_end:
            # help.openai.com "Batch API FAQ": "If a batch expires (i.e. it could not be completed within the SLA
            # time window), then remaining work is cancelled and any already completed work is returned." The
            # unfinished requests go to the error file with code `batch_expired`: OpenAI's
            # `BatchRequestOutput.error.code` ("batch_expired: The request could not be executed before the
            # completion window ended. batch_cancelled: The batch was cancelled before this request executed.",
            # as generated from OpenAI's OpenAPI in genai-rs/openai-client-base docs/BatchRequestOutputError.md);
            # BerriAI/litellm-docs#1571 describes the same: the line "lands in the error file as batch_expired, and
            # the batch ends expired while keeping the lines that finished in time".
            end_status = "expired"
            break
        time.sleep(0.01)

    if end_status == "completed":
        batch.update(status="finalizing", finalizing_at=_now())
        time.sleep(emu.batch_finalizing_s)
    outputs = [lines[i].record for i in sorted(finished) if lines[i].ok]
    errors_out = [lines[i].record for i in sorted(finished) if not lines[i].ok]
    unfinished = [line for i, line in enumerate(lines) if i not in finished]
    if end_status == "expired":
        errors_out += [_line_record(line.custom_id, error={
            "code": "batch_expired",
            "message": "The request could not be executed before the completion window ended."})
            for line in unfinished]
    elif end_status == "cancelled":
        # `batch_cancelled`: "The batch was cancelled before this request executed." (as above).
        errors_out += [_line_record(line.custom_id, error={"code": "batch_cancelled",
                                                           "message": "This request was cancelled."})
                       for line in unfinished]
    attach_result_files(batch, outputs, errors_out, add_file)
    _release(emu, state, batch)
    batch.update(status=end_status, **{f"{end_status}_at": _now()})


def _answer_lines(emu: Emulation, state, lines: list[_Line], run_batch, chat_body) -> None:
    """Every line's output record: refusals as the chat endpoint would answer them, the rest through the backend."""
    to_run: list[tuple[_Line, dict, ReasoningPlan | None]] = []
    for line in lines:
        refusal = emu.chat_request_error(state.backends, line.body)
        if refusal:
            line.record = _line_record(line.custom_id, refusal[0], refusal[1])
            continue
        plan = emu.reasoning_plan(line.body)
        request = _backend_request(line.body, plan)
        if plan is not None and plan.room is not None and plan.room <= 0:
            line.record = _line_record(line.custom_id, 200, Emulation.usage_details(chat_body(
                line.body["model"], Completion("", "length", emulated_prompt_tokens(line.body), 0)), plan))
            line.ok = True
            continue
        to_run.append((line, request, plan))
    if not to_run:
        return
    model = to_run[0][0].body["model"]
    results = run_batch(state.backends[model], [r for _, r, _ in to_run])
    for (line, _, plan), res in zip(to_run, results):
        if isinstance(res, Completion):
            body = Emulation.usage_details(chat_body(model, Emulation.shape_completion(res, plan)), plan)
            line.record, line.ok = _line_record(line.custom_id, 200, body), True
        elif isinstance(res, ServerFault):
            body = res.body if isinstance(res.body, dict) else {"error": {"message": str(res.body)}}
            line.record = _line_record(line.custom_id, res.status_code, body)
        else:
            line.record = _line_record(line.custom_id, 500, openai_error(f"backend failed: {res}", "server_error"))


def _backend_request(body: dict, plan: ReasoningPlan | None) -> dict:
    """What the backend gets (messages, max_tokens, temperature, stop): the visible room of a reasoning request."""
    stop = body.get("stop")
    if plan is not None:
        cap = plan.room if plan.room is not None else None
    else:
        cap = body.get("max_completion_tokens") if body.get("max_completion_tokens") is not None \
            else body.get("max_tokens")
    temperature = body.get("temperature")
    return {"messages": body.get("messages") or [], "max_tokens": int(cap) if cap is not None else 256,
            "temperature": float(temperature) if temperature is not None else 1.0,
            "stop": [stop] if isinstance(stop, str) else stop}
