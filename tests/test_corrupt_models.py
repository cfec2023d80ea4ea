"""Corrupted and truncated model files give a clear one-line error: never a traceback, a crash
or a hang.

For each format (.tflite, .onnx, .keras, .h5, SavedModel) 200 corrupted copies of real models
are fed to ``tinyml inspect`` (half with ``--json``, half printing the table). Corruptions:
truncation at a random length, a few bit flips, many random bytes, a zeroed range, random
garbage behind the format's real header; for .keras archives half the cases corrupt one member
and re-zip it with valid CRCs, so the corruption gets past the zip checks into what Keras
parses; for SavedModels saved_model.pb is corrupted. A corrupted copy may still be a valid
model (a flipped bit in a weight): then inspect must succeed. What must never happen is a
traceback, an exit status other than 0 or 2, more than one line on stderr, output on stdout
next to an error, a signal, or a hang.

Harness: a CLI process per file would pay Python, numpy and (for the Keras formats) TensorFlow
start-up 1000 times, so a worker process (this file run as a script) imports tinyml once and
runs ``cli.main()`` in-process on one case after another, with fds 1 and 2 captured per case
(so C++ log lines count too); the Keras frontend's own converter process then also lives on
between cases. The test reads the worker's progress line by line with a per-case timeout; a
worker that dies (signal) or stalls is recorded as a crash or hang of the case it was on,
killed, and restarted at the next case. Slow formats run two workers on interleaved cases.
Cases are generated inside the worker from (seed, format, index), so nothing is written up
front and any case is reproducible: a failure prints the seed, the corruption and where the
corrupted file was kept. Two real runs of the ``tinyml`` console script per format (a clean
error and a successful load) check the same contract end to end.

The Keras formats (.keras, .h5, SavedModel) cost about half a second per case (each load goes
through TensorFlow), so the default run takes a sample of ``KERAS_SAMPLE`` cases of each (the
first cases of the same seeded sequence); the full count runs with the slow tests.

Environment: ``TINYML_FUZZ_SEED`` (default 20250601), ``TINYML_FUZZ_CASES`` (default 200 per
format), ``TINYML_FUZZ_TIMEOUT`` (seconds per case, default 400: above the Keras frontend's own
limits, so its timeout errors show up as clean errors).
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

SEED = int(os.environ.get("TINYML_FUZZ_SEED", "20250601"))
CASES = int(os.environ.get("TINYML_FUZZ_CASES", "200"))
#: Cases per Keras format in the default run (see the module docstring).
KERAS_SAMPLE = min(CASES, 60)
CASE_TIMEOUT_S = float(os.environ.get("TINYML_FUZZ_TIMEOUT", "400"))
KEEP_DIR = Path(tempfile.gettempdir()) / "tinyml-fuzz-failures"

FORMATS = ("tflite", "onnx", "keras", "h5", "savedmodel")
#: Bytes that make a file recognizable as its format, kept by the "garbage" corruption (ONNX and
#: SavedModel protobufs have no magic: their first field, the IR / schema version, stands in).
MAGIC_BYTES = {"tflite": 8, "onnx": 2, "keras": 4, "h5": 8, "savedmodel": 2, "member": 0}


# ----------------------------------------------------------------------------------------------
# Corruptions: each returns (new bytes, description). ``rng`` is the case's own generator.


def _truncate(rng, data: bytes):
    # Half the cuts land in the first 1 KiB, where headers and root tables live.
    end = int(rng.integers(0, min(len(data), 1024))) if rng.random() < 0.5 else \
        int(rng.integers(0, len(data)))
    return data[:end], f"truncated to {end} of {len(data)} bytes"


def _flip_few(rng, data: bytes):
    out = bytearray(data)
    spots = []
    for _ in range(int(rng.integers(1, 5))):
        pos, bit = int(rng.integers(0, len(out))), int(rng.integers(0, 8))
        out[pos] ^= 1 << bit
        spots.append(f"{pos}:{bit}")
    return bytes(out), f"bit flips at byte:bit {', '.join(spots)}"


def _flip_many(rng, data: bytes):
    out = bytearray(data)
    count = int(rng.integers(10, max(11, min(2000, len(out) // 20))))
    positions = rng.integers(0, len(out), count)
    out_arr = np.frombuffer(out, dtype=np.uint8).copy()
    out_arr[positions] = rng.integers(0, 256, count, dtype=np.uint8)
    return out_arr.tobytes(), f"{count} random bytes overwritten"


def _zero_range(rng, data: bytes):
    start = int(rng.integers(0, len(data)))
    length = int(rng.integers(1, max(2, min(len(data) - start, 8192) + 1)))
    out = bytearray(data)
    out[start:start + length] = bytes(len(out[start:start + length]))
    return bytes(out), f"zeroed bytes [{start}, {start + length})"


def _garbage(rng, data: bytes, fmt: str):
    keep = MAGIC_BYTES[fmt]
    length = int(rng.integers(0, 2 * len(data) + 1)) if rng.random() < 0.5 else \
        int(rng.integers(0, 4096))
    body = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    return data[:keep] + body, f"{keep} header bytes + {length} random bytes"


def _corrupt_member(data: bytes, rng):
    """A .keras archive whose member (config, weights) is corrupted and re-zipped with correct
    CRCs: past the zip layer's own checks, into what Keras parses."""
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    k = int(rng.integers(0, len(members)))
    body, what = corrupt(members[k][1], "member", rng)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for i, (info, content) in enumerate(members):
            archive.writestr(info, body if i == k else content)
    return out.getvalue(), f"member {members[k][0].filename}: {what}, re-zipped"


