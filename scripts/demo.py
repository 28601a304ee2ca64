"""`make demo`: the product with its loop closed, on SmolLM2-135M-Instruct and this CPU.

    python -m scripts demo                                  # what `make demo` runs
    python -m scripts demo --users 12 --requests-per-user 2 # fewer simulated users: faster
    python -m scripts demo --engine vllm                    # vLLM generates (make engine-vllm first)
    python -m scripts demo model=tiny                       # overrides go to every job

What happens, in order (everything under `--dir`, data/demo, started over each time):

night 0  the store is seeded with three days of logs of the product's old model; the
         nightly job trains LoRA SFT, the gate promotes the candidate, and with
         `online.enabled` it becomes the canary; production is the off-the-shelf model.
day 1+   the gateway (`python -m serve gateway`, a real process, over a real engine) serves
         both: users in the canary's share get its answers. Each simulated user sends a
         prompt of one of three apps, reads the generated answer, and reacts to that text by
         the hidden house style (scripts/simulate.py `react_live`) through /v1/feedback.
night    SIGHUP makes the gateway publish its log; the nightly job ingests it, and its verify
         stage compares canary and production on the live accept rate (stratified by app,
         bootstrap over users): promote, roll back, or wait for another day (`--days`).
then     a candidate trained on inverted signal (users who want the plain answers) is
         force-promoted to canary, is served, and the live check rolls it back.

The simulated users are the knob: `--users` per day and `--requests-per-user` decide how many
answers the engine generates, which is most of the wall time on a CPU.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from scripts.simulate import APPS, TASKS, live_request, react_live

ROOT = Path(__file__).resolve().parents[1]


def say(msg: str) -> None:
    print(f"demo: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Demo:
    def __init__(self, args):
        self.args = args
        self.dir = Path(args.dir)
        self.store = self.dir / "signal.duckdb"
        self.landing = self.dir / "landing"
        self.runs = self.dir / "runs"
        self.overrides = ["+exp=demo", "online.enabled=true", f"store={self.store}",
                          f"snapshot_root={self.dir / 'snapshots'}", f"output_root={self.runs}",
                          f"nightly.landing={self.landing}", f"nightly.dashboard={self.dir / 'dashboard'}",
                          f"nightly.lock={self.dir / 'nightly.lock'}",
                          f"nightly.min_new_interactions={args.retrain_after}", *args.overrides]
        self.gateway: subprocess.Popen | None = None
        self.url = ""
        self.tokens: dict[str, str] = {}
        self.days: list[dict] = []
        self.last_job_s = 0.0

    # ------------------------------------------------------------------ jobs

    def job(self, module: str, *argv: str) -> dict[str, dict]:
        """Run `python -m module ...` as the scheduler would; its stage lines, keyed by stage."""
        cmd = [sys.executable, "-m", module, *argv]
        t = time.monotonic()
        res = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.last_job_s = time.monotonic() - t
        lines = {}
        for line in res.stdout.splitlines():
            if line.startswith('{"stage"'):
                rec = json.loads(line)
                lines[rec["stage"]] = rec
        if res.returncode not in (0, 4):
            raise SystemExit(f"demo: `{' '.join(cmd[1:4])} ...` failed (exit {res.returncode}); its output is above")
        return lines

    def nightly(self) -> dict[str, dict]:
        return self.job("scripts", "nightly", *self.overrides)

    # ------------------------------------------------------------------ the gateway

    def start_gateway(self) -> None:
        from eval.verify import ensure_production
        from scripts.config import compose
        from serve.keys import KeyFile
        from signals.store import store as open_store

        cfg = compose(self.overrides)
        self.pointer_dir = str(cfg.eval.registry.pointer_dir)
        with open_store(str(self.store)) as con:       # nothing promoted yet: the off-the-shelf model
            ensure_production(con, str(cfg.model.name_or_path), pointer_dir=self.pointer_dir)
        keys = KeyFile(self.dir / "serve" / "keys.json")
        self.tokens = {app: keys.add(app) for app in APPS}
        port = free_port()
        engine = {"transformers": [], "vllm": ["engine.kind=vllm", f"engine.python={self.args.vllm_python}",
                                               f"engine.base_model={cfg.model.name_or_path}"]}[self.args.engine]
        cmd = [sys.executable, "-m", "serve", "gateway", f"port={port}", f"pointer_dir={self.pointer_dir}",
               f"canary_share={self.args.canary_share}", f"keys_file={self.dir / 'serve' / 'keys.json'}",
               f"store={self.store}", f"capture.landing={self.landing}", f"engine.port={free_port()}",
               "reload_s=0.5", *engine]
        log = open(self.dir / "serve" / "gateway.log", "w")
        self.gateway = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        say(f"gateway on {self.url} over {self.args.engine} (log {self.dir / 'serve' / 'gateway.log'})")
        self._wait(lambda: self._get("/health").get("production"), 900, "the gateway to start")

    def stop_gateway(self) -> None:
        if self.gateway and self.gateway.poll() is None:
            self.gateway.send_signal(signal.SIGTERM)
            try:
                self.gateway.wait(60)
            except subprocess.TimeoutExpired:
                self.gateway.kill()

    def _get(self, path: str) -> dict:
        import httpx

        try:
            r = httpx.get(self.url + path, timeout=10,
                          headers={"Authorization": f"Bearer {next(iter(self.tokens.values()))}"})
            return r.json() if r.status_code == 200 else {}
        except httpx.HTTPError:
            return {}

    def _wait(self, ready, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not ready():
            if self.gateway.poll() is not None:
                raise SystemExit(f"demo: the gateway exited (code {self.gateway.returncode}); "
                                 f"see {self.dir / 'serve' / 'gateway.log'}")
            if time.monotonic() > end:
                raise SystemExit(f"demo: gave up waiting {timeout:.0f} s for {what}")
            time.sleep(0.5)

    def serving(self) -> dict[str, str]:
        """{alias: run id} the gateway routes to now."""
        return {m["alias"]: m["id"] for m in self._get("/v1/models").get("data", [])}

    def wait_routes(self) -> dict[str, str]:
        """Until the gateway serves what the registry says (it loads a new run before routing to it)."""
        from eval.registry import alias_target
        from signals.store import store as open_store

        with open_store(str(self.store), read_only=True) as con:
            want = {a: t for a in ("production", "canary") if (t := alias_target(con, a))}
        self._wait(lambda: self.serving() == want, 600, f"the gateway to serve {want}")
        return want

    def publish(self) -> None:
        """SIGHUP: the gateway publishes its open log file; wait until it has."""
        self.gateway.send_signal(signal.SIGHUP)
        self._wait(lambda: not list(self.landing.glob(".gateway-*.open"))
                   and self._get("/v1/gateway/stats").get("capture", {}).get("queued", 1) == 0, 60,
                   "the gateway to publish its log")

    # ------------------------------------------------------------------ simulated users

    async def _day(self, day: int) -> list[dict]:
        import httpx

        a = self.args
        sem = asyncio.Semaphore(a.concurrency)
        out: list[dict] = []
        total = a.users * a.requests_per_user

        async def one(client, user: int, k: int) -> None:
            rng = random.Random(f"{a.seed}-{day}-{user}-{k}")
            app, prompt, name = live_request(rng)
            uid = f"u{user:03d}"
            headers = {"Authorization": f"Bearer {self.tokens[app]}"}
            body = {"messages": prompt, "user": uid, "max_tokens": a.max_tokens, "temperature": 0,
                    "metadata": {"task": TASKS[app], "session_id": f"{uid}-day{day}"}}
            async with sem:
                r = await client.post(f"{self.url}/v1/chat/completions", json=body, headers=headers)
            r.raise_for_status()
            answer = r.json()
            text = answer["choices"][0]["message"]["content"] or ""
            event = react_live(rng, app, text, name, a.noise)
            f = await client.post(f"{self.url}/v1/feedback", headers=headers,
                                  json={"interaction_id": answer["interaction_id"], **event, "user_id": uid})
            f.raise_for_status()
            out.append({"user": uid, "app": app, "run": r.headers.get("x-served-run"), "kind": event["kind"]})
            if len(out) % max(1, total // 10) == 0 or len(out) == total:
                say(f"day {day}: {len(out)}/{total} answers served and reacted to")

        async with httpx.AsyncClient(timeout=httpx.Timeout(900.0)) as client:
            await asyncio.gather(*(one(client, u, k) for u in range(a.users) for k in range(a.requests_per_user)))
        return out

    def serve_day(self, day: int) -> dict:
        routes = self.wait_routes()
        t = time.monotonic()
        say(f"day {day}: {self.args.users} users x {self.args.requests_per_user} requests; serving "
            + ", ".join(f"{a} = {r}" for a, r in routes.items()))
        served = asyncio.run(self._day(day))
        self.publish()
        seconds = time.monotonic() - t
        night = self.nightly()
        verify = night.get("verify", {})
        self.days.append({"day": day, "routes": routes, "served": served, "seconds": seconds, "verify": verify,
                          "night_s": self.last_job_s, "night": {k: v.get("status") for k, v in night.items()}})
        self.report_day(self.days[-1])
        return verify

    def report_day(self, d: dict) -> None:
        by_run: dict[str, list[str]] = {}
        for s in d["served"]:
            by_run.setdefault(s["run"], []).append(s["kind"])
        say(f"day {d['day']}: {len(d['served'])} answers in {d['seconds']:.0f} s; reactions "
            + "; ".join(f"{run}: {', '.join(f'{k} {v.count(k)}' for k in sorted(set(v)))}" for run, v in by_run.items()))
        v = d["verify"]
        if v.get("decision"):
            say(f"night {d['day']} ({d['night_s']:.0f} s): live check of canary {v['canary']}: "
                f"{v['decision'].upper()}: {v['reasons'][0]}")

    # ------------------------------------------------------------------ the inverted candidate

    def inverted_candidate(self) -> Path:
        """LoRA SFT on label-flipped signal (users who want the plain answers): a bad model."""
        inv = self.dir / "inverted"
        say("training a candidate on inverted signal (the scenario the live check must catch)")
        self.job("train", "+exp=demo", "exp_name=demo-inverted", f"store={inv / 'signal.duckdb'}",
                 f"snapshot_root={inv / 'snapshots'}", f"output_root={self.runs}", "stages=[ingest,build,train]",
                 f"seed_store={{simulate:{{days:1,per_day:{self.args.inverted_per_day},seed:1,flip:true}}}}",
                 f"method.args.max_steps={self.args.inverted_steps}", *self.args.overrides)
        say(f"trained the inverted candidate in {self.last_job_s:.0f} s")
        return max((p.parent for p in (self.runs / "demo-inverted").glob("*/manifest.json")),
                   key=lambda p: p.stat().st_mtime)

    def force_canary(self, run_dir: Path) -> None:
        self.job("eval", "promote", str(run_dir), "--alias", "canary", "--force", "--store", str(self.store),
                 "--pointer-dir", self.pointer_dir, "--reason", "demo: forced past the gate, the live check decides")
        say(f"force-promoted {run_dir.name} (inverted signal) to canary")

    # ------------------------------------------------------------------ the whole story

    def run(self) -> int:
        from scripts.config import compose

        t0 = time.monotonic()
        compose(self.overrides)                       # a bad override fails here, before anything is removed
        if self.dir.exists() and any(self.dir.iterdir()):
            if not (self.dir / "signal.duckdb").exists():
                raise SystemExit(f"demo: {self.dir} is not empty and holds no demo store; not removing it "
                                 "(choose another --dir)")
            say(f"starting over in {self.dir} (the last demo's data is removed)")
            shutil.rmtree(self.dir)
        (self.dir / "serve").mkdir(parents=True)
        say("night 0: seed the store with the old model's logs, train, gate, promote to canary")
        night = self.nightly()
        say(f"night 0 ({self.last_job_s:.0f} s): gate {night.get('eval', {}).get('decision')}; "
            f"promote {night.get('promote', {}).get('reason')}")
        try:
            self.start_gateway()
            outcome = self.until_decided(first_day=1)
            if self.args.rollback_scenario:
                self.force_canary(self.inverted_candidate())
                self.until_decided(first_day=len(self.days) + 1)
        finally:
            self.stop_gateway()
        self.summary(time.monotonic() - t0)
        return 0 if outcome in ("promote", None) else 4

    def until_decided(self, first_day: int) -> str | None:
        """Serve day after day until the live check promotes or rolls back the canary (or `--days`)."""
        if "canary" not in self.wait_routes():
            say("no canary to verify (the gate did not promote the candidate)")
            return None
        for day in range(first_day, first_day + self.args.days):
            decision = self.serve_day(day).get("decision")
            if decision in ("promote", "rollback"):
                return decision
        return "wait"

    def summary(self, wall: float) -> None:
        from eval.verify import agreement, live_history
        from signals.store import store as open_store

        with open_store(str(self.store), read_only=True) as con:
            history = live_history(con)
            agree = agreement(con)
        print("\nlive decisions (canary vs production, accept rate by app, 95% CI from a bootstrap over users)")
        print(f"{'canary':<34} {'production':<26} {'canary':>7} {'prod':>7} {'diff':>7} {'95% CI':>17} "
              f"{'n':>9}  decision")
        for h in history:
            print(f"{h['run_id']:<34} {h['baseline_run_id']:<26} {_num(h['candidate']):>7} {_num(h['baseline']):>7} "
                  f"{_num(h['diff'], '+'):>7} [{_num(h['ci_low'], '+')}, {_num(h['ci_high'], '+')}] "
                  f"{h['n_candidate']:>4}/{h['n_baseline']:<4}  {h['decision']}")
        print(f"offline promotes confirmed live: {agree['confirmed']} of {agree['settled']}")
        print(f"wall time {wall / 60:.1f} min ({len(self.days)} served days, "
              f"{sum(len(d['served']) for d in self.days)} answers); dashboard: {self.dir / 'dashboard' / 'index.html'}")


def _num(x, sign: str = "") -> str:
    return "n/a" if x is None else f"{x:{sign}.3f}"


def demo(args) -> int:
    """The product with its loop closed: simulated users, the gateway, nightly training and the live check."""
    d = Demo(args)
    try:
        return d.run()
    except KeyboardInterrupt:
        d.stop_gateway()
        return 1


def add_arguments(p) -> None:
    p.add_argument("--dir", default="data/demo", help="everything the demo writes (removed first)")
    p.add_argument("--users", type=int, default=20, help="simulated users per day (the main knob of the wall time)")
    p.add_argument("--requests-per-user", type=int, default=2, help="prompts each user sends per day")
    p.add_argument("--days", type=int, default=3, help="days each canary is served at most before the demo moves on")
    p.add_argument("--max-tokens", type=int, default=48, help="longest answer the engine generates")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    p.add_argument("--canary-share", type=float, default=0.5, help="share of users the canary serves")
    p.add_argument("--noise", type=float, default=0.1, help="share of random reactions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine", choices=("transformers", "vllm"), default="transformers")
    p.add_argument("--vllm-python", default=".venv-vllm/bin/python")
    p.add_argument("--no-rollback-scenario", dest="rollback_scenario", action="store_false",
                   help="skip the inverted candidate")
    p.add_argument("--retrain-after", type=int, default=500,
                   help="new interactions before a night trains again (nightly.min_new_interactions)")
    p.add_argument("--inverted-steps", type=int, default=12, help="training steps of the inverted candidate")
    p.add_argument("--inverted-per-day", type=int, default=150)
