"""The gateway: an OpenAI-compatible front for the engine that logs what users do.

    POST /v1/chat/completions   proxied to the engine (streaming or not); the answer carries
                                its interaction id (header X-Interaction-Id, body interaction_id)
    POST /v1/feedback           accept/edit/reject/rate/choose events, checked by the ingest rules
    GET  /v1/models             the served runs (production, canary)
    GET  /v1/gateway/stats      captured / dropped lines, aliases, suppressed users (needs a key)
    GET  /health                no key

Who: the app is the API key's; user, session and task come from the body (`user`,
`metadata.user_id|session_id|task`) or the headers X-User-Id, X-Session-Id, X-Task.
A user on `<store>.suppress` (opted out or forgotten) is served but nothing of them is
written. Keys never appear in a log line or a record.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from serve import ServeError

MAX_ID_CHARS = 256


class Gateway:
    """State shared by the handlers: routes, engine, keys, limits, capture, suppression list."""

    def __init__(self, cfg, engine, *, log=print):
        from serve.capture import Capture
        from serve.keys import KeyFile
        from serve.limits import RateLimiter
        from serve.routing import Routes
        from signals.suppress import Suppressed
        from signals.validate import RecordChecker

        self.cfg, self.engine, self.log = cfg, engine, log
        self.routes = Routes(cfg.pointer_dir, cfg.canary_share)
        self.keys = KeyFile(cfg.keys_file)
        self.keys.reload()
        if cfg.require_keys and not len(self.keys):
            raise ServeError(f"no API key in {cfg.keys_file}: add one (python -m serve keys add APP "
                             f"--keys-file {cfg.keys_file}) or run with require_keys=false on a private host")
        self.limiter = RateLimiter(cfg.limits.requests_per_minute, cfg.limits.burst)
        self.suppressed = Suppressed(cfg.store)
        if len(self.suppressed) and self.suppressed._key is None:
            raise ServeError(f"{self.suppressed.path} lists users but the store's key is missing "
                             f"($SIGNALS_KEY or {cfg.store}.key): the gateway cannot tell who not to log")
        cap = cfg.capture
        self.capture = Capture(cap.landing, queue_size=cap.queue_size, flush_ms=cap.flush_ms) \
            if cap.enabled else None
        self.checker = RecordChecker()
        self.not_logged = 0
        self.client = None
        self.started = time.time()

    # ------------------------------------------------------------------ lifecycle

    async def startup(self) -> None:
        import aiohttp
        import httpx

        self.client = httpx.AsyncClient(timeout=httpx.Timeout(self.cfg.limits.upstream_timeout_s, connect=10.0))
        # the request path uses aiohttp: measured here, about half httpx's CPU per streamed request
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256),
            timeout=aiohttp.ClientTimeout(total=self.cfg.limits.upstream_timeout_s, connect=10.0))
        await self.refresh()
        self._task = asyncio.create_task(self._watch())
        if self.capture:        # SIGHUP: publish the capture file now (before a scheduled job runs)
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.capture.publish_now)

    async def shutdown(self) -> None:
        self._task.cancel()
        await self.client.aclose()
        await self.session.close()
        if self.capture:
            self.capture.close()
        self.checker.close()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.reload_s)
            try:
                await self.refresh()
            except Exception as e:  # noqa: BLE001 - keep serving the old routes; say why
                self.log(f"serve: reload failed, routes unchanged: {e}")

    async def refresh(self) -> None:
        """Pick up moved aliases (loading the new model first), new keys, new opt-outs."""
        self.keys.reload()
        self.suppressed.reload()
        for alias, target in self.routes.changed().items():
            if target is not None:
                if self.engine.kind == "vllm" and not target.peft and \
                        Path(target.model_path).resolve() != Path(str(self.engine.base_model)).resolve():
                    raise ServeError(f"run {target.run_id} is a full model; this vLLM engine serves "
                                     f"{self.engine.base_model} and its LoRA adapters (export it and serve it "
                                     "from its own engine)")
                await self.engine.prepare(self.client, target)
            self.routes.apply(alias, target)
            self.log(f"serve: {alias} -> {target.run_id if target else '(none)'}")

    # ------------------------------------------------------------------ request checks

    def authorize(self, request) -> tuple[str | None, object]:
        """(app, None) or (None, an error response): 401, 429."""
        from starlette.responses import JSONResponse

        if not self.cfg.require_keys:
            return request.headers.get("x-app", "default")[:MAX_ID_CHARS], None
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        app = self.keys.app_for(token)
        if app is None:
            return None, error(401, "missing or unknown API key (Authorization: Bearer sk-sig-...)",
                               "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        wait = self.limiter.take(app)
        if wait:
            return None, JSONResponse(
                {"error": {"message": f"rate limit: {self.cfg.limits.requests_per_minute:g} requests/minute "
                           f"for app {app}", "type": "rate_limit_exceeded"}},
                status_code=429, headers={"Retry-After": str(max(1, round(wait)))})
        return app, None

    async def admit(self, request) -> tuple[str | None, object, object]:
        """(app, JSON body, None), or (None, None, the 401/429/413/400 response)."""
        app, refusal = self.authorize(request)
        if refusal:
            return None, None, refusal
        body, bad = await self.read_json(request)
        return (None, None, bad) if bad else (app, body, None)

    async def read_json(self, request) -> tuple[object, object]:
        """(body, None) or (None, 413/400): the size is checked before and while reading."""
        limit = int(self.cfg.limits.max_body_bytes)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return None, error(413, f"request body over {limit} bytes (limits.max_body_bytes)", "too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None, error(413, f"request body over {limit} bytes (limits.max_body_bytes)", "too_large")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks)), None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return None, error(400, f"body is not JSON: {e}", "invalid_json")

    # ------------------------------------------------------------------ capture

    def who(self, request, body: dict) -> dict:
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        h = request.headers

        def pick(*values):
            for v in values:
                if isinstance(v, str | int) and not isinstance(v, bool) and str(v):
                    return str(v)[:MAX_ID_CHARS]
            return None
        return {"user_id": pick(body.get("user"), meta.get("user_id"), h.get("x-user-id")),
                "session_id": pick(meta.get("session_id"), h.get("x-session-id")),
                "task": pick(meta.get("task"), h.get("x-task")),
                "metadata": {k: v for k, v in meta.items() if k not in ("user_id", "session_id", "task")}}

    def record(self, rec, user_id: str | None) -> bool:
        """Queue a record (or a function the writer calls to build it) unless its user is
        suppressed; True when it was queued."""
        if self.capture is None:
            return False
        if self.suppressed.contains(user_id):
            self.not_logged += 1
            return False
        return self.capture.submit(rec)

    def redact(self, messages, completion: str):
        if not self.cfg.capture.redact_pii:
            return messages, completion
        from signals.pii import redact

        out = []
        for m in messages:
            if isinstance(m, dict) and isinstance(m.get("content"), str):
                m = {**m, "content": redact(m["content"])[0]}
            out.append(m)
        return out, redact(completion)[0]


def error(status: int, message: str, kind: str, headers: dict | None = None, **extra):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, **extra}}, status_code=status,
                        headers=headers)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------- handlers


async def chat(request):
    from starlette.responses import Response, StreamingResponse

    gw: Gateway = request.app.state.gateway
    app_name, body, refusal = await gw.admit(request)
    if refusal:
        return refusal
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        return error(400, "body must be a JSON object with a non-empty `messages` list", "invalid_request")
    who = gw.who(request, body)
    pinned = body.get("model") if body.get("model") in ("production", "canary") else None
    target = gw.routes.pick(who["user_id"], pinned)
    if target is None:
        return error(503, "no model is promoted yet (no production alias in "
                     f"{gw.cfg.pointer_dir}/production.json)", "no_model")
    iid = f"gw-{uuid.uuid4().hex}"
    upstream = {k: v for k, v in body.items() if k not in ("metadata", "user")}
    upstream["model"] = gw.engine.model_name(target)
    stream = bool(body.get("stream"))
    if stream:
        upstream["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    started, ts = time.perf_counter(), now_iso()
    headers = {"X-Interaction-Id": iid, "X-Served-Run": target.run_id}

    def record(raw: bytes, streamed: bool, ttft: float | None, latency: float) -> dict:
        """The interaction, built in the writer thread: parsing stays off the request path."""
        completion, usage, finish = parse_answer(raw, streamed)
        messages, completion = gw.redact(body["messages"], completion)
        return {"interaction_id": iid, "ts": ts, "user_id": who["user_id"], "session_id": who["session_id"],
                "app": app_name, "task": who["task"], "model_id": target.run_id, "prompt": messages,
                "completion": completion,
                "metadata": {**who["metadata"], "alias": target.alias, "source": "gateway",
                             "latency_ms": round(latency * 1000, 2),
                             "ttft_ms": round(ttft * 1000, 2) if ttft is not None else None,
                             "prompt_tokens": usage.get("prompt_tokens"),
                             "completion_tokens": usage.get("completion_tokens"), "finish_reason": finish}}

    # The engine's bytes go back as they come, with two byte-level edits: the interaction id
    # is added to each JSON object, and the engine's model name becomes the run id.
    inject = b'{"interaction_id":"' + iid.encode() + b'",'
    engine_name, run_name = json.dumps(upstream["model"]).encode(), json.dumps(target.run_id).encode()
    url = f"{gw.engine.url}/v1/chat/completions"
    try:
        r = await gw.session.post(url, json=upstream)
    except Exception as e:  # noqa: BLE001 - aiohttp transport errors and timeouts: the engine is down
        return error(502, f"the engine did not answer: {type(e).__name__}", "engine_unavailable")
    if r.status != 200 or not stream:
        try:
            content = await r.read()
        except Exception as e:  # noqa: BLE001
            return error(502, f"the engine's answer broke off: {type(e).__name__}", "engine_unavailable")
        finally:
            r.release()
        if r.status != 200:
            return Response(content, status_code=r.status, media_type="application/json", headers=headers)
        gw.record(lambda: record(content, False, None, time.perf_counter() - started), who["user_id"])
        body_out = inject + content.lstrip()[1:].replace(engine_name, run_name, 1)
        return Response(body_out, media_type="application/json", headers=headers)

    async def relay():
        raw, pending, ttft, done = [], b"", None, False
        try:
            async for data in r.content.iter_any():
                raw.append(data)
                pending += data
                cut = pending.rfind(b"\n\n") + 2
                if cut < 2:
                    continue
                events, pending = pending[:cut], pending[cut:]
                if ttft is None and CONTENT.search(events):
                    ttft = time.perf_counter() - started
                done = done or b"[DONE]" in events
                yield events.replace(b"data: {", b"data: " + inject).replace(engine_name, run_name)
            if pending:
                yield pending
            if not done:
                yield b"data: [DONE]\n\n"
        finally:
            r.release()
        latency = time.perf_counter() - started
        gw.record(lambda: record(b"".join(raw), True, ttft, latency), who["user_id"])

    return StreamingResponse(relay(), media_type="text/event-stream", headers=headers)


CONTENT = re.compile(rb'"content": ?"[^"]')


def parse_answer(raw: bytes, streamed: bool) -> tuple[str, dict, str | None]:
    """(completion text, usage, finish_reason) from the engine's JSON body or its SSE stream."""
    if not streamed:
        out = json.loads(raw)
        choice = (out.get("choices") or [{}])[0]
        return (choice.get("message") or {}).get("content") or "", out.get("usage") or {}, choice.get("finish_reason")
    parts, usage, finish = [], {}, None
    for line in raw.split(b"\n"):
        if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
            continue
        try:
            chunk = json.loads(line[5:])
        except ValueError:
            continue
        for c in chunk.get("choices") or []:
            parts.append((c.get("delta") or {}).get("content") or "")
            finish = c.get("finish_reason") or finish
        usage = chunk.get("usage") or usage
    return "".join(parts), usage, finish