CORRUPTIONS = ("truncate", "flip_few", "flip_many", "zero_range", "garbage")


def corrupt(data: bytes, fmt: str, rng: np.random.Generator) -> tuple[bytes, str]:
    if fmt == "keras" and rng.random() < 0.5:
        return _corrupt_member(data, rng)
    kind = CORRUPTIONS[int(rng.integers(0, len(CORRUPTIONS)))]
    if kind == "garbage" or not data:
        return _garbage(rng, data, fmt)
    return {"truncate": _truncate, "flip_few": _flip_few, "flip_many": _flip_many,
            "zero_range": _zero_range}[kind](rng, data)


@dataclass
class Case:
    fmt: str
    index: int
    source: str
    description: str


def case_rng(seed: int, fmt: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, FORMATS.index(fmt), index])


def materialize(fmt: str, sources: list[str], seed: int, index: int, workdir: Path
                ) -> tuple[Case, Path]:
    """Write case ``index`` of ``fmt`` under ``workdir``; deterministic in (seed, fmt, index)."""
    rng = case_rng(seed, fmt, index)
    source = Path(sources[int(rng.integers(0, len(sources)))])
    workdir.mkdir(parents=True, exist_ok=True)
    if fmt == "savedmodel":
        data, what = corrupt((source / "saved_model.pb").read_bytes(), fmt, rng)
        target = workdir / f"case{index}"
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for item in source.iterdir():
            if item.name != "saved_model.pb":
                (target / item.name).symlink_to(item)
        (target / "saved_model.pb").write_bytes(data)
        what = f"saved_model.pb {what}"
    else:
        data, what = corrupt(source.read_bytes(), fmt, rng)
        target = workdir / f"case{index}{source.suffix}"
        target.write_bytes(data)
    return Case(fmt, index, str(source), what), target


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# The worker: ``python test_corrupt_models.py --worker JOB.json START``


def _run_captured(argv: list[str]) -> dict:
    """Run ``cli.main(argv)`` with fds 1 and 2 captured, like a separate process would be."""
    import traceback

    from tinyml import cli

    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        status, trace = None, ""
        try:
            status = cli.main(argv)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # what the console script would print as a traceback
            trace = traceback.format_exc()
            sys.stderr.write(trace)
            status = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        out.seek(0)
        err.seek(0)
        return {"status": status, "stdout": out.read().decode("utf-8", "replace"),
                "stderr": err.read().decode("utf-8", "replace"), "traceback": trace}


