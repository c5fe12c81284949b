#!/usr/bin/env python3
"""Real ML readers against inputfs: data generator, "needed bytes" oracle, timed checked runs.

Why this exists: the inputfs benchmark and end-to-end test must show that real ML
libraries (pyarrow, safetensors, h5py, WebDataset-style tar streaming, many small files)
read correct data through the FUSE mount, and how much of a file a sparse reader needs.
Synthetic fio-style patterns cannot show either, so this drives the libraries themselves.

Subcommands (JSON object on stdout; on error one line "mlreaders: ..." on stderr, exit 1):
  generate OUT_DIR [--scale S] [--whole-scale W]
                                        write the data set and manifest.json (deterministic);
                                        W scales the tar shards and small files (default S)
  needed ROOT --block-size B            byte ranges each sparse reader needs, from file layout
  run SCENARIO ROOT --manifest M        run one reader cold, timed, every result checked
  check-venv                            library versions, for the report

Definition choices:
* "needed" comes from each file's own layout metadata (parquet footer and column-chunk
  offsets, safetensors header offsets, HDF5 chunk addresses), never from what the
  filesystem observes: it is the oracle the mount's fetch counts are judged against,
  and a figure measured through the mount would only restate its own readahead and
  block rounding, so it could never reveal over-fetching.
  - parquet: the footer as a reader must fetch it, not knowing its length: the last
    64 KiB (pyarrow's default footer read) or the whole footer [size-8-metadata_len,
    size) if longer, plus, for every row group, the
    column chunk of "c3" (dictionary page offset if set, else data page offset;
    length total_compressed_size). The reader reads column c3 of every row group.
  - safetensors: the header [0, 8+header_len) plus the data_offsets of the two loaded
    tensors, shifted by 8+header_len.
  - hdf5: the metadata (superblock, object headers and chunk index: every byte
    before the first chunk and every gap between chunks) plus every chunk whose row
    range intersects the slice. The file is written with libver="latest", whose
    chunk index (a fixed array) is one small data block between the first chunks;
    with h5py's default libver the index is a v1 B-tree whose nodes are scattered
    between chunks, and the gaps would count nodes the slice never visits.
  Blocks: each range is rounded out to whole blocks of B bytes, union per file;
  "bytes" sums the touched blocks, the last block of a file clamped to the file size.
  Tar shards and small files are read whole, so they get no "needed" entry.
* Timings (time.perf_counter) start just before the first open (or the directory
  listing, for small files) and cover I/O and decoding as a user would do them.
  Verification (sha256, sums) happens after the clock stops so hashing speed does
  not pollute the I/O measurement; it is still complete and mandatory.
* first_s is time to first batch: first row group, first tensor, the slice, first
  decoded tar sample, first small file.
* Determinism: every artefact comes from numpy default_rng seeded with a fixed
  per-artefact key, tar members carry fixed mtime/uid/names, HDF5 does not track times.
"""
import argparse
import hashlib
import io
import json
import math
import os
import random
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import safetensors
from safetensors import safe_open
from safetensors.numpy import save_file

MIB = 1 << 20
SEED = 20240611
PQ_FILE, PQ_COLUMN, PQ_NCOLS, PQ_GROUPS = "table.parquet", "c3", 16, 8
ST_FILE, ST_NTENSORS = "model.safetensors", 64
ST_LOADED = ["layer.17.weight", "layer.42.weight"]
H5_FILE, H5_DSET, H5_COLS, H5_CHUNK_ROWS, H5_SLICE_ROWS = "data.h5", "x", 1024, 256, 100
TAR_SHARDS, TAR_WORKERS, TAR_NPY_SHAPE = 8, 4, (256, 256)  # 256 KiB float32 per sample
SMALL_MIN, SMALL_MAX, SMALL_WORKERS = 4 * 1024, 28 * 1024, 8


