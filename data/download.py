#!/usr/bin/env python3
"""Download published token-shard datasets from the Hugging Face Hub, resumably.

Datasets (dataset repos ``Synthyra/<name>_packed``; files ``<name>_{train,valid,test}_%06d.bin``
in the shard format of data/README.md: 256 x int32 header, then uint8 ESM-2 tokens):
``uniref50``, ``omg_prot50``, ``og_prot90``.

What it does
  1. lists the repo (``HfApi.list_repo_tree``) and prints the shards and tokens available
     (tokens = file size - 1024 bytes of header), per split;
  2. downloads all valid and test shards and the first ``--train_shards`` train shards
     (``all`` for every one) into ``--out`` (default ``data/<name>``);
  3. skips a file already present and valid (size equal to the Hub's, header magic 20240520,
     version 1, token count = size - 1024); re-downloads a present but invalid one;
  4. resumes an interrupted download: bytes go to ``<file>.incomplete`` (with the Hub ETag in
     ``<file>.incomplete.etag``); the next run continues with an HTTP ``Range`` request
     (huggingface_hub's ``http_get``, which also retries dropped connections itself) when the ETag
     is unchanged, else restarts it.  The finished file is checked, then renamed into place;
  5. shows a progress bar per file (huggingface_hub's tqdm; ``HF_HUB_DISABLE_PROGRESS_BARS=1``
     hides it) and prints the total tokens available locally per split, and the train command.

All files come from one commit: the revision is pinned to the commit hash of the first metadata
answer.  The endpoint is ``--endpoint`` or ``$HF_ENDPOINT`` (default https://huggingface.co).
Needs ``huggingface_hub`` (imported only when downloading; ``--help`` works without it).

Exit status: 0 when every requested file is present and valid; 1 on a network / Hub error or
an invalid download (the message names the file; partial files are kept, rerun to resume);
2 on bad usage (unknown dataset, no such repo); 130 when interrupted (rerun to resume).

Usage:
  python data/download.py omg_prot50 --train_shards 4          # -> data/omg_prot50/
  python data/download.py uniref50 --train_shards all --out /data/uniref50
  python data/download.py og_prot90 --list                      # only list what is available
"""

import argparse
import os
import re
import struct
import sys
import time
from pathlib import Path

DATASETS = ("uniref50", "omg_prot50", "og_prot90")
SPLITS = ("train", "valid", "test")
MAGIC, VERSION, HEADER_BYTES = 20240520, 1, 1024
DEFAULT_ENDPOINT = "https://huggingface.co"


def repo_for(name: str) -> str:
    """Hub dataset repo id of a dataset name, e.g. 'omg_prot50' -> 'Synthyra/omg_prot50_packed'."""
    return f"Synthyra/{name}_packed"


def shard_problem(path: Path, expected_size: int | None = None) -> str | None:
    """None if ``path`` is a complete shard (and ``expected_size`` bytes when given), else why not.

    Reads only the 12-byte header start and the file size.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError as e:
        return f"cannot read ({e})"
    if expected_size is not None and size != expected_size:
        return f"size {size} bytes, the Hub has {expected_size}"
    if len(head) < 12 or size < HEADER_BYTES:
        return f"{size} bytes, shorter than the {HEADER_BYTES}-byte header"
    magic, version, n = struct.unpack("<3i", head)
    if magic != MAGIC:
        return f"wrong magic {magic} (expected {MAGIC})"
    if version != VERSION:
        return f"unsupported version {version} (expected {VERSION})"
    if HEADER_BYTES + n != size:
        return f"header token count {n} needs {HEADER_BYTES + n} bytes, the file has {size}"
    return None


def list_remote(api, repo_id: str, name: str, revision: str) -> dict[str, list[tuple[int, str, int]]]:
    """{split: [(index, filename, size_bytes), ...] sorted by index} of the repo's shard files."""
    pat = re.compile(rf"^(?:.*/)?{re.escape(name)}_(train|valid|test)_(\d{{6}})\.bin$")
    out: dict[str, list[tuple[int, str, int]]] = {s: [] for s in SPLITS}
    for entry in api.list_repo_tree(repo_id, repo_type="dataset", revision=revision, recursive=True):
        m = pat.match(getattr(entry, "path", ""))
        if m and getattr(entry, "size", None) is not None:
            out[m.group(1)].append((int(m.group(2)), entry.path, int(entry.size)))
    for s in SPLITS:
        out[s].sort()
    return out


