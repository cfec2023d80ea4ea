"""A compiled trainable model as a device: a long-lived process you can teach and query.

``open_device(project_dir, runner="host"|"qemu")`` starts the project's firmware (compiled by
``tinyml compile MODEL --trainable last:K [--max-classes M]``, or :func:`compile_trainable`)
with the learning harness ``firmware/harness/learn_harness.c``: natively on the host (a C
build of the project, talking over the process's stdin/stdout), or in QEMU for an emulated
Cortex-M target (the same harness built into the project's firmware, talking over two named
pipes the firmware opens through Arm semihosting). The process lives until :meth:`close`, so
a stream of thousands of steps costs one build and one launch.

Protocol (binary, little-endian; every reply starts with an int32 status):

====================================  =======================================================
host sends                            device replies
====================================  =======================================================
``'H'``                               0, u32 version, u32 input bytes, u32 parameters, u32
                                      classes
``'P'`` input                         status, i32 argmax, float32 probabilities[classes]
``'L'`` i32 label, f32 lr, input      status of tinyml_learn (0 applied, 1 rejected by the
                                      NaN/Inf guard, <0 error), i32 argmax before the step
``'G'``                               status, float32 params[parameters]
``'S'`` float32 params[parameters]    status of tinyml_set_params (0, 1 non-finite, <0 size)
``'Q'``                               0; the process ends
====================================  =======================================================

"input" is the model input's raw bytes (int8 codes for a quantized input); :class:`LearningDevice`
quantizes float samples with the input's scale and zero point, as ``tinyml run`` does.
Parameters are float32: for each trainable layer its weights [out][in] row-major, then its
bias [out] (``learn.json`` in the project lists the layers).
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import DTYPES
from tinyml.learn.codegen import PROTOCOL_VERSION
from tinyml.paths import FIRMWARE_DIR
from tinyml.reference.fixedpoint import tflite_round

HARNESS = FIRMWARE_DIR / "harness" / "learn_harness.c"
STATUS_APPLIED, STATUS_REJECTED = 0, 1
_STATUS_MEANING = {-1: "label outside the head's classes", -2: "no forward pass to learn from",
                   -100: "unknown command"}


def compile_trainable(model, target: str, output_dir, *, trainable: str = "last:1",
                      max_classes: int | None = None, **options):
    """``tinyml compile MODEL --target T --trainable ... --max-classes ...`` from Python; the
    :class:`tinyml.compiler.Compilation` (``.report()["train_ram_bytes"]``, ...)."""
    from tinyml.compiler import compile_model
    return compile_model(model, target, output_dir, trainable=trainable,
                         max_classes=max_classes, **options)


def read_metadata(project_dir: str | Path) -> dict:
    """learn.json of a trainable project, refused when written for another protocol."""
    path = Path(project_dir) / "learn.json"
    if not path.exists():
        raise TinymlError(f"{project_dir} is not a trainable project (no learn.json): compile "
                          f"it with --trainable last:K")
    try:
        meta = json.loads(path.read_text())
    except ValueError as exc:
        raise TinymlError(f"{path}: not valid JSON ({exc})") from None
    if meta.get("protocol") != PROTOCOL_VERSION:
        raise TinymlError(f"{path}: device protocol {meta.get('protocol')}, this tinyml speaks "
                          f"protocol {PROTOCOL_VERSION}; recompile the project with --trainable")
    return meta


# ---- builds -----------------------------------------------------------------------------------

def _build_key(command: list[str], inputs: list[Path]) -> str:
    """What the binary is made of: the compile command and the bytes of every source and
    header it reads. Equal keys mean the build would produce the same binary."""
    digest = hashlib.sha256("\0".join(command).encode())
    for path in inputs:
        digest.update(f"\0{path.name}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build_host(project_dir: str | Path, *, sanitize: bool = False) -> Path:
    """The project and the learning harness, compiled natively (-std=c99 -Wall -Wextra
    -Werror; ``sanitize``: AddressSanitizer and UndefinedBehaviorSanitizer).

    Cached: the binary's name carries a hash of the command and of every source and header,
    so reopening an unchanged project (a fleet opens its device once per message) skips the
    compiler. Each build writes a private temporary file and renames it into place, so
    processes opening the same project at once never run a half-written binary."""
    from tinyml.sim.host import SANITIZE_FLAGS, STRICT_FLAGS

    project_dir = Path(project_dir)
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise TinymlError("no host C compiler (cc, gcc or clang) found on PATH")
    out = project_dir / "build" / "learn-host"
    out.mkdir(parents=True, exist_ok=True)
    sources = [project_dir / "model.c", project_dir / "weights.c", project_dir / "learn.c",
               *sorted((project_dir / "kernels").glob("*.c")), HARNESS]
    headers = [*sorted(project_dir.glob("*.h")), *sorted((project_dir / "kernels").glob("*.h"))]
    flags = STRICT_FLAGS + (["-O1"] + SANITIZE_FLAGS if sanitize else ["-O2"])
    command = [cc, *flags, f"-I{project_dir}", f"-I{project_dir / 'kernels'}",
               *map(str, sources)]
    key = _build_key(command, sources + headers)
    binary = out / f"{'learn_device_san' if sanitize else 'learn_device'}-{key}"
    if binary.exists():
        return binary
    handle, partial = tempfile.mkstemp(prefix=f".{binary.name}.", suffix=".tmp", dir=out)
    os.close(handle)
    partial = Path(partial)
    try:
        result = subprocess.run([*command, "-o", str(partial), "-lm"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines() or [f"exit {result.returncode}"]
            raise TinymlError(f"host build of the learning device failed: {lines[0]}")
        os.chmod(partial, 0o755)
        os.replace(partial, binary)
    finally:
        partial.unlink(missing_ok=True)
    return binary


def build_firmware(project_dir: str | Path, target) -> Path:
    """The learning harness linked into the project's firmware (its own Makefile)."""
    from tinyml import firmware

    firmware.make(project_dir, target, f"APP={HARNESS}", "ELF=build/learn/learn.elf",
                  "BUILD=build/learn")
    return Path(project_dir) / "build" / "learn" / "learn.elf"