def _worker(job_file: str, start: int) -> None:
    """Run the job's cases from position ``start`` of its index list, reporting on fd 1."""
    job = json.loads(Path(job_file).read_text())
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # stray writes between cases must not garble the channel
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tinyml.cli  # noqa: F401

    channel.write(json.dumps({"ready": True}) + "\n")
    workdir = Path(job["workdir"])
    for index in job["indices"][start:]:
        case, path = materialize(job["fmt"], job["sources"], job["seed"], index, workdir)
        channel.write(json.dumps({"begin": index}) + "\n")
        started = time.monotonic()
        as_json = index % 4 < 2  # half the cases print the table: names reach rich too
        result = _run_captured(["inspect", str(path)] + (["--json"] if as_json else []))
        result.update(index=index, description=case.description, source=case.source,
                      path=str(path), json=as_json,
                      seconds=round(time.monotonic() - started, 3))
        if not check(result):
            _remove(path)
        channel.write(json.dumps(result) + "\n")


# ----------------------------------------------------------------------------------------------
# The contract


def check(result: dict) -> str:
    """Why ``result`` breaks the contract ("" when it keeps it)."""
    status, out, err = result["status"], result["stdout"], result["stderr"]
    if result.get("traceback") or "Traceback" in err:
        return "traceback"
    if status == 0:
        if not result.get("json", True):
            return "" if "│ total" in out else "exit 0 but no table on stdout"
        try:
            summary = json.loads(out)
        except ValueError:
            return "exit 0 but stdout is not JSON"
        if set(summary) != {"layers", "totals", "notes"} or \
                summary["totals"]["layers"] != len(summary["layers"]):
            return "exit 0 but the JSON is not an inspect summary"
        return ""
    if status != 2:
        return f"exit status {status}"
    lines = err.splitlines()
    if len(lines) != 1 or not lines[0].startswith("tinyml: error: "):
        return f"stderr is not one 'tinyml: error:' line: {err[:300]!r}"
    if result["path"] not in lines[0]:
        return "the error does not name the file"
    if out:
        return "an error, yet something was written to stdout"
    return ""


# ----------------------------------------------------------------------------------------------
# The driver


class _Worker:
    def __init__(self, job_file: Path, start: int):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
        env.pop("TINYML_DEBUG", None)  # it turns user errors into tracebacks on purpose
        self.log = tempfile.TemporaryFile()  # the worker's own stderr, for a worker bug
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(job_file),
             str(start)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log,
            env=env, text=True, bufsize=1)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)

    def read(self, timeout: float) -> dict | None:
        """The next message; None at EOF (the worker died); raises TimeoutError."""
        if not self.selector.select(timeout):
            raise TimeoutError
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None

    def stop(self) -> int | None:
        try:
            self.proc.wait(timeout=5)  # at EOF it is exiting: let it report its own status
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.selector.close()
        self.proc.stdout.close()
        return self.proc.wait()

    def log_tail(self) -> str:
        self.log.seek(0)
        text = self.log.read().decode("utf-8", "replace").strip()
        self.log.close()
        return " | ".join(text.splitlines()[-6:])


def run_fuzz(fmt: str, sources: list[Path], workdir: Path, count: int = CASES,
             seed: int = SEED, shards: int = 1) -> list[dict]:
    """Run cases 0..count-1 of ``fmt`` in ``shards`` parallel workers; one result per case, in
    order (failures carry "problem")."""
    from concurrent.futures import ThreadPoolExecutor

    parts = [list(range(k, count, shards)) for k in range(shards)]
    with ThreadPoolExecutor(shards) as pool:
        done = pool.map(lambda k: _run_shard(fmt, sources, workdir / f"shard{k}", seed,
                                             parts[k]), range(shards))
        results = [r for part in done for r in part]
    return sorted(results, key=lambda r: r["index"])


