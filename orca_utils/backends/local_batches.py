"""The Batch API of the local OpenAI-compatible server (`local_server`): `/v1/files` (upload, metadata, content) and
`/v1/batches` (create, retrieve, cancel). A job runs in the background, all of a model's lines through one
`complete_batch` call (`micro_batching.run_batch`), and writes output and error files as OpenAI's does. In emulation
mode a job goes through OpenAI's asynchronous validation, enqueued-token limit, latency and expiry instead
(`openai_emulation.start_batch`)."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

# Module level (not inside add_batch_routes): FastAPI resolves the endpoints' string annotations in this namespace.
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from .base import Completion, ServerFault
from .local_state import ServerState, chat_body, error_response, public_batch, request_dict
from .micro_batching import run_batch
from .openai_emulation import Emulation, attach_result_files, start_batch

__all__ = ["add_batch_routes"]


def add_batch_routes(app: FastAPI, state: ServerState, emulate: Emulation | None) -> None:
    """Adds the Batch API's files and batches endpoints to `app`, over `state`'s files and batches."""
    # ---- Batch API: files ------------------------------------------------------------------------------
    def file_object(fid: str) -> dict:
        f = state.files[fid]
        return {"id": fid, "object": "file", "bytes": len(f["content"]), "created_at": f["created_at"],
                "filename": f["filename"], "purpose": f["purpose"], "status": "processed"}

    def add_file(content: bytes, filename: str, purpose: str) -> str:
        fid = f"file-{uuid.uuid4().hex[:24]}"
        state.files[fid] = {"content": content, "filename": filename, "purpose": purpose,
                            "created_at": int(time.time())}
        return fid

    @app.post("/v1/files")
    async def upload(file: UploadFile = File(...), purpose: str = Form(...)):
        return file_object(add_file(await file.read(), file.filename or "upload.jsonl", purpose))

    @app.get("/v1/files/{fid}")
    async def file_meta(fid: str):
        return file_object(fid) if fid in state.files else error_response(404, f"no file {fid!r}")

    @app.get("/v1/files/{fid}/content")
    async def file_content(fid: str):
        if fid not in state.files:
            return error_response(404, f"no file {fid!r}")
        return Response(state.files[fid]["content"], media_type="application/octet-stream")

    # ---- Batch API: batches ----------------------------------------------------------------------------
    def process_batch(bid: str) -> None:
        """Run every line of a batch (grouped per model, through complete_batch); write output/error files."""
        batch = state.batches[bid]
        lines = state.files[batch["input_file_id"]]["content"].decode().splitlines()
        batch.update(status="in_progress", in_progress_at=int(time.time()))
        outputs, errors, per_model = [], [], {}
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            item: Any = None
            try:
                item = json.loads(line)
                model = item["body"]["model"]
                if model not in state.backends:
                    raise KeyError(f"model {model!r} not served")
                per_model.setdefault(model, []).append(item)
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                cid = item.get("custom_id") if isinstance(item, dict) else None
                errors.append({"id": f"batch_req_{uuid.uuid4().hex[:16]}", "custom_id": cid, "response": None,
                               "error": {"code": "invalid_request", "message": f"line {n}: {exc}"}})
        batch["request_counts"]["total"] = sum(map(len, per_model.values())) + len(errors)
        for model, items in per_model.items():
            if batch["status"] == "cancelling":
                break
            results = run_batch(state.backends[model], [request_dict(i["body"]) for i in items])
            for item, res in zip(items, results):
                rid = f"batch_req_{uuid.uuid4().hex[:16]}"
                if isinstance(res, Completion):
                    outputs.append({"id": rid, "custom_id": item.get("custom_id"), "error": None, "response": {
                        "status_code": 200, "request_id": rid, "body": chat_body(model, res)}})
                else:
                    status = res.status_code if isinstance(res, ServerFault) else 500
                    body = res.body if isinstance(res, ServerFault) else {"error": {"message": str(res)}}
                    errors.append({"id": rid, "custom_id": item.get("custom_id"), "error": None, "response": {
                        "status_code": status, "request_id": rid, "body": body}})
        attach_result_files(batch, outputs, errors, add_file)
        final = "cancelled" if batch["status"] == "cancelling" else "completed"
        batch.update(status=final, **{f"{final}_at": int(time.time())})

    @app.post("/v1/batches")
    async def create_batch(request: Request):
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError:
            return error_response(400, "request body is not valid JSON")
        if emulate is not None and (refusal := emulate.batch_create_error(body)):
            return JSONResponse(refusal[1], status_code=refusal[0])
        fid = body.get("input_file_id")
        if fid not in state.files:
            return error_response(404, f"input_file_id {fid!r}: no such file")
        if body.get("endpoint") != "/v1/chat/completions":
            return error_response(400, f"endpoint {body.get('endpoint')!r}: only /v1/chat/completions is served")
        if emulate is not None and state.files[fid]["purpose"] != "batch":
            # CreateBatchRequest.input_file_id: the file "must be uploaded with the purpose `batch`".
            return JSONResponse({"error": {"message": f"File {fid} was not uploaded with purpose 'batch'.",
                                           "type": "invalid_request_error", "param": "input_file_id",
                                           "code": None}}, status_code=400)
        bid = f"batch_{uuid.uuid4().hex[:24]}"
        state.batches[bid] = {
            "id": bid, "object": "batch", "endpoint": body["endpoint"], "errors": None, "input_file_id": fid,
            "completion_window": body.get("completion_window", "24h"), "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
            "metadata": body.get("metadata"), "request_counts": {"total": 0, "completed": 0, "failed": 0}}
        if emulate is not None:
            # Always `validating` first; validation, the enqueued-token limit, latency and expiry come afterwards
            # (orca_utils.backends.openai_emulation, from OpenAI's Batch documentation).
            created = state.batches[bid]["created_at"]
            state.batches[bid].update({f"{k}_at": None for k in ("in_progress", "finalizing", "completed", "failed",
                                                                  "expired", "cancelling", "cancelled")})
            state.batches[bid]["expires_at"] = created + int(emulate.completion_window_s)
            start_batch(emulate, state, bid, run_batch, chat_body, add_file)
            return public_batch(state.batches[bid])
        asyncio.get_running_loop().run_in_executor(None, process_batch, bid)
        return public_batch(state.batches[bid])

    @app.get("/v1/batches/{bid}")
    async def get_batch(bid: str):
        return public_batch(state.batches[bid]) if bid in state.batches else error_response(404, f"no batch {bid!r}")

    @app.post("/v1/batches/{bid}/cancel")
    async def cancel_batch(bid: str):
        if bid not in state.batches:
            return error_response(404, f"no batch {bid!r}")
        batch = state.batches[bid]
        if batch["status"] in ("validating", "in_progress"):
            batch["status"] = "cancelling"
            if emulate is not None:
                batch["cancelling_at"] = int(time.time())
        return public_batch(batch)
