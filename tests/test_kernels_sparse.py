"""Sparse weight storage (tinyml/codegen/sparse.py, firmware/kernels/portable/sparse.c).

The format is checked byte for byte on hand-worked rows and round-tripped on random ones;
the kernels run on the host under AddressSanitizer and UndefinedBehaviorSanitizer (exact-size
copies of every array, so a read past a row's stream or the input fails) against the numpy
reference, which computes dense: FULLY_CONNECTED and CONV_2D (1x1 and generic, with padding,
stride, dilation) at sparsities from 30 % to 100 %, odd depths, rows that are all zero, gaps
of 15, 16 and more zeros, int8 and int4 values. Lowering picks the format only where it is
smaller than the dense filter.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from support.c_harness import Harness, bad_counts, graph_jobs, mismatches, reference_samples
from support.dsp_harness import DspHarness
from support.sparse_models import conv_layer, fc_layer, prune, sparsify
from tinyml.codegen import sparse
from tinyml.codegen.lowering import lower
from tinyml.errors import TinymlError

SPARSE_KERNELS = {"tinyml_fully_connected_sparse_s8", "tinyml_conv2d_1x1_sparse_s8",
                  "tinyml_conv2d_sparse_s8"}

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")


# ---- the format -------------------------------------------------------------------------------

def test_int4_rows_byte_for_byte():
    # Row 0: 3 at 2, -2 after a gap of 20 zeros (one filler covers 16 of them), 7 at 24.
    # Row 1: all zero. Row 2: -8 at 0, 1 at 16 (a gap of exactly 15).
    m = np.zeros((3, 30), np.int64)
    m[0, 2], m[0, 23], m[0, 24] = 3, -2, 7
    m[2, 0], m[2, 16] = -8, 1
    rows = sparse.encode(m, 4)
    assert rows.row_entries.tolist() == [4, 0, 2]
    # (2, 3) (15, 0) (4, -2) (0, 7) | (0, -8) (15, 1): code = v * 16 + s
    assert rows.stream.tolist() == [3 * 16 + 2, 15, -2 * 16 + 4, 7 * 16, -8 * 16, 16 + 15]
    assert rows.nbytes == 3 * 2 + 6


def test_int8_rows_byte_for_byte():
    m = np.zeros((2, 40), np.int64)
    m[0, 1], m[0, 3], m[0, 39] = -128, 127, 5       # gaps 1, 1, 35 (two fillers, then 3)
    m[1, 0] = 9
    rows = sparse.encode(m, 8)
    assert rows.row_entries.tolist() == [5, 1]
    # pairs [s0 | s1 << 4][v0][v1]: (1, -128) (1, 127) | (15, 0) (15, 0) | (3, 5) ; (0, 9)
    assert rows.stream.tolist() == [1 | 1 << 4, -128, 127, (15 | 15 << 4) - 256, 0, 0, 3, 5,
                                    0, 9]


@pytest.mark.parametrize("bits", [4, 8])
def test_random_rows_round_trip(bits):
    rng = np.random.default_rng(bits)
    limit = 1 << (bits - 1)
    for _ in range(300):
        shape = (int(rng.integers(1, 7)), int(rng.integers(1, 90)))
        keep = rng.random(shape) < rng.choice([0.0, 0.05, 0.3, 0.7, 1.0])
        m = rng.integers(-limit, limit, shape) * keep
        rows = sparse.encode(m, bits)
        np.testing.assert_array_equal(sparse.decode(rows, shape[1]), m)
        assert rows.row_entries.sum() >= np.count_nonzero(m)


def test_values_outside_the_width_are_refused():
    with pytest.raises(ValueError, match="outside int4"):
        sparse.encode(np.array([[8]]), 4)


def test_choice_is_bytes_only():
    rng = np.random.default_rng(3)
    for sparsity in (0.0, 0.2, 0.3, 0.35, 0.4, 0.5, 0.8):
        for dtype, bits in (("int8", 8), ("int4", 4)):
            limit = 1 << (bits - 1)
            m = prune(rng.integers(-limit, limit, (16, 64)), sparsity, rng)
            encoded = sparse.encode(m, bits)
            dense = m.size if bits == 8 else m.size // 2
            chosen = sparse.choose(m, dtype)
            assert (chosen is not None) == (encoded.nbytes < dense), (sparsity, dtype)
    # int8 at 1.5 B per non-zero plus 2 B per row: dense below a third zeros, sparse at half.
    m = prune(rng.integers(-128, 128, (16, 64)), 0.3, rng)
    assert sparse.choose(m, "int8") is None
    assert sparse.choose(prune(m, 0.5, rng), "int8") is not None


def test_lowering_keeps_dense_filters_dense():
    graph, _ = fc_layer(0, 64, 8)
    (call,) = lower(graph)
    assert call.function == "tinyml_fully_connected_s8" and call.weight_format == "dense int8"
    graph, _ = sparsify(fc_layer(0, 64, 8)[0], 0.8)
    (call,) = lower(graph)
    assert call.function == "tinyml_fully_connected_sparse_s8"
    assert call.weight_format == "sparse8"
    dense = 64 * 8
    stored = sum(a.values.nbytes for a in call.arrays if a.name.endswith(("_stream",
                                                                          "_row_entries")))
    assert stored < 0.5 * dense


def test_per_tensor_weights_with_a_zero_point_stay_dense():
    """With a filter zero point, q = 0 is not a zero weight: no run-length rows."""
    graph, _ = fc_layer(2, 40, 6, per_channel=False)
    w = graph.tensors[graph.ops[0].inputs[1]]
    w.data = prune(np.asarray(w.data), 0.9, np.random.default_rng(0))
    w.quant.zero_point = [3]
    (call,) = lower(graph)
    assert call.function == "tinyml_fully_connected_s8"


def test_int4_weights_that_do_not_shrink_stay_dense_int4():
    graph, _ = sparsify(fc_layer(3, 32, 4)[0], 0.0, int4=True)
    call, = lower(graph)
    assert call.function == "tinyml_fully_connected_s4" and call.weight_format == "dense int4"


# ---- the kernels against the reference ------------------------------------------------------

@pytest.fixture(scope="module", params=["portable", "cortex_m"])
def harness(request):
    """The portable kernels, then the same with cortex_m/sparse_rows.c (the DSP output
    stage; its ACLE intrinsics emulated in C, tests/support/dsp_harness.py)."""
    with tempfile.TemporaryDirectory(prefix="tinyml-sparse-") as tmp:
        if request.param == "portable":
            yield Harness(Path(tmp))
        else:
            yield DspHarness(Path(tmp), ("sparse_rows.c",))


def _stores_int4(graph) -> bool:
    """Whether every int4 filter of ``graph`` is stored as sparse rows (one that sparse
    storage does not shrink runs the dense int4 kernels: tests/test_kernels_int4.py)."""
    for op in graph.ops:
        w = graph.tensors[op.inputs[1]]
        if w.dtype == "int4" and sparse.choose(
                np.asarray(w.data).reshape(w.shape[0], -1), "int4") is None:
            return False
    return True


def _run(harness, cases, samples: int = 2) -> tuple[dict, list]:
    """cases: (compiled graph, int8 twin, feeds). Runs every call of the compiled graph on
    the twin's reference values (int4 layers too small to shrink are left out)."""
    jobs, expected = [], []
    cases = [case for case in cases if _stores_int4(case[0])]
    assert len(cases) >= 12
    for compiled, twin, feeds in cases:
        rng = np.random.default_rng(len(jobs) + 5)
        inputs = [feeds] + [[rng.integers(-128, 128, f.shape).astype(np.int8) for f in feeds]
                            for _ in range(samples - 1)]
        calls = lower(compiled)
        for s, values in enumerate(reference_samples(twin, inputs)):
            batch = graph_jobs(compiled, calls, values, f"{compiled.name}#{s}")
            jobs += batch
            expected += [{name: values[name] for name in job.outputs} for job in batch]
    return mismatches(jobs, harness.run(jobs), expected), jobs