def _run_shard(fmt: str, sources: list[Path], workdir: Path, seed: int,
               indices: list[int]) -> list[dict]:
    workdir.mkdir(parents=True, exist_ok=True)
    job_file = workdir / "job.json"
    job_file.write_text(json.dumps({"fmt": fmt, "sources": [str(s) for s in sources],
                                    "seed": seed, "indices": indices, "workdir": str(workdir)}))
    position = {index: k for k, index in enumerate(indices)}
    results = []
    start = 0
    while start < len(indices):
        worker = _Worker(job_file, start)
        current, problem = None, "worker died"
        try:
            if worker.read(600) is None:
                raise RuntimeError(f"the {fmt} fuzz worker failed to start")
            while (message := worker.read(CASE_TIMEOUT_S)) is not None:
                if "begin" in message:
                    current = message["begin"]
                    continue
                problem_here = check(message)
                results.append(dict(message, problem=problem_here) if problem_here else message)
                start, current = position[message["index"]] + 1, None
        except TimeoutError:
            problem = f"no answer within {CASE_TIMEOUT_S:.0f} s (hang)"
        finally:
            status = worker.stop()
        log = worker.log_tail()
        if current is None:
            if start < len(indices):
                raise RuntimeError(f"the {fmt} fuzz worker stopped between cases: {problem} "
                                   f"(exit status {status}): {log}")
            break
        # The worker crashed or hung on case ``current``: write it again for the report.
        case, path = materialize(fmt, [str(s) for s in sources], seed, current, workdir)
        if problem == "worker died":
            problem = f"the process died (exit status {status}): {log}"
        results.append({"index": current, "status": None, "problem": problem, "stdout": "",
                        "stderr": "", "description": case.description, "source": case.source,
                        "path": str(path), "json": True})
        start = position[current] + 1
    return results


def report(fmt: str, results: list[dict], seconds: float, seed: int = SEED) -> str:
    failures = [r for r in results if r.get("problem")]
    loaded = sum(1 for r in results if r["status"] == 0 and not r.get("problem"))
    clean = sum(1 for r in results if r["status"] == 2 and not r.get("problem"))
    lines = [f"{fmt}: {len(results)} corrupted copies (seed {seed}): {loaded} loaded fine, "
             f"{clean} clean errors, {len(failures)} failures, {seconds:.1f} s"]
    if failures:
        KEEP_DIR.mkdir(parents=True, exist_ok=True)
    for f in failures:
        kept = KEEP_DIR / f"{fmt}-seed{seed}-case{f['index']}{Path(f['path']).suffix}"
        if Path(f["path"]).exists():
            _remove(kept)
            shutil.move(f["path"], kept)
        tail = (f.get("traceback") or f["stderr"]).strip().splitlines()[-3:]
        lines.append(f"  case {f['index']} ({f['description']} of {f['source']}): "
                     f"{f['problem']}; kept as {kept}; last stderr: {' | '.join(tail)}")
    return "\n".join(lines)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--worker":
    sys.path.insert(0, str(REPO))
    _worker(sys.argv[2], int(sys.argv[3]))
    sys.exit(0)


# ----------------------------------------------------------------------------------------------
# The tests

import pytest  # noqa: E402  (the worker above does not need pytest)

from conftest import FLOAT_TFLITE_MODELS, INT8_MODELS, MLPERF_DIR  # noqa: E402
from support.small_models import make_onnx_sources, zoo_models  # noqa: E402

TINYML = Path(sys.executable).with_name("tinyml")


def _originals_load(sources: list[Path]) -> None:
    """The uncorrupted models must inspect fine, or every corruption would 'pass' trivially."""
    from tinyml.frontends import load_model
    for source in sources:
        load_model(source)


def _end_to_end(fmt: str, sources: list[Path], results: list[dict], workdir: Path) -> None:
    """Re-run a clean error and a successful load through the installed console script, as a
    user would: same exit status, same contract."""
    picks = [r for r in results if r["status"] == 2 and not r.get("problem")][:1]
    picks += [r for r in results if r["status"] == 0 and not r.get("problem")][:1]
    assert picks
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TINYML_DEBUG", None)
    for r in picks:
        case, path = materialize(fmt, [str(s) for s in sources], SEED, r["index"],
                                 workdir / "e2e")
        args = [str(TINYML), "inspect", str(path)] + (["--json"] if r["json"] else [])
        done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
        result = {"status": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
                  "path": str(path), "json": r["json"]}
        assert not check(result), (case, check(result), done.stderr[-2000:])
        assert done.returncode == r["status"], (case, done.stderr)