FEEDBACK_FIELDS = ("event_id", "interaction_id", "ts", "kind", "edited_text", "score", "other_interaction_id",
                   "user_id", "metadata")


async def feedback(request):
    from starlette.responses import JSONResponse

    gw: Gateway = request.app.state.gateway
    app_name, body, refusal = await gw.admit(request)
    if refusal:
        return refusal
    events = body.get("events") if isinstance(body, dict) and "events" in body else [body]
    if not isinstance(events, list) or not events or len(events) > 1000:
        return error(422, "send one event object, or {\"events\": [...]} with 1 to 1000 events", "invalid_event")
    records = []
    for i, ev in enumerate(events):
        if not isinstance(ev, dict):
            return error(422, f"events[{i}]: an event must be a JSON object", "invalid_event", row=i + 1)
        unknown = sorted(set(ev) - set(FEEDBACK_FIELDS))
        if unknown:
            return error(422, f"events[{i}]: unknown field {unknown[0]!r}; fields: {', '.join(FEEDBACK_FIELDS)}",
                         "invalid_event", row=i + 1, field=unknown[0])
        rec = {"event_id": f"fb-{uuid.uuid4().hex}", "ts": now_iso(), **ev}
        if rec.get("user_id") is None and request.headers.get("x-user-id"):
            rec["user_id"] = request.headers["x-user-id"][:MAX_ID_CHARS]
        meta = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
        if "metadata" not in rec or isinstance(rec.get("metadata"), dict):
            rec["metadata"] = {**meta, "app": app_name, "source": "gateway"}
        records.append(rec)
    problems = await asyncio.get_running_loop().run_in_executor(None, gw.checker.check, records)
    if problems:
        p = problems[0]
        return error(422, f"events[{p['row'] - 1}].{p['field']}: {p['reason']}: {p['detail']}", "invalid_event",
                     row=p["row"], field=p["field"], reason=p["reason"], problems=problems)
    logged = sum(gw.record(rec, rec.get("user_id")) for rec in records)
    return JSONResponse({"accepted": len(records), "logged": logged,
                         "event_ids": [r["event_id"] for r in records]})


