"""TFLM's own example models: every file TFLM runs imports, and compiles bit-exact where its
ops are supported; every other file fails with the one-line error naming what is missing.

The files stay in TFLM's repository (licence, size): point ``TINYML_TFLM_DIR`` at a checkout
of tensorflow/tflite-micro (or an export of it) and the test reads ``tensorflow/lite/micro/
models``, ``tensorflow/lite/micro/examples`` and ``third_party/xtensa/examples`` there; without
it the test is skipped with that message. The quirk fixtures that reproduce what these files
carry are built by tests/test_tflite_quirks.py and always run.

``integration_tests/seanet`` (int16 activations) is left out; the float32 LSTM and the SVDF
models' int16 input and softmax, which tinyml does not compile, are listed with the op they
fail on today.

Oracles: TFLM itself (in a child process, since a model TFLM cannot run may abort it) decides
"TFLM runs it"; the compiled C is compared with TFLM and tinyml's reference by ``verify``.
``python tests/test_tflm_corpus.py DIR`` prints the table of results.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TFLM_DIR = os.environ.get("TINYML_TFLM_DIR")
FOLDERS = ("tensorflow/lite/micro/models", "tensorflow/lite/micro/examples",
           "third_party/xtensa/examples")

#: file -> (TFLM runs it, tinyml's result): "bit-exact", "float" (imported, not compiled:
#: tinyml compiles int8 models only) or "unsupported OP" (the op the one-line error names).
#: At tflite-micro 90b983c2b3f1480642e040bbd2ddb37b998f3424. The ethos-u custom op of
#: person_detect_vela runs only on an Ethos-U NPU; TFLM's Python package has no kernel for it.
_MICRO = "tensorflow/lite/micro/"
EXPECTED = {
    _MICRO + "examples/dtln/dtln_noise_suppression.tflite": (True, "bit-exact"),
    _MICRO + "examples/hello_world/models/hello_world_float.tflite": (True, "float"),
    _MICRO + "examples/hello_world/models/hello_world_int8.tflite": (True, "bit-exact"),
    _MICRO + "examples/memory_footprint/models/simple_add_model.tflite": (True, "bit-exact"),
    _MICRO + "examples/micro_speech/models/audio_preprocessor_float.tflite":
        (True, "unsupported CUSTOM(SignalWindow)"),
    _MICRO + "examples/micro_speech/models/audio_preprocessor_int8.tflite":
        (True, "unsupported CUSTOM(SignalWindow)"),
    _MICRO + "examples/micro_speech/models/micro_speech_quantized.tflite": (True, "bit-exact"),
    # A float32 LSTM: refused at import (only the full-int8 LSTM is supported).
    _MICRO + "examples/mnist_lstm/trained_lstm.tflite":
        (True, "unsupported UNIDIRECTIONAL_SEQUENCE_LSTM"),
    _MICRO + "examples/mnist_lstm/trained_lstm_int8.tflite": (True, "bit-exact"),
    # Their SVDFs import and equal TFLM (tests/test_ops_svdf.py); the int16 input and
    # softmax around them do not compile.
    _MICRO + "models/keyword_scrambled.tflite": (True, "unsupported QUANTIZE"),
    _MICRO + "models/keyword_scrambled_8bit.tflite": (True, "unsupported QUANTIZE"),
    _MICRO + "models/person_detect.tflite": (True, "bit-exact"),
    _MICRO + "models/person_detect_vela.tflite": (False, "unsupported CUSTOM(ethos-u)"),
    "third_party/xtensa/examples/micro_speech_lstm/micro_speech_lstm.tflite":
        (True, "bit-exact"),
    "third_party/xtensa/examples/pytorch_to_tflite/mobilenet_v2_quantized_1x3x224x224.tflite":
        (True, "bit-exact"),
}

#: Random samples per model in verify (plus the two extremes); fewer for the big ones.
SAMPLES = {"third_party/xtensa/examples/pytorch_to_tflite/"
           "mobilenet_v2_quantized_1x3x224x224.tflite": 2}


def corpus(root: Path) -> list[str]:
    """The .tflite files of TFLM's models and examples, relative to the checkout."""
    return sorted(str(p.relative_to(root)) for folder in FOLDERS
                  for p in (root / folder).rglob("*.tflite"))


def tflm_runs(path: Path) -> bool:
    """Whether TFLM builds its interpreter for ``path`` and invokes it once (zero inputs)."""
    code = ("import sys; from tinyml.sim.tflm import TflmRunner; "
            "r = TflmRunner(sys.argv[1]); r._interpreter.invoke()")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", code, str(path)], env=env,
                          capture_output=True, timeout=600)
    return done.returncode == 0


def tinyml_result(path: Path, samples: int = 10) -> str:
    """"bit-exact", "float", "unsupported OP", "N mismatches" or "error: ..." (one line)."""
    from tinyml.errors import TinymlError, UnsupportedOpError
    from tinyml.frontends import load_model
    from tinyml.verify import verify

    try:
        graph = load_model(path)
        if not any(t.dtype == "int8" for t in graph.tensors.values()):
            return "float"
        report = verify(path, "host", samples=samples)
    except UnsupportedOpError as exc:
        message = str(exc)
        assert "\n" not in message and f"unsupported op {exc.op} in layer '" in message
        return f"unsupported {exc.op}"
    except TinymlError as exc:
        return f"error: {' '.join(str(exc).split())}"
    assert report.oracle == "reference+tflite-micro"
    if report.mismatched_outputs:
        return f"{report.mismatched_outputs} mismatches of {report.samples}"
    return "bit-exact"


@pytest.fixture(scope="module")
def root() -> Path:
    if not TFLM_DIR:
        pytest.skip("TINYML_TFLM_DIR is not set: point it at a tensorflow/tflite-micro "
                    "checkout to run TFLM's example models")
    path = Path(TFLM_DIR)
    if not (path / FOLDERS[0]).is_dir():
        pytest.skip(f"TINYML_TFLM_DIR={TFLM_DIR} has no {FOLDERS[0]}")
    return path


def test_every_file_is_classified(root):
    """A file TFLM adds to its examples needs a line in EXPECTED (run this file as a script
    for its result)."""
    assert sorted(set(corpus(root)) - set(EXPECTED)) == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tflm_model(root, name):
    path = root / name
    if not path.exists():
        pytest.skip(f"{name} is not in this checkout")
    runs, result = EXPECTED[name]
    assert tflm_runs(path) == runs
    assert tinyml_result(path, SAMPLES.get(name, 10)) == result


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else TFLM_DIR or ".")
    print("| file | TFLM runs it | tinyml |")
    print("|---|---|---|")
    for name in corpus(root):
        path = root / name
        runs = "yes" if tflm_runs(path) else "no"
        print(f"| {name} | {runs} | {tinyml_result(path, SAMPLES.get(name, 10))} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parents[1]))
    sys.exit(main(sys.argv[1:]))