def _fuzz(fmt: str, sources: list[Path], tmp_path: Path, shards: int = 1,
          count: int = CASES) -> None:
    _originals_load(sources)
    started = time.monotonic()
    results = run_fuzz(fmt, sources, tmp_path / fmt, count=count, shards=shards)
    text = report(fmt, results, time.monotonic() - started)
    print(text)
    assert [r["index"] for r in results] == list(range(count))
    assert not any(r.get("problem") for r in results), text
    # Some corruptions must be caught, or the harness is not corrupting anything.
    assert sum(r["status"] == 2 for r in results) >= count // 4, text
    _end_to_end(fmt, sources, results, tmp_path)


# ---- sources -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tflite_sources() -> list[Path]:
    mlperf = [MLPERF_DIR / f"{name}.tflite" for name in INT8_MODELS + FLOAT_TFLITE_MODELS]
    return [p for p in mlperf if p.exists()] + zoo_models()


def test_corrupt_tflite(tflite_sources, tmp_path):
    _fuzz("tflite", tflite_sources, tmp_path)


@pytest.fixture(scope="module")
def onnx_sources(tmp_path_factory) -> list[Path]:
    return make_onnx_sources(tmp_path_factory.mktemp("onnx_sources"))


def test_corrupt_onnx(onnx_sources, tmp_path):
    _fuzz("onnx", onnx_sources, tmp_path)


def _small_keras_model(keras):
    """Conv + batch norm + depthwise + pooling + dense: the layers MLPerf models use."""
    L = keras.layers
    x = keras.Input((12, 12, 3), batch_size=1, name="image")
    y = L.Conv2D(8, 3, padding="same", name="conv")(x)
    y = L.BatchNormalization(name="bn")(y)
    y = L.ReLU(name="relu")(y)
    y = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu", name="dw")(y)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    y = L.Dense(4, activation="softmax", name="head")(y)
    return keras.Model(x, y)


@pytest.fixture(scope="module")
def keras_dir(tmp_path_factory) -> Path:
    return make_keras_sources(tmp_path_factory.mktemp("keras_sources"))


def make_keras_sources(root: Path) -> Path:
    """A .keras (Keras 3), an .h5 (tf_keras, i.e. Keras 2) and a SavedModel of a small model."""
    import keras
    import tf_keras

    keras.utils.set_random_seed(0)
    model = _small_keras_model(keras)
    model.save(root / "small.keras")
    model.export(str(root / "small_savedmodel"), verbose=False)
    _small_keras_model(tf_keras).save(root / "small.h5")
    return root


KERAS_COUNTS = [pytest.param(KERAS_SAMPLE, id="sample"),
                pytest.param(CASES, id="all", marks=pytest.mark.slow)]


@pytest.mark.parametrize("count", KERAS_COUNTS)
def test_corrupt_keras(keras_dir, tmp_path, count):
    _fuzz("keras", [keras_dir / "small.keras"], tmp_path, shards=2, count=count)


@pytest.mark.parametrize("count", KERAS_COUNTS)
def test_corrupt_h5(keras_dir, tmp_path, count):
    sources = [keras_dir / "small.h5"]
    mlperf = MLPERF_DIR / "pretrainedResnet.h5"
    if mlperf.exists():
        sources.append(mlperf)
    _fuzz("h5", sources, tmp_path, shards=2, count=count)


@pytest.mark.parametrize("count", KERAS_COUNTS)
def test_corrupt_savedmodel(keras_dir, tmp_path, count):
    _fuzz("savedmodel", [keras_dir / "small_savedmodel"], tmp_path, shards=2, count=count)
