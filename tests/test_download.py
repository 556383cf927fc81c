"""Tests for data/download.py against a small Hugging Face Hub look-alike on 127.0.0.1.

No network: a threading http.server in this process answers the endpoints huggingface_hub 2.x
calls (read from its file_download.py / hf_api.py):
  GET  /api/datasets/{repo}/tree/{revision}          list_repo_tree (JSON list, no Link header)
  HEAD /datasets/{repo}/resolve/{revision}/{file}     get_hf_file_metadata: ETag, X-Repo-Commit,
                                                      Content-Length
  GET  same, optionally with 'Range: bytes=N-'        http_get: 206 + Content-Range for resume
The real huggingface_hub code path runs (HfApi, get_hf_file_metadata, http_get); only the server
is fake.  Every request is bounded (small files, timeouts) and loopback only.
"""

import hashlib
import importlib.util
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("huggingface_hub")

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("download", ROOT / "data" / "download.py")
dl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dl)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
NAME = "omg_prot50"
REPO = "Synthyra/omg_prot50_packed"


def shard(seed: int, n_seqs: int) -> bytes:
    rng = np.random.default_rng(seed)
    toks = []
    for _ in range(n_seqs):
        toks += [0, *rng.integers(4, 29, size=int(rng.integers(5, 60))).tolist(), 2]
    header = np.zeros(256, dtype="<i4")
    header[:3] = 20240520, 1, len(toks)
    return header.tobytes() + np.asarray(toks, dtype=np.uint8).tobytes()


