"""`python -m train push` (a run's model and card) and `python -m signals export --to hf --push`
(a snapshot as a dataset) to a hub repository, through huggingface_hub, against a local stand-in
hub (a small HTTP server speaking the endpoints HfApi calls for a commit: repos/create,
validate-yaml, preupload, commit, for models and datasets alike). No network, no real hub."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.train.test_card import manifest
from train.card import write_card

TOKEN = "hf_standinTOKENabcdefghijklmnopqrstuv"


class StandInHub(BaseHTTPRequestHandler):
    repos: dict = {}
    auth: list = []

    def log_message(self, *a):
        pass

    def _json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.auth.append(self.headers.get("Authorization"))
        path = self.path.split("?")[0]
        if path == "/api/repos/create":
            req = json.loads(data)
            repo = f"{req['organization']}/{req['name']}"
            if repo in self.repos:
                return self._json(409, {"error": "You already created this model repo", "url": f"http://{self.headers['Host']}/{repo}"})
            self.repos[repo] = {"private": req.get("visibility") == "private", "type": req.get("type") or "model",
                                "files": {}, "commits": []}
            return self._json(200, {"url": f"http://{self.headers['Host']}/{repo}", "name": repo})
        if path == "/api/validate-yaml":
            return self._json(200, {"errors": [], "warnings": []})
        parts = path.split("/")      # /api/{models|datasets}/ORG/NAME/{preupload|commit}/REV
        repo = f"{parts[3]}/{parts[4]}"
        if repo not in self.repos or parts[2] != self.repos[repo]["type"] + "s":
            return self._json(404, {"error": "Repository not found"})
        if parts[5] == "preupload":
            files = json.loads(data)["files"]
            return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        if parts[5] == "commit":
            lines = [json.loads(x) for x in data.splitlines() if x.strip()]
            for item in lines:
                if item["key"] == "file":
                    self.repos[repo]["files"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            oid = f"{len(self.repos[repo]['commits']) + 1:040x}"
            self.repos[repo]["commits"].append(lines[0]["value"]["summary"])
            return self._json(200, {"commitUrl": f"http://{self.headers['Host']}/{repo}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None})
        return self._json(404, {"error": "no such endpoint in the stand-in"})


@pytest.fixture
def hub(monkeypatch):
    """The stand-in on 127.0.0.1; the suite runs huggingface_hub offline, so it is let out for this."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    StandInHub.repos, StandInHub.auth = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInHub)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", StandInHub
    server.shutdown()


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "runs" / "sft_full_tiny" / "20261128-120000"
    (run / "model" / "checkpoint-5").mkdir(parents=True)
    (run / "model" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (run / "model" / "model.safetensors").write_bytes(b"\x00" * 4096)
    (run / "model" / "checkpoint-5" / "optimizer.pt").write_bytes(b"x")
    m = manifest("HuggingFaceTB/SmolLM2-135M-Instruct", peft=False, methods=("sft",))
    (run / "manifest.json").write_text(json.dumps(m))
    write_card(run, m)
    return run


def test_push_run_to_a_stand_in_hub(hub, run_dir, monkeypatch, capsys):
    from train.__main__ import main

    url, state = hub
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["push", str(run_dir), "acme/support-sft", "--endpoint", url, "--json"]) == 0
    out = capsys.readouterr()
    r = json.loads(out.out)
    repo = state.repos["acme/support-sft"]
    assert repo["private"] and set(repo["files"]) == {"README.md", "config.json", "model.safetensors"} == set(r["files"])
    assert repo["files"]["README.md"].decode() == (run_dir / "model" / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in repo["files"]["README.md"].decode()
    assert all(a == f"Bearer {TOKEN}" for a in state.auth)
    assert TOKEN not in out.out + out.err
    # again: the repository exists (409 is fine), a second commit
    assert main(["push", str(run_dir), "acme/support-sft", "--endpoint", url]) == 0
    assert len(repo["commits"]) == 2


def test_push_without_token_or_hub(run_dir, monkeypatch, capsys, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    from train.__main__ import main

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    assert main(["push", str(run_dir), "acme/x"]) == 2
    assert "token" in capsys.readouterr().err
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["push", str(run_dir), "acme/x", "--endpoint", "http://127.0.0.1:9"]) == 1    # nothing listens
    err = capsys.readouterr().err
    assert "push to acme/x failed" in err and TOKEN not in err
    assert main(["push", str(run_dir), "../../etc", "--endpoint", "http://127.0.0.1:9"]) == 2


@pytest.fixture
def snapshot(tmp_path):
    from signals.build import build_snapshot
    from tests.signals.store_helpers import TinyStore

    s = TinyStore(tmp_path / "s.duckdb")
    for i in range(6):
        s.shown([{"role": "user", "content": f"Question {i} — où ?"}], f"Réponse {i} 🙂", "accept", user=f"u{i % 3}")
        s.shown(f"Mauvais {i}", f"n'importe quoi {i}", "reject", user=f"u{i % 3}")
    s.close()
    return build_snapshot({"name": "hub", "split": {"eval_fraction": 0.25}}, s.path, tmp_path / "snaps")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_export_push_a_dataset_to_a_stand_in_hub(hub, snapshot, tmp_path, monkeypatch, capsys):
    """`signals export --to hf --push`: each non-empty kind a config of one private dataset
    repository, in push_to_hub's layout (parquet per split, a card whose configs name them)."""
    import io

    import huggingface_hub.constants
    import pyarrow.parquet as pq
    import yaml

    from signals.__main__ import main
    from signals.snapshot import COLUMNS, SPLITS

    url, state = hub
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", url)      # what HF_ENDPOINT sets
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["export", str(snapshot.path), "--to", "hf", "--out", str(tmp_path / "hf"), "--push", "acme/support-ds",
                 "--json"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    repo = state.repos["acme/support-ds"]
    assert repo["type"] == "dataset" and repo["private"] and report["pushed"]["kinds"] == ["sft", "kto"]  # no pairs
    assert all(a == f"Bearer {TOKEN}" for a in state.auth) and TOKEN not in out.out + out.err
    assert len(repo["commits"]) == 1 and snapshot.version in repo["commits"][0]
    meta = yaml.safe_load(repo["files"]["README.md"].decode().split("---")[1])
    assert [c["config_name"] for c in meta["configs"]] == ["sft", "kto"]
    for kind in ("sft", "kto"):
        for split in SPLITS:
            want = snapshot.table(kind, split, COLUMNS[kind])
            name = f"{kind}/{split}-00000-of-00001.parquet"
            assert (name in repo["files"]) == (want.num_rows > 0)
            if want.num_rows:
                got = pq.read_table(io.BytesIO(repo["files"][name]))
                assert got.column_names == list(COLUMNS[kind]) and got.to_pylist() == want.to_pylist()
                assert {"split": split, "path": f"{kind}/{split}-*"} in next(
                    c["data_files"] for c in meta["configs"] if c["config_name"] == kind)
    assert not any(f.startswith("pref/") for f in repo["files"])


def test_export_push_failure_names_no_token(snapshot, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    from signals.__main__ import main

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")     # nothing listens
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["export", str(snapshot.path), "--to", "hf", "--out", str(tmp_path / "hf"), "--push", "acme/ds"]) == 1
    err = capsys.readouterr().err
    assert "push to acme/ds failed" in err and TOKEN not in err
    assert (tmp_path / "hf" / "sft").is_dir()             # the local export was written before the push