def _with_empty_rows(graph, rows: list[int]):
    w = graph.tensors[graph.ops[0].inputs[1]]
    data = np.asarray(w.data).copy()
    data[rows] = 0
    w.data = data
    return graph


@needs_cc
@pytest.mark.parametrize("int4", [False, True], ids=["int8", "int4"])
def test_sparse_fully_connected_matches_reference(harness, int4):
    rng = np.random.default_rng(11 + int4)
    depths = [1, 2, 3, 15, 16, 17, 31, 33, 64, 100, 257]
    cases = []
    for i in range(30):
        depth = depths[i] if i < len(depths) else int(rng.integers(1, 300))
        units = int(rng.integers(1, 12))
        graph, feeds = fc_layer(i, depth, units, int(rng.choice([1, 1, 2, 3])))
        sparsity = float(rng.choice([0.3, 0.5, 0.8, 0.9, 0.97, 1.0]))
        compiled, twin = sparsify(graph, sparsity, seed=i, int4=int4)
        if i % 4 == 0:  # some rows all zero
            empty = list(range(0, units, 2))
            compiled, twin = (_with_empty_rows(g, empty) for g in (compiled, twin)) \
                if compiled is not twin else (_with_empty_rows(compiled, empty),) * 2
        cases.append((compiled, twin, feeds))
    counts, jobs = _run(harness, cases)
    functions = {job.call.function for job in jobs}
    assert "tinyml_fully_connected_sparse_s8" in functions
    sparse_jobs = [j for j in jobs if j.call.function in SPARSE_KERNELS]
    assert len(sparse_jobs) >= len(jobs) * 2 // 3
    assert {j.call.params["value_bits"] for j in sparse_jobs} == {4 if int4 else 8}
    entries = np.concatenate([j.call.params["row_entries"].values for j in sparse_jobs])
    assert (entries == 0).any() and (entries % 2 == 1).any() and (entries >= 16).any()
    assert bad_counts(counts) == {}