class Hub:
    """Files served, the request log and fault injection (cut the next GET after N bytes)."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.log: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.cut_next_get_at: int | None = None
        self.lock = threading.Lock()


def make_handler(hub: Hub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # keep test output quiet
            pass

        def _file(self):
            m = re.fullmatch(rf"/datasets/{re.escape(REPO)}/resolve/([^/]+)/(.+)", self.path)
            if m and m.group(2) in hub.files:
                return m.group(2), hub.files[m.group(2)]
            return None, None

        def _not_found(self):
            body = b'{"error": "Entry not found"}'
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        def _meta_headers(self, data: bytes):
            self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")

        def do_HEAD(self):
            with hub.lock:
                hub.log.append(("HEAD", self.path, None))
            name, data = self._file()
            if data is None:
                return self._not_found()
            self.send_response(200)
            self._meta_headers(data)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()

        def do_GET(self):
            rng = self.headers.get("Range")
            with hub.lock:
                hub.log.append(("GET", self.path.split("?")[0], rng))
            if self.path.startswith(f"/api/datasets/{REPO}/tree/"):
                body = json.dumps([{"type": "file", "path": n, "size": len(d),
                                    "oid": hashlib.sha1(d).hexdigest()}
                                   for n, d in sorted(hub.files.items())]
                                  + [{"type": "file", "path": "README.md", "size": 10,
                                      "oid": "0" * 40}]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            name, data = self._file()
            if data is None:
                return self._not_found()
            start = 0
            if rng:
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self._meta_headers(data)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            with hub.lock:
                cut, hub.cut_next_get_at = hub.cut_next_get_at, None
            if cut is not None:  # simulate a dropped connection mid-body
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def hub(monkeypatch):
    files = {f"{NAME}_train_{k:06d}.bin": shard(k, 40 + 10 * k) for k in range(3)}
    files[f"{NAME}_valid_000000.bin"] = shard(10, 25)
    files[f"{NAME}_test_000000.bin"] = shard(11, 30)
    h = Hub(files)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(h))
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    h.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield h
    server.shutdown()
    server.server_close()


def run(hub, tmp_path, *extra):
    return dl.main([NAME, "--endpoint", hub.endpoint, "--out", str(tmp_path / "d"), *extra])


def test_download_lists_fetches_and_reports_tokens(hub, tmp_path, capsys):
    assert run(hub, tmp_path, "--train_shards", "2") == 0
    out = capsys.readouterr().out
    d = tmp_path / "d"
    got = sorted(p.name for p in d.iterdir())
    assert got == [f"{NAME}_test_000000.bin", f"{NAME}_train_000000.bin",
                   f"{NAME}_train_000001.bin", f"{NAME}_valid_000000.bin"]
    for name in got:
        assert (d / name).read_bytes() == hub.files[name]
    remote_train = sum(len(hub.files[f"{NAME}_train_{k:06d}.bin"]) - 1024 for k in range(3))
    local_train = remote_train - (len(hub.files[f"{NAME}_train_000002.bin"]) - 1024)
    assert re.search(rf"train\s+3 shards\s+{remote_train:,} tokens", out)  # remote listing
    assert re.search(rf"train\s+2 shards\s+{local_train:,} tokens", out)   # local after download
    local_all = local_train + sum(len(hub.files[f"{NAME}_{s}_000000.bin"]) - 1024
                                  for s in ("valid", "test"))
    assert re.search(rf"all\s+4 shards\s+{local_all:,} tokens", out)
    assert "4 downloaded, 0 resumed, 0 already present, 0 failed" in out
    assert f"--train_files '{d}/{NAME}_train_*.bin'" in out
    # the real huggingface_hub path: tree listing, HEAD per file, GET per file, no Range
    assert hub.log[0][0] == "GET" and "/api/datasets/" in hub.log[0][1]
    assert sum(m == "HEAD" for m, _, _ in hub.log) == 4
    assert [r for m, p, r in hub.log if m == "GET" and "/resolve/" in p] == [None] * 4
    # the revision is pinned to the commit of the first answer
    assert any(f"/resolve/{COMMIT}/" in p for _, p, _ in hub.log)

    # second run: everything present and valid -> skipped, no GET of a file
    hub.log.clear()
    assert run(hub, tmp_path, "--train_shards", "2") == 0
    out = capsys.readouterr().out
    assert "0 downloaded, 0 resumed, 4 already present, 0 failed" in out
    assert not [p for m, p, _ in hub.log if m == "GET" and "/resolve/" in p]


def test_resume_partial_file_with_range_request(hub, tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    name = f"{NAME}_train_000000.bin"
    data = hub.files[name]
    etag = hashlib.sha256(data).hexdigest()
    (d / (name + ".incomplete")).write_bytes(data[:1500])  # an interrupted earlier run
    (d / (name + ".incomplete.etag")).write_text(etag + "\n")
    # a present but corrupt file (wrong magic) is fetched again
    bad = f"{NAME}_valid_000000.bin"
    (d / bad).write_bytes(b"\x00" * len(hub.files[bad]))
    assert run(hub, tmp_path, "--train_shards", "1") == 0
    out = capsys.readouterr().out
    assert (d / name).read_bytes() == data and (d / bad).read_bytes() == hub.files[bad]
    assert not list(d.glob("*.incomplete*"))
    assert [r for m, p, r in hub.log if m == "GET" and p.endswith(name)] == ["bytes=1500-"]
    assert "resuming at" in out and "present but invalid (wrong magic 0" in out
    assert "2 downloaded, 1 resumed, 0 already present, 0 failed" in out


def test_dropped_connection_is_resumed(hub, tmp_path, capsys):
    """The server cuts the body after 700 bytes: huggingface_hub's http_get retries by itself
    (after a 1 s pause) and the file ends up whole.  (It buffers up to 10 MB before writing, so
    for a small file the retry starts again at 0; cross-run resume with Range is tested above.)"""
    hub.cut_next_get_at = 700
    assert run(hub, tmp_path, "--train_shards", "0", "--splits", "valid") == 0
    name = f"{NAME}_valid_000000.bin"
    assert (tmp_path / "d" / name).read_bytes() == hub.files[name]
    ranges = [r for m, p, r in hub.log if m == "GET" and p.endswith(name)]
    assert len(ranges) == 2 and ranges[0] is None and ranges[1] in (None, "bytes=700-")
    assert not list((tmp_path / "d").glob("*.incomplete"))


def test_list_only_and_bad_usage(hub, tmp_path, capsys):
    assert run(hub, tmp_path, "--list") == 0
    out = capsys.readouterr().out
    assert re.search(r"valid\s+1 shards", out) and not (tmp_path / "d").exists()
    with pytest.raises(SystemExit):
        dl.main(["not_a_dataset"])
    with pytest.raises(SystemExit):
        run(hub, tmp_path, "--train_shards", "-3")
    # a repo that does not exist: clear error, exit 2
    rc = dl.main(["uniref50", "--endpoint", hub.endpoint, "--out", str(tmp_path / "u")])
    err = capsys.readouterr().err
    assert rc in (1, 2) and "Synthyra/uniref50_packed" in err


def test_shard_problem(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(shard(0, 3))
    assert dl.shard_problem(p) is None
    assert "size" in dl.shard_problem(p, p.stat().st_size + 1)
    raw = bytearray(p.read_bytes())
    raw[8:12] = (10**6).to_bytes(4, "little")
    p.write_bytes(bytes(raw))
    assert "token count 1000000" in dl.shard_problem(p)
