"""signals.fetch, offline: the "upstream" is served from local bytes through `url_open`.

The pinned hashes are checked against the local copies in ../shared/data/real (skipped,
with the reason, where this checkout has no shared/ beside it); the mechanics (derivation,
tampering, skipping, the missing-data error, the resolver, the CLI) use small synthetic sets.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import urllib.error
from pathlib import Path

import pytest

from signals import fetch as F


class Upstream:
    """An offline `url_open`: serves bytes by URL and records the URLs asked for."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.calls: list[str] = []

    def __call__(self, url, timeout=None):
        assert timeout, "every request has a timeout"
        self.calls.append(url)
        if url not in self.files:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        return io.BytesIO(self.files[url])


def _upstream_bytes(f: F.File, local: bytes) -> bytes:
    """A plausible upstream file whose derivation is `local`: longer than the subset, so
    the test checks that the derivation cuts it."""
    if f.derive == "gzip_head_lines":
        lines = gzip.decompress(local)
        extra = b"".join(json.dumps({"chosen": f"c{i}", "rejected": f"r{i}"}).encode() + b"\n" for i in range(7))
        return gzip.compress(lines + extra, mtime=12345)            # another header than ours
    if f.derive == "json_head":
        data = json.loads(local) + [{"question": f"extra {i}"} for i in range(5)]
        return json.dumps(data, indent=2, ensure_ascii=True).encode()
    return local


def _serve_local(ds: F.DataSet, real: Path) -> Upstream:
    files = {}
    for f in ds.files:
        local = real / ds.folder / f.name
        if local.is_file():
            files[ds.url(f)] = _upstream_bytes(f, local.read_bytes())
    return Upstream(files)


# ---------------------------------------------------------------- the pinned table vs the local copies


def test_table_covers_every_real_data_mapping():
    conf = Path(__file__).resolve().parents[2] / "conf"
    for name, ds in F.SETS.items():
        assert (conf / "source" / f"{name}.yaml").is_file(), name
        assert len(ds.commit) == 40 and all(len(f.sha256) == 64 for f in ds.files), name
        assert any(f.required for f in ds.files), name
    for exp in conf.glob("exp/*.yaml"):
        text = exp.read_text()
        assert "../shared" not in text.split("defaults:")[1], f"{exp.name} still hard-codes ../shared"


@pytest.mark.parametrize("name", list(F.SETS))
def test_pins_match_the_local_copies(name, real_data):
    ds = F.SETS[name]
    for f in ds.files:
        local = real_data / ds.folder / f.name
        if not f.required and not local.is_file():
            continue
        assert F.digest(f, local.read_bytes()) == f.sha256, f"{name}: {f.name}"


@pytest.mark.parametrize("name", list(F.SETS))
def test_fetch_from_upstream_reproduces_the_local_copy(name, real_data, tmp_path):
    ds = F.SETS[name]
    upstream = _serve_local(ds, real_data)
    path = F.fetch(name, tmp_path / "real", url_open=upstream, progress=False)
    assert path == tmp_path / "real" / ds.path and path.is_dir()
    assert F.require(name, tmp_path / "real") == path
    for f in ds.files:
        got = tmp_path / "real" / ds.folder / f.name
        assert F.digest(f, got.read_bytes()) == f.sha256
        if f.derive == "json_head" or f.derive == "identity":
            assert got.read_bytes() == (real_data / ds.folder / f.name).read_bytes()
    readme = (tmp_path / "real" / ds.folder / "README.md").read_text()
    assert ds.commit in readme and ds.license in readme and ds.upstream in readme
    assert not list((tmp_path / "real").rglob("*.part"))
    assert F.fetch(name, tmp_path / "real", url_open=Upstream({}), progress=False) == path   # skips


# ---------------------------------------------------------------- mechanics, on synthetic sets


def _lines(n: int) -> bytes:
    return b"".join(json.dumps({"chosen": f"yes {i}", "rejected": f"no {i}"}).encode() + b"\n" for i in range(n))