class Failure(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def sha256(data) -> str:
    return hashlib.sha256(data).hexdigest()


def rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([SEED, *key])


def le_bytes(arr: np.ndarray, dtype: str) -> bytes:
    """Array bytes as little-endian C-order, the form every checksum is taken over."""
    return np.ascontiguousarray(arr, dtype=dtype).tobytes()


def h5_slice_start(n_rows: int) -> int:
    return n_rows * 5 // 8 + 37


def h5_rows(scale: float) -> int:
    return max(H5_CHUNK_ROWS, round(256 * MIB * scale / (H5_COLS * 4)))


def gen_parquet(out: str, scale: float) -> dict:
    group_rows = max(1, round(256 * MIB * scale / (PQ_NCOLS * 8)) // PQ_GROUPS)
    rows = group_rows * PQ_GROUPS
    cols = {f"c{i}": rng(1, i).standard_normal(rows) for i in range(PQ_NCOLS)}
    pq.write_table(pa.table(cols), os.path.join(out, PQ_FILE), row_group_size=group_rows,
                   compression="NONE", use_dictionary=False)
    col = cols[PQ_COLUMN]
    return {"file": PQ_FILE, "column": PQ_COLUMN, "rows": rows, "row_group_rows": group_rows,
            "rg0_sum": float(np.sum(col[:group_rows])), "rg0_sha256": sha256(le_bytes(col[:group_rows], "<f8")),
            "sum": float(np.sum(col)), "sha256": sha256(le_bytes(col, "<f8"))}


def gen_safetensors(out: str, scale: float) -> dict:
    rows = max(1, round(4 * MIB * scale / (1024 * 4)))
    tensors = {f"layer.{i:02d}.weight": rng(2, i).standard_normal((rows, 1024), dtype=np.float32)
               for i in range(ST_NTENSORS)}
    save_file(tensors, os.path.join(out, ST_FILE))
    return {"file": ST_FILE, "tensors": ST_LOADED, "shape": [rows, 1024],
            "sha256": {n: sha256(le_bytes(tensors[n], "<f4")) for n in ST_LOADED}}


def gen_hdf5(out: str, scale: float) -> dict:
    n, a = h5_rows(scale), h5_slice_start(h5_rows(scale))
    data = rng(3).standard_normal((n, H5_COLS), dtype=np.float32)
    with h5py.File(os.path.join(out, H5_FILE), "w", libver="latest") as f:
        ds = f.create_dataset(H5_DSET, shape=data.shape, dtype="<f4", chunks=(H5_CHUNK_ROWS, H5_COLS),
                              track_times=False)
        for r in range(0, n, H5_CHUNK_ROWS):  # in order, so chunk addresses ascend
            ds[r:r + H5_CHUNK_ROWS] = data[r:r + H5_CHUNK_ROWS]
    return {"file": H5_FILE, "dataset": H5_DSET, "rows": n, "slice_start": a, "slice_rows": H5_SLICE_ROWS,
            "sha256": sha256(le_bytes(data[a:a + H5_SLICE_ROWS], "<f4"))}


def add_tar_member(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tf.addfile(info, io.BytesIO(data))


def gen_shards(out: str, scale: float) -> dict:
    os.makedirs(os.path.join(out, "shards"))
    per_shard = max(1, round(32 * MIB * scale / (TAR_NPY_SHAPE[0] * TAR_NPY_SHAPE[1] * 4)))
    names, samples = [], {}
    for s in range(TAR_SHARDS):
        name = f"shards/shard-{s:03d}.tar"
        g = rng(4, s)
        with tarfile.open(os.path.join(out, name), "w", format=tarfile.USTAR_FORMAT) as tf:
            for j in range(per_shard):
                key = f"s{s:03d}-{j:05d}"
                buf = io.BytesIO()
                np.save(buf, g.standard_normal(TAR_NPY_SHAPE, dtype=np.float32))
                cls = int(g.integers(0, 1000))
                add_tar_member(tf, f"{key}.npy", buf.getvalue())
                add_tar_member(tf, f"{key}.cls", str(cls).encode("ascii"))
                samples[key] = {"npy_sha256": sha256(buf.getvalue()), "cls": cls}
        names.append(name)
    return {"names": names, "samples_per_shard": per_shard, "samples": samples}


def gen_small(out: str, scale: float) -> dict:
    os.makedirs(os.path.join(out, "small"))
    count = 10000 if scale >= 1 else max(1000, round(10000 * scale))
    g, files = rng(5), {}
    for i in range(count):
        data = g.bytes(int(g.integers(SMALL_MIN, SMALL_MAX, endpoint=True)))
        rel = f"small/img-{i:05d}.bin"
        with open(os.path.join(out, rel), "wb") as f:
            f.write(data)
        files[rel] = [len(data), sha256(data)]
    return {"count": count, "files": files}


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def list_files(root: str) -> list:
    found = []
    for d, _, names in os.walk(root):
        found += [os.path.relpath(os.path.join(d, n), root) for n in names]
    return sorted(found)


def cmd_generate(args) -> dict:
    out, scale = args.out_dir, args.scale
    whole = scale if args.whole_scale is None else args.whole_scale
    if not whole > 0:
        raise Failure(f"generate: --whole-scale {whole} must be positive")
    if not scale > 0 or h5_slice_start(h5_rows(scale)) + H5_SLICE_ROWS > h5_rows(scale):
        raise Failure(f"generate: --scale {scale} too small (the hdf5 slice needs >= 366 rows)")
    os.makedirs(out, exist_ok=True)
    if os.listdir(out):
        raise Failure(f"generate: {out} is not empty")
    t0 = time.perf_counter()
    man = {"scale": scale, "parquet": gen_parquet(out, scale), "safetensors": gen_safetensors(out, scale),
           "hdf5": gen_hdf5(out, scale), "tar": gen_shards(out, whole), "small": gen_small(out, whole)}
    man["files"] = [{"path": p, "size": os.path.getsize(os.path.join(out, p)),
                     "sha256": file_sha256(os.path.join(out, p))} for p in list_files(out)]
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1, sort_keys=True)
    sizes = {e["path"]: e["size"] for e in man["files"] if not e["path"].startswith("small/")}
    sizes["small/*"] = sum(e["size"] for e in man["files"] if e["path"].startswith("small/"))
    return {"out_dir": out, "scale": scale, "seconds": round(time.perf_counter() - t0, 3),
            "files": len(man["files"]), "total_bytes": sum(e["size"] for e in man["files"]), "sizes": sizes}


# pyarrow's first read of a Parquet file: its tail, to find the footer.
PQ_FOOTER_READ = 64 * 1024


def parquet_ranges(path: str) -> list:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(size - 8)
        tail = f.read(8)
    if tail[4:] != b"PAR1":
        raise Failure(f"needed: {path} has no parquet footer magic")
    meta_len = int.from_bytes(tail[:4], "little")
    ranges = [[max(0, size - max(PQ_FOOTER_READ, 8 + meta_len)), size]]
    md = pq.ParquetFile(path).metadata
    if PQ_COLUMN not in md.schema.names:
        raise Failure(f"needed: {path} has no column {PQ_COLUMN}")
    for g in range(md.num_row_groups):
        cc = md.row_group(g).column(md.schema.names.index(PQ_COLUMN))
        dict_off = cc.dictionary_page_offset
        start = dict_off if dict_off is not None and dict_off > 0 else cc.data_page_offset
        ranges.append([start, start + cc.total_compressed_size])
    return ranges


def safetensors_ranges(path: str) -> list:
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
    base = 8 + header_len
    ranges = [[0, base]]
    for name in ST_LOADED:
        begin, end = header[name]["data_offsets"]
        ranges.append([base + begin, base + end])
    return ranges


def hdf5_ranges(path: str) -> list:
    with h5py.File(path, "r") as f:
        ds = f[H5_DSET]
        chunks = [ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())]
        a, rows = h5_slice_start(ds.shape[0]), ds.chunks[0]
    # Metadata: everything before the first chunk, and every gap between chunks
    # (the file is written with libver="latest", whose chunk index, a fixed
    # array, has its data block between the first chunks).
    spans = sorted((c.byte_offset, c.byte_offset + c.size) for c in chunks)
    ranges = [[0, spans[0][0]]]
    ranges += [[end, start] for (_, end), (start, _) in zip(spans, spans[1:]) if start > end]
    for c in chunks:
        r0 = c.chunk_offset[0]
        if r0 < a + H5_SLICE_ROWS and a < r0 + rows:
            ranges.append([c.byte_offset, c.byte_offset + c.size])
    return ranges


def block_summary(name: str, path: str, ranges: list, block: int) -> dict:
    size = os.path.getsize(path)
    blocks = set()
    for start, end in ranges:
        if end > start:
            blocks.update(range(start // block, (end - 1) // block + 1))
    nbytes = sum(min(block, size - b * block) for b in blocks)
    return {"file": name, "size": size, "ranges": sorted(ranges), "range_bytes": sum(e - s for s, e in ranges),
            "blocks": len(blocks), "bytes": nbytes}


def cmd_needed(args) -> dict:
    if args.block_size <= 0:
        raise Failure("needed: --block-size must be positive")
    out = {"block_size": args.block_size}
    for key, name, fn in (("parquet", PQ_FILE, parquet_ranges), ("safetensors", ST_FILE, safetensors_ranges),
                          ("hdf5", H5_FILE, hdf5_ranges)):
        path = os.path.join(args.root, name)
        out[key] = block_summary(name, path, fn(path), args.block_size)
    return out


def expect(scenario: str, what: str, expected, got) -> None:
    if expected != got:
        raise Failure(f"{scenario}: {what} mismatch (expected {expected}, got {got})")


def expect_column(what: str, table: pa.Table, sha: str, total: float) -> None:
    col = table.column(PQ_COLUMN).to_numpy()
    expect("parquet", f"{what} sha256", sha, sha256(le_bytes(col, "<f8")))
    if not math.isclose(float(np.sum(col)), total, rel_tol=1e-9, abs_tol=1e-9):
        raise Failure(f"parquet: {what} sum mismatch (expected {total}, got {float(np.sum(col))})")


def run_parquet(root: str, man: dict) -> dict:
    m, path = man["parquet"], os.path.join(root, man["parquet"]["file"])
    t0 = time.perf_counter()
    first = pq.ParquetFile(path).read_row_group(0, columns=[PQ_COLUMN])
    t1 = time.perf_counter()
    whole = pq.read_table(path, columns=[PQ_COLUMN])
    t2 = time.perf_counter()
    expect_column("row group 0", first, m["rg0_sha256"], m["rg0_sum"])
    expect_column("column", whole, m["sha256"], m["sum"])
    # bytes_read approximation: decoded c3 values (row group 0 + whole column), not file I/O.
    return {"first_s": t1 - t0, "total_s": t2 - t0, "checked": 2, "bytes_read": first.nbytes + whole.nbytes}


def run_safetensors(root: str, man: dict) -> dict:
    m = man["safetensors"]
    t0 = time.perf_counter()
    with safe_open(os.path.join(root, m["file"]), framework="np") as f:
        a = f.get_tensor(m["tensors"][0])
        t1 = time.perf_counter()
        b = f.get_tensor(m["tensors"][1])
    t2 = time.perf_counter()
    for name, arr in zip(m["tensors"], (a, b)):
        expect("safetensors", f"{name} sha256", m["sha256"][name], sha256(le_bytes(arr, "<f4")))
    # bytes_read approximation: tensor payload bytes (the header read is not counted).
    return {"first_s": t1 - t0, "total_s": t2 - t0, "checked": 2, "bytes_read": a.nbytes + b.nbytes}


def run_hdf5(root: str, man: dict) -> dict:
    m = man["hdf5"]
    a, n = m["slice_start"], m["slice_rows"]
    t0 = time.perf_counter()
    with h5py.File(os.path.join(root, m["file"]), "r") as f:
        arr = f[m["dataset"]][a:a + n]
    t1 = time.perf_counter()
    expect("hdf5", f"slice [{a}:{a + n}] sha256", m["sha256"], sha256(le_bytes(arr, "<f4")))
    # bytes_read approximation: the slice's array bytes (metadata and whole-chunk reads not counted).
    return {"first_s": t1 - t0, "total_s": t1 - t0, "checked": 1, "bytes_read": arr.nbytes}


def run_pool(items: list, workers: int, work) -> list:
    """Deal items round-robin to `workers` threads; each runs work(its_items) -> list."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(work, items[w::workers]) for w in range(workers)]
        return [r for fut in futures for r in fut.result()]


class FirstClock:
    """Time from t0 until any worker first finishes an item (a racing second store differs by microseconds)."""

    def __init__(self, t0: float):
        self.t0, self.first = t0, None

    def mark(self) -> None:
        if self.first is None:
            self.first = time.perf_counter() - self.t0


def stream_shard(path: str, clock: FirstClock) -> list:
    """Read a shard WebDataset-style; return (key, npy_bytes, cls_text) per complete sample."""
    pending, done = {}, []
    with open(path, "rb") as fh, tarfile.open(fileobj=fh, mode="r|") as tf:
        for member in tf:
            key, _, ext = member.name.rpartition(".")
            pending.setdefault(key, {})[ext] = tf.extractfile(member).read()
            sample = pending[key]
            if "npy" in sample and "cls" in sample:
                np.load(io.BytesIO(sample["npy"]))  # decode as the training loop would
                clock.mark()
                done.append((key, sample["npy"], sample["cls"].decode("ascii")))
                del pending[key]
    if pending:
        raise Failure(f"tar: sample pairing mismatch (incomplete in {path}: {sorted(pending)[:3]})")
    return done


def run_tar(root: str, man: dict) -> dict:
    m = man["tar"]
    shards = [os.path.join(root, n) for n in m["names"]]
    random.Random(7).shuffle(shards)
    t0 = time.perf_counter()
    clock = FirstClock(t0)
    samples = run_pool(shards, TAR_WORKERS, lambda mine: [s for p in mine for s in stream_shard(p, clock)])
    t1 = time.perf_counter()
    keys = sorted(key for key, _, _ in samples)
    if keys != sorted(m["samples"]):
        raise Failure(f"tar: sample keys mismatch (expected {len(m['samples'])} unique, got {len(keys)}: "
                      f"{len(set(keys))} unique, {len(set(keys) - set(m['samples']))} unknown)")
    for key, npy, cls in samples:
        want = m["samples"][key]
        expect("tar", f"{key}.npy sha256", want["npy_sha256"], sha256(npy))
        expect("tar", f"{key}.cls", str(want["cls"]), cls)
    # bytes_read: whole shard sizes (streaming reads every byte).
    return {"first_s": clock.first, "total_s": t1 - t0, "checked": len(samples),
            "bytes_read": sum(os.path.getsize(p) for p in shards)}


def read_small(paths: list, clock: FirstClock) -> list:
    out = []
    for rel, path in paths:
        with open(path, "rb") as f:
            data = f.read()
        clock.mark()
        out.append((rel, data))
    return out


def run_small(root: str, man: dict) -> dict:
    m = man["small"]
    t0 = time.perf_counter()  # listing is part of the reader (a dataset scans its directory)
    rels = sorted(f"small/{n}" for n in os.listdir(os.path.join(root, "small")))
    random.Random(11).shuffle(rels)
    clock = FirstClock(t0)
    results = run_pool([(r, os.path.join(root, r)) for r in rels], SMALL_WORKERS,
                       lambda mine: read_small(mine, clock))
    t1 = time.perf_counter()
    if sorted(m["files"]) != sorted(rels):
        missing, extra = sorted(set(m["files"]) - set(rels)), sorted(set(rels) - set(m["files"]))
        raise Failure(f"small: file list mismatch (missing {missing[:3]}, unexpected {extra[:3]})")
    for rel, data in results:
        expect("small", f"{rel} size", m["files"][rel][0], len(data))
        expect("small", f"{rel} sha256", m["files"][rel][1], sha256(data))
    # bytes_read: whole file sizes.
    return {"first_s": clock.first, "total_s": t1 - t0, "checked": len(results),
            "bytes_read": sum(len(data) for _, data in results)}


RUNNERS = {"parquet": run_parquet, "safetensors": run_safetensors, "hdf5": run_hdf5, "tar": run_tar,
           "small": run_small}


def cmd_run(args) -> dict:
    with open(args.manifest) as f:
        man = json.load(f)
    return {"scenario": args.scenario, **RUNNERS[args.scenario](args.root, man)}


def cmd_check_venv(_args) -> dict:
    return {"python": sys.version.split()[0], "pyarrow": pa.__version__, "safetensors": safetensors.__version__,
            "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version, "numpy": np.__version__}


def parse_args(argv: list) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mlreaders.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write the data set and manifest.json")
    g.add_argument("out_dir")
    g.add_argument("--scale", type=float, default=1.0)
    g.add_argument("--whole-scale", type=float, default=None,
                   help="scale of the tar shards and small files (default: --scale)")
    g.set_defaults(fn=cmd_generate)
    n = sub.add_parser("needed", help="byte ranges and blocks each sparse reader needs")
    n.add_argument("root")
    n.add_argument("--block-size", type=int, required=True)
    n.set_defaults(fn=cmd_needed)
    r = sub.add_parser("run", help="run one reader, timed and checked")
    r.add_argument("scenario", choices=sorted(RUNNERS))
    r.add_argument("root")
    r.add_argument("--manifest", required=True)
    r.set_defaults(fn=cmd_run)
    sub.add_parser("check-venv", help="print library versions").set_defaults(fn=cmd_check_venv)
    return p.parse_args(argv)


def main(argv: list) -> int:
    args = parse_args(argv)
    try:
        result = args.fn(args)
    except Failure as e:
        print(f"mlreaders: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # any library/IO error: one clear line, not a traceback
        where = getattr(args, "scenario", args.cmd)
        print(f"mlreaders: {where}: {type(e).__name__}: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