async def models(request):
    from starlette.responses import JSONResponse

    gw: Gateway = request.app.state.gateway
    _, refusal = gw.authorize(request)
    if refusal:
        return refusal
    data = [{"id": t.run_id, "object": "model", "owned_by": "signals", "alias": alias, "created": 0}
            for alias, t in sorted(gw.routes.current.items())]
    return JSONResponse({"object": "list", "data": data})


async def stats(request):
    from starlette.responses import JSONResponse

    gw: Gateway = request.app.state.gateway
    _, refusal = gw.authorize(request)
    if refusal:
        return refusal
    return JSONResponse({"capture": gw.capture.stats() if gw.capture else None, "not_logged": gw.not_logged,
                         "suppressed_users": len(gw.suppressed), "canary_share": gw.routes.canary_share,
                         "aliases": {a: t.run_id for a, t in gw.routes.current.items()},
                         "engine": {"kind": gw.engine.kind, "url": gw.engine.url},
                         "uptime_s": round(time.time() - gw.started, 1)})


async def health(request):
    from starlette.responses import JSONResponse

    gw: Gateway = request.app.state.gateway
    return JSONResponse({"status": "ok", "production": bool(gw.routes.current.get("production"))})


def build_app(gateway: Gateway):
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.routing import Route

    @asynccontextmanager
    async def lifespan(app):
        await gateway.startup()
        try:
            yield
        finally:
            await gateway.shutdown()

    app = Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/feedback", feedback, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/gateway/stats", stats, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ], lifespan=lifespan)
    app.state.gateway = gateway
    return app


def run_gateway(cfg) -> int:
    """Start the engine (unless engine.url names a running one), serve until SIGINT/SIGTERM, stop the engine."""
    import uvicorn

    from serve.engine import Engine

    if str(cfg.host) not in ("127.0.0.1", "localhost", "::1"):
        print(f"serve: listening on {cfg.host}: put TLS in front of it (API keys travel in headers)")
    engine = Engine.from_config(cfg.engine, log_dir=Path(str(cfg.keys_file)).parent)
    print(f"serve: starting the {engine.kind} engine at {engine.url}" if engine.command else
          f"serve: using the engine at {engine.url}", flush=True)
    engine.start()
    try:
        gateway = Gateway(cfg, engine)
        print(f"serve: gateway on http://{cfg.host}:{cfg.port} (landing {cfg.capture.landing}, "
              f"{len(gateway.keys)} API key(s), canary share {cfg.canary_share:g})", flush=True)
        uvicorn.run(build_app(gateway), host=str(cfg.host), port=int(cfg.port), log_level="warning",
                    access_log=False, loop="uvloop", http="httptools",
                    timeout_keep_alive=75)     # > clients' pool idle time: no POST on a connection being closed
    finally:
        engine.stop()
    return 0