@pytest.fixture()
def toy(monkeypatch):
    """Three synthetic sets (one per derivation) and their upstream files."""
    head = _lines(3)
    arr = [{"q": i, "text": "caf\u00e9"} for i in range(10)]
    plain = b'{"a": 1}\n{"a": 2}\n'
    sets = {
        "toy-gz": F.DataSet("toy-gz", "o/gz", "a" * 40, "MIT", "toy-gz", (
            F.File("head.jsonl.gz", "x/test.jsonl.gz", hashlib.sha256(head).hexdigest(),
                   derive="gzip_head_lines", n=3),
            F.File("LICENSE", "LICENSE", "0" * 64, required=False))),
        "toy-json": F.DataSet("toy-json", "o/js", "b" * 40, "Apache-2.0", "toy-json", (
            F.File("first4.json", "d/dev.json",
                   hashlib.sha256(json.dumps(arr[:4], indent=2, ensure_ascii=True).encode()).hexdigest(),
                   derive="json_head", n=4),)),
        "toy-plain": F.DataSet("toy-plain", "o/pl", "c" * 40, "CC0-1.0", "toy", (
            F.File("sub/a.jsonl", "data/a.jsonl", hashlib.sha256(plain).hexdigest()),), subdir="sub"),
    }
    monkeypatch.setattr(F, "SETS", sets)
    files = {
        sets["toy-gz"].url(sets["toy-gz"].files[0]): gzip.compress(head + _lines(10), mtime=99),
        sets["toy-json"].url(sets["toy-json"].files[0]): json.dumps(arr).encode(),
        sets["toy-plain"].url(sets["toy-plain"].files[0]): plain,
    }
    return sets, files, head, plain


def test_derivations_cut_the_upstream(toy, tmp_path, capsys):
    sets, files, head, plain = toy
    up = Upstream(files)
    F.fetch("toy-gz", tmp_path, url_open=up)
    assert gzip.decompress((tmp_path / "toy-gz" / "head.jsonl.gz").read_bytes()) == head
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "sha256 ok" in out[0] and "LICENSE: not fetched" in out[1]   # optional: warned
    assert not (tmp_path / "toy-gz" / "LICENSE").exists()
    F.fetch("toy-json", tmp_path, url_open=up, progress=False)
    got = (tmp_path / "toy-json" / "first4.json").read_text()
    assert json.loads(got) == [{"q": i, "text": "caf\u00e9"} for i in range(4)] and "\\u00e9" in got
    assert F.fetch("toy-plain", tmp_path, url_open=up, progress=False) == tmp_path / "toy" / "sub"
    assert (tmp_path / "toy" / "sub" / "a.jsonl").read_bytes() == plain


def test_tampered_byte_raises_naming_the_file_and_leaves_nothing(toy, tmp_path):
    sets, files, head, plain = toy
    f = sets["toy-plain"].files[0]
    bad = bytearray(plain)
    bad[3] ^= 1
    with pytest.raises(F.ChecksumError) as e:
        F.fetch("toy-plain", tmp_path, url_open=Upstream({sets["toy-plain"].url(f): bytes(bad)}), progress=False)
    msg = str(e.value)
    assert "a.jsonl" in msg and f.sha256 in msg and hashlib.sha256(bad).hexdigest() in msg
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    # a present file with a wrong hash is fetched again; a failed re-fetch removes it
    target = tmp_path / "toy" / "sub" / "a.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bytes(bad))
    with pytest.raises(F.ChecksumError):
        F.fetch("toy-plain", tmp_path, url_open=Upstream({sets["toy-plain"].url(f): bytes(bad)}), progress=False)
    assert not target.exists()
    F.fetch("toy-plain", tmp_path, url_open=Upstream(files), progress=False)
    assert target.read_bytes() == plain


def test_second_fetch_skips_and_force_downloads_again(toy, tmp_path, capsys):
    sets, files, *_ = toy
    up = Upstream(files)
    F.fetch("toy-plain", tmp_path, url_open=up)
    assert len(up.calls) == 1
    F.fetch("toy-plain", tmp_path, url_open=up)
    assert len(up.calls) == 1 and "skipped" in capsys.readouterr().out.splitlines()[-1]
    F.fetch("toy-plain", tmp_path, url_open=up, force=True, progress=False)
    assert len(up.calls) == 2


def test_size_cap_http_errors_and_lfs_pointers(toy, tmp_path):
    sets, files, *_ = toy
    ds = sets["toy-plain"]
    f = ds.files[0]
    with pytest.raises(F.FetchError, match="cap"):
        F.fetch("toy-plain", tmp_path, url_open=Upstream(files), progress=False, max_bytes=5)
    with pytest.raises(F.FetchError, match="HTTP 404"):
        F.fetch("toy-plain", tmp_path, url_open=Upstream({}), progress=False)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 18\n"
    up = Upstream({ds.url(f): pointer, ds.url(f, lfs=True): files[ds.url(f)]})
    F.fetch("toy-plain", tmp_path, url_open=up, progress=False)
    assert up.calls == [ds.url(f), ds.url(f, lfs=True)]
    assert up.calls[1].startswith("https://media.githubusercontent.com/media/o/pl/" + "c" * 40 + "/")