# ---- transport --------------------------------------------------------------------------------

class _Channel:
    """Bytes to and from the device process, with a deadline and a check that it still runs."""

    def __init__(self, process: subprocess.Popen, write_fd: int, read_fd: int,
                 timeout: float, log: Path | None):
        self.process, self.write_fd, self.read_fd = process, write_fd, read_fd
        self.timeout, self.log = timeout, log

    def _died(self) -> TinymlError:
        said = ""
        if self.log is not None and self.log.exists():
            lines = self.log.read_text(errors="replace").strip().splitlines()
            said = f" ({lines[-1]})" if lines else ""
        return TinymlError(f"the learning device exited with status "
                           f"{self.process.returncode}{said}")

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.write_fd, view)
            except BrokenPipeError:
                self.process.wait(timeout=5)
                raise self._died() from None
            view = view[written:]

    def receive(self, size: int) -> bytes:
        chunks, got = [], 0
        deadline = time.monotonic() + self.timeout
        while got < size:
            ready, _, _ = select.select([self.read_fd], [], [], 0.2)
            if ready:
                chunk = os.read(self.read_fd, size - got)
                if not chunk:
                    self.process.wait(timeout=5)
                    raise self._died()
                chunks.append(chunk)
                got += len(chunk)
            elif self.process.poll() is not None:
                raise self._died()
            elif time.monotonic() > deadline:
                raise TinymlError(f"the learning device did not answer within "
                                  f"{self.timeout:.0f} s")
        return b"".join(chunks)


@dataclass
class StepResult:
    predicted: int     # the device's prediction before the step (prequential evaluation)
    applied: bool      # False: the NaN/Inf guard rejected the step, nothing changed