def _fmt_tokens(n: int) -> str:
    return f"{n:,} ({n / 1e9:.2f}B)" if n >= 1e9 else f"{n:,}"


def download_file(filename: str, out: Path, repo_id: str, revision: str, endpoint: str,
                  token: str | bool | None, log) -> tuple[str, str]:
    """Fetch one file into ``out`` (resuming ``<file>.incomplete``); returns (status, commit).

    status is 'skipped', 'downloaded' or 'resumed'.  Raises RuntimeError naming the file for a
    download that does not validate; huggingface_hub / network errors propagate.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    dest = out / Path(filename).name
    url = hf_hub_url(repo_id, filename, repo_type="dataset", revision=revision, endpoint=endpoint)
    meta = get_hf_file_metadata(url, token=token, endpoint=endpoint)  # HEAD: size, etag, commit
    if dest.exists():
        why = shard_problem(dest, meta.size)
        if why is None:
            return "skipped", meta.commit_hash
        print(f"  {dest.name}: present but invalid ({why}); downloading it again", file=log)
        dest.unlink()
    part = dest.with_name(dest.name + ".incomplete")
    etag_file = part.with_name(part.name + ".etag")
    resume = 0
    if part.exists():
        old_etag = etag_file.read_text().strip() if etag_file.exists() else None
        size = part.stat().st_size
        if old_etag == meta.etag and (meta.size is None or size <= meta.size):
            resume = size
        else:
            print(f"  {dest.name}: partial file is from another version; starting again", file=log)
            part.unlink()
    etag_file.write_text(f"{meta.etag}\n")
    if resume:
        print(f"  {dest.name}: resuming at {resume / 1e6:.1f} of {meta.size / 1e6:.1f} MB", file=log)
    headers = build_hf_headers(token=token)
    with open(part, "ab") as f:
        http_get(meta.location, f, resume_size=resume, headers=headers, expected_size=meta.size,
                 displayed_filename=dest.name)
    why = shard_problem(part, meta.size)
    if why is not None:
        part.unlink()
        etag_file.unlink(missing_ok=True)
        raise RuntimeError(f"{dest.name}: downloaded file is not a valid shard ({why}); removed, "
                           "rerun to fetch it again")
    os.replace(part, dest)
    etag_file.unlink(missing_ok=True)
    return ("resumed" if resume else "downloaded"), meta.commit_hash


def local_totals(out: Path, name: str) -> dict[str, tuple[int, int]]:
    """{split: (valid files, tokens)} of the shards in ``out`` (tokens from the headers)."""
    res = {}
    for s in SPLITS:
        files = tokens = 0
        for p in sorted(out.glob(f"{name}_{s}_*.bin")):
            if shard_problem(p) is None:
                with open(p, "rb") as f:
                    tokens += struct.unpack("<3i", f.read(12))[2]
                files += 1
        res[s] = (files, tokens)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Download Synthyra/<name>_packed token shards from the Hugging Face Hub "
                    "(resumable; skips files already present and valid).",
        epilog="example: python data/download.py omg_prot50 --train_shards 4",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("name", choices=DATASETS, help="dataset")
    ap.add_argument("--train_shards", default="1",
                    help="number of train shards to fetch (the first N), or 'all'")
    ap.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS,
                    help="splits to fetch (valid and test: every shard)")
    ap.add_argument("--out", type=Path, default=None, help="folder (default data/<name>)")
    ap.add_argument("--revision", default="main", help="branch, tag or commit of the repo")
    ap.add_argument("--repo_id", default=None, help="override the repo (default Synthyra/<name>_packed)")
    ap.add_argument("--endpoint", default=os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT),
                    help="Hub endpoint ($HF_ENDPOINT)")
    ap.add_argument("--list", action="store_true", help="only list the remote shards and tokens")
    args = ap.parse_args(argv)
    if args.train_shards != "all":
        try:
            n_train = int(args.train_shards)
            if n_train < 0:
                raise ValueError
        except ValueError:
            ap.error(f"--train_shards must be a number >= 0 or 'all' (got {args.train_shards!r})")
    else:
        n_train = None
    repo_id = args.repo_id or repo_for(args.name)
    out = args.out or Path(__file__).resolve().parent / args.name
    endpoint = args.endpoint.rstrip("/")
    log = sys.stdout

    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
    except ImportError:
        print("error: needs huggingface_hub: pip install huggingface_hub", file=sys.stderr)
        return 2
    api = HfApi(endpoint=endpoint)  # token: huggingface_hub's own lookup ($HF_TOKEN), never a flag
    try:
        remote = list_remote(api, repo_id, args.name, args.revision)
    except RepositoryNotFoundError as e:
        print(f"error: {repo_id} (revision {args.revision}) not found on {endpoint}: "
              f"{str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    except (HfHubHTTPError, OSError) as e:
        print(f"error: cannot list {repo_id} on {endpoint}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"{repo_id} @ {args.revision} on {endpoint}: shards and tokens available", file=log)
    for s in SPLITS:
        toks = sum(size - HEADER_BYTES for _, _, size in remote[s])
        print(f"  {s:5}  {len(remote[s]):5} shards  {_fmt_tokens(toks)} tokens  "
              f"{sum(sz for _, _, sz in remote[s]) / 1e9:.2f} GB", file=log)
    if not any(remote.values()):
        print(f"error: no {args.name}_<split>_NNNNNN.bin files in {repo_id}", file=sys.stderr)
        return 2
    if args.list:
        return 0

    wanted = []
    for s in args.splits:
        files = remote[s][:n_train] if s == "train" and n_train is not None else remote[s]
        wanted += [(s, fn, size) for _, fn, size in files]
    out.mkdir(parents=True, exist_ok=True)
    total = sum(size for _, _, size in wanted)
    print(f"fetching {len(wanted)} files ({total / 1e9:.2f} GB) into {out}", file=log)
    revision = args.revision
    counts = {"skipped": 0, "downloaded": 0, "resumed": 0}
    failed = []
    t0 = time.time()
    done_bytes = 0
    for k, (s, fn, size) in enumerate(wanted, 1):
        print(f"[{k}/{len(wanted)}] {Path(fn).name}  {size / 1e6:.1f} MB", file=log, flush=True)
        try:
            status, commit = download_file(fn, out, repo_id, revision, endpoint, None, log)
        except KeyboardInterrupt:
            print(f"\ninterrupted: partial data kept in {out / (Path(fn).name + '.incomplete')}; "
                  "rerun the same command to resume", file=sys.stderr)
            return 130
        except Exception as e:  # network errors, Hub errors, invalid download: name the file
            failed.append(fn)
            print(f"  error: {Path(fn).name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                  " (partial data is kept; rerun to resume)", file=sys.stderr)
            continue
        if commit and revision != commit and re.fullmatch(r"[0-9a-f]{40}", commit):
            revision = commit  # pin every later file to the same commit
        counts[status] += 1
        done_bytes += size
        rate = done_bytes / 1e6 / max(time.time() - t0, 1e-9)
        print(f"  {status}  ({done_bytes / 1e9:.2f}/{total / 1e9:.2f} GB done, {rate:.1f} MB/s)",
              file=log, flush=True)

    loc = local_totals(out, args.name)
    print(f"done: {counts['downloaded']} downloaded, {counts['resumed']} resumed, "
          f"{counts['skipped']} already present, {len(failed)} failed", file=log)
    print(f"total tokens available locally in {out}:", file=log)
    for s in SPLITS:
        print(f"  {s:5}  {loc[s][0]:5} shards  {_fmt_tokens(loc[s][1])} tokens", file=log)
    print(f"  all    {sum(v[0] for v in loc.values()):5} shards  "
          f"{_fmt_tokens(sum(v[1] for v in loc.values()))} tokens", file=log)
    d = out if not out.is_absolute() else out
    print("train with:\n  python train_plm.py "
          f"--train_files '{d}/{args.name}_train_*.bin' --valid_files '{d}/{args.name}_valid_*.bin' "
          f"--test_files '{d}/{args.name}_test_*.bin'", file=log)
    if failed:
        print(f"error: {len(failed)} file(s) failed: {', '.join(Path(f).name for f in failed)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