def test_urls_are_pinned_to_the_commit():
    for ds in F.SETS.values():
        for f in ds.files:
            url = ds.url(f)
            assert f"/{ds.repo}/{ds.commit}/{f.upstream}" in url, url
    hh = F.SETS["hh-rlhf"]                       # its *.jsonl.gz live in Git LFS upstream
    assert hh.url(hh.files[0]).startswith("https://media.githubusercontent.com/media/")


# ---------------------------------------------------------------- where the exps look, and the error


def test_require_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.delenv("REAL_DATA", raising=False)
    monkeypatch.chdir(tmp_path)                                    # no data/real, no ../shared here
    with pytest.raises(FileNotFoundError) as e:
        F.require("hh-rlhf")
    assert "python -m signals fetch hh-rlhf" in str(e.value) and "--dest" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="python -m signals fetch mlqe-da --dest elsewhere"):
        F.require("mlqe-da", "elsewhere")
    # the store's folder alone (created before the ingest) is not the data
    (tmp_path / "data" / "real" / "defacto").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="python -m signals fetch defacto$"):
        F.require_path("data/real/defacto")
    with pytest.raises(FileNotFoundError, match="python -m signals fetch mlqe-pe --dest /x/y"):
        F.require_path("/x/y/mlqe-pe/post-editing")
    with pytest.raises(FileNotFoundError, match="not found"):
        F.require_path("some/logs")
    with pytest.raises(ValueError, match="known: defacto"):
        F.require("nope")


def test_real_data_root_order(tmp_path, monkeypatch):
    work = tmp_path / "repo"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("REAL_DATA", raising=False)
    assert F.real_data_root("defacto") == Path("data/real")       # nothing anywhere: the fetch dest
    shared = tmp_path / "shared" / "data" / "real" / "defacto"
    shared.mkdir(parents=True)
    for f in ("train.jsonl", "val.jsonl"):
        (shared / f).write_text("{}\n")
    assert F.real_data_root("defacto") == Path("../shared/data/real")
    assert F.real_data_root("hh-rlhf") == Path("data/real")       # shared lacks that one
    local = work / "data" / "real" / "defacto"
    local.mkdir(parents=True)
    (local / "train.jsonl").write_text("{}\n")
    assert F.real_data_root("defacto") == Path("../shared/data/real")   # incomplete: not used
    (local / "val.jsonl").write_text("{}\n")
    assert F.real_data_root("defacto") == Path("data/real")
    monkeypatch.setenv("REAL_DATA", "/elsewhere")
    assert F.real_data_root("defacto") == Path("/elsewhere")


def test_resolver_never_raises(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    F.register_resolver()
    cfg = OmegaConf.create({"pe": "${real_data:mlqe-pe}", "da": "${real_data:mlqe-da}", "hh": "${real_data:hh-rlhf}"})
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REAL_DATA", raising=False)
    assert cfg.hh == "data/real/hh-rlhf"
    monkeypatch.setenv("REAL_DATA", "/r")
    assert (cfg.pe, cfg.da) == ("/r/mlqe-pe/post-editing", "/r/mlqe-pe/direct-assessments")


# ---------------------------------------------------------------- CLI pieces


def _parse(argv):
    p = argparse.ArgumentParser()
    F.fetch_arguments(p)
    return p.parse_args(argv)


def test_cli_list_and_usage_errors(capsys, tmp_path):
    doc = F.fetch_command.__doc__
    assert doc.split(". ")[0] == "Download the public real-data sets from their upstream repositories at pinned commits"
    assert "python -m signals fetch all" in F.fetch_command.__doc__
    assert F.fetch_command(_parse(["--list", "--dest", str(tmp_path)])) == 0
    out = capsys.readouterr().out
    for ds in F.SETS.values():
        assert ds.name in out and ds.commit in out and ds.license in out and ds.upstream in out
    assert F.fetch_command(_parse([])) == 2
    assert F.fetch_command(_parse(["defacto", "nope"])) == 2
    assert "unknown set(s) nope" in capsys.readouterr().err
    args = _parse(["all", "--force", "--dest", "d"])
    assert (args.names, args.force, args.dest) == (["all"], True, "d")


def test_cli_fetch_reports_errors(toy, tmp_path, monkeypatch, capsys):
    sets, files, *_ = toy
    monkeypatch.setattr(F.urllib.request, "urlopen", Upstream(files))
    assert F.fetch_command(_parse(["all", "--dest", str(tmp_path)])) == 0
    out = capsys.readouterr().out
    assert "toy-plain: ready in" in out and f"export REAL_DATA={tmp_path}" in out
    monkeypatch.setattr(F.urllib.request, "urlopen", Upstream({}))
    assert F.fetch_command(_parse(["toy-json", "--dest", str(tmp_path / "other")])) == 2
    assert "HTTP 404" in capsys.readouterr().err