class LearningDevice:
    """A running trainable firmware. Use as a context manager, or call :meth:`close`."""

    def __init__(self, project_dir: str | Path, runner: str = "host", *,
                 sanitize: bool = False, timeout: float = 120.0):
        if runner not in ("host", "qemu"):
            raise TinymlError(f"runner '{runner}': expected host or qemu")
        self.project_dir = Path(project_dir)
        self.meta = read_metadata(self.project_dir)
        self.runner = runner
        spec = self.meta["input"]
        self.input_shape = tuple(spec["shape"])
        self.input_dtype = np.dtype(DTYPES[spec["dtype"]])
        self.num_classes = int(self.meta["num_classes"])
        self._tmp = None
        self._fds: list[int] = []
        try:  # whatever fails half-way, the pipes, the process and the temp folder go
            if runner == "host":
                self._start_host(sanitize, timeout)
            else:
                self._start_qemu(timeout)
            status, version, input_bytes, params, classes = struct.unpack(
                "<iIIII", self._ask(b"H", 20))
        except BaseException:
            self.close()
            raise
        expected = (PROTOCOL_VERSION, self.input_dtype.itemsize * int(np.prod(self.input_shape)),
                    self.meta["num_params"], self.num_classes)
        if status != 0 or (version, input_bytes, params, classes) != expected:
            self.close()
            raise TinymlError(f"the learning device of {self.project_dir} does not match its "
                              f"learn.json (version, input bytes, parameters, classes: "
                              f"{(version, input_bytes, params, classes)} != {expected})")
        self._params = int(params)

    # ---- start-up ---------------------------------------------------------------------------

    def _start_host(self, sanitize: bool, timeout: float) -> None:
        binary = build_host(self.project_dir, sanitize=sanitize)
        self._tmp = tempfile.TemporaryDirectory(prefix="tinyml-learn-")
        log = Path(self._tmp.name) / "stderr.txt"
        with open(log, "wb") as err:
            self.process = subprocess.Popen([str(binary)], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=err)
        self.channel = _Channel(self.process, self.process.stdin.fileno(),
                                self.process.stdout.fileno(), timeout, log)

    def _start_qemu(self, timeout: float) -> None:
        from tinyml.sim import qemu
        from tinyml.targets import load_target

        target = load_target(self.meta["target"])
        if not target.is_emulated:
            raise TinymlError(f"target '{target.name}' is not emulated: the learning device "
                              f"runs on the host or an emulated Cortex-M target")
        if not qemu.available():
            raise TinymlError(f"{qemu.QEMU} not found: install qemu-system-arm")
        elf = build_firmware(self.project_dir, target)
        self._tmp = tempfile.TemporaryDirectory(prefix="tinyml-learn-qemu-")
        folder = Path(self._tmp.name)
        for name in ("learn.in", "learn.out"):
            os.mkfifo(folder / name)
        # Read-write opens never block and keep each pipe open from both ends for as long as
        # the host wants, whenever the firmware opens it; the channel's deadline and its check
        # that QEMU still runs replace end-of-file.
        write_fd = os.open(folder / "learn.in", os.O_RDWR)
        read_fd = os.open(folder / "learn.out", os.O_RDWR)
        self._fds = [write_fd, read_fd]
        log = folder / "qemu.txt"
        with open(log, "wb") as out:
            self.process = subprocess.Popen(qemu.command(target.qemu_machine, elf.resolve()),
                                            cwd=folder, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT)
        self.channel = _Channel(self.process, write_fd, read_fd, timeout, log)

    # ---- commands ---------------------------------------------------------------------------

    def _ask(self, request: bytes, reply_bytes: int) -> bytes:
        self.channel.send(request)
        return self.channel.receive(reply_bytes)

    def encode_input(self, x) -> bytes:
        """One sample as the device's input bytes: float values are quantized with the
        input's scale and zero point; integer values are taken as codes."""
        x = np.asarray(x)
        if x.size != int(np.prod(self.input_shape)):
            raise TinymlError(f"sample of shape {x.shape} ({x.size} values), the model's input "
                              f"is {list(self.input_shape)}")
        if x.dtype.kind == "f" and self.input_dtype.kind in "iu":
            spec = self.meta["input"]
            if not np.all(np.isfinite(x)):
                raise TinymlError("sample holds NaN or infinite values: it cannot be quantized")
            info = np.iinfo(self.input_dtype)
            q = tflite_round(x.astype(np.float32) / np.float32(spec["scale"]))
            x = np.clip(q.astype(np.int64) + int(spec["zero_point"]), info.min, info.max)
        return np.ascontiguousarray(x.astype(self.input_dtype)).tobytes()

    def params_size(self) -> int:
        """Number of float32 parameters."""
        return self._params

    def get_params(self) -> np.ndarray:
        reply = self._ask(b"G", 4 + 4 * self._params)
        self._check(struct.unpack_from("<i", reply)[0], "get_params")
        return np.frombuffer(reply, "<f4", offset=4).astype(np.float32)

    def set_params(self, params) -> None:
        """Replace the parameters; a TinymlError if the size differs or the device rejects
        them (any NaN or infinity: then nothing changed)."""
        values = np.asarray(params, dtype="<f4").reshape(-1)
        if values.size != self._params:
            raise TinymlError(f"set_params: {values.size} values, the device has "
                              f"{self._params} parameters")
        status = struct.unpack("<i", self._ask(b"S" + values.tobytes(), 4))[0]
        if status == STATUS_REJECTED:
            raise TinymlError("set_params: the device rejected non-finite parameters")
        self._check(status, "set_params")

    def step(self, x, label: int, lr: float) -> StepResult:
        """Predict ``x``, then one SGD step towards ``label``."""
        request = b"L" + struct.pack("<if", int(label), float(lr)) + self.encode_input(x)
        status, predicted = struct.unpack("<ii", self._ask(request, 8))
        if status not in (STATUS_APPLIED, STATUS_REJECTED):
            self._check(status, f"learn(label={label})")
        return StepResult(int(predicted), status == STATUS_APPLIED)

    def learn(self, x, label: int, lr: float) -> bool:
        """One step; False when the NaN/Inf guard rejected it (parameters unchanged)."""
        return self.step(x, label, lr).applied

    def probabilities(self, x) -> np.ndarray:
        reply = self._ask(b"P" + self.encode_input(x), 8 + 4 * self.num_classes)
        self._check(struct.unpack_from("<i", reply)[0], "predict")
        return np.frombuffer(reply, "<f4", offset=8).astype(np.float32)

    def predict(self, x) -> int:
        """The class with the highest probability."""
        reply = self._ask(b"P" + self.encode_input(x), 8 + 4 * self.num_classes)
        status, best = struct.unpack_from("<ii", reply)
        self._check(status, "predict")
        return int(best)

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise TinymlError(f"{what}: the device answered status {status} "
                              f"({_STATUS_MEANING.get(status, 'tinyml_invoke failed')})")

    # ---- life cycle -------------------------------------------------------------------------

    def close(self) -> None:
        process = getattr(self, "process", None)
        if process is not None and process.poll() is None:
            try:
                self.channel.send(b"Q")
                self.channel.receive(4)
                process.wait(timeout=10)
            except (TinymlError, OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        if process is not None and process.stdin is not None:
            process.stdin.close()
            process.stdout.close()
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "LearningDevice":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_device(project_dir: str | Path, runner: str = "host", **options) -> LearningDevice:
    """Start the trainable firmware of ``project_dir``: ``runner`` "host" (native build) or
    "qemu" (the project's emulated Cortex-M target). Options: ``sanitize`` (host: ASan and
    UBSan), ``timeout`` (seconds per reply)."""
    return LearningDevice(project_dir, runner, **options)