@needs_cc
@pytest.mark.parametrize("int4", [False, True], ids=["int8", "int4"])
def test_sparse_convolutions_match_reference(harness, int4):
    rng = np.random.default_rng(21 + int4)
    cases = []
    for i in range(24):
        pointwise = i % 2 == 0
        cin = int(rng.choice([1, 3, 8, 17, 32]))
        cout = int(rng.integers(1, 9))
        hw = (int(rng.integers(1, 8)), int(rng.integers(1, 8)))
        if pointwise:
            kernel, dilation, padding = (1, 1), (1, 1), (0, 0, 0, 0)
        else:
            kernel = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
            dilation = (int(rng.choice([1, 2])), int(rng.choice([1, 2])))
            padding = tuple(int(p) for p in rng.integers(0, 3, 4))
            span = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
            hw = (max(hw[0], span[0]), max(hw[1], span[1]))
        stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        graph, feeds = conv_layer(i, hw, cin, cout, kernel, stride, dilation, padding,
                                  int(rng.choice([1, 2])))
        sparsity = float(rng.choice([0.5, 0.8, 0.9, 1.0]))
        compiled, twin = sparsify(graph, sparsity, seed=i, int4=int4)
        cases.append((compiled, twin, feeds))
    counts, jobs = _run(harness, cases)
    functions = {job.call.function for job in jobs}
    assert {"tinyml_conv2d_1x1_sparse_s8", "tinyml_conv2d_sparse_s8"} <= functions
    padded = [j for j in jobs if j.call.function == "tinyml_conv2d_sparse_s8"
              and (j.call.params["pad_top"] or j.call.params["pad_left"])]
    assert padded
    for job in jobs:
        if job.call.function == "tinyml_conv2d_sparse_s8":
            p = job.call.params
            assert job.call.scratch_bytes == p["filter_h"] * p["filter_w"] * p["input_c"]
    assert bad_counts(counts) == {}
