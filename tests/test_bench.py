"""The benchmark runs end to end and prints every figure; its numbers are not asserted."""

import pytest

from simrec.bench import run_benchmark


def test_benchmark_prints_each_figure_and_the_ratio_line(tmp_path):
    lines = []
    figures = run_benchmark(
        n_images=4,
        batch_size=2,
        n_items=300,
        memory_items=2000,
        repeats=1,
        json_path=tmp_path / "b.json",
        print_fn=lines.append,
    )
    names = [line.split()[0] for line in lines]
    for name in (
        "model_only_img_per_s",
        "pipeline_img_per_s",
        "naive_img_per_s",
        "knn_query_ms_simrec",
        "knn_query_ms_sklearn",
        "knn_query_ms_sklearn_normalized",
        "knn_all_items_s_simrec",
        "knn_all_items_s_sklearn",
        "knn_all_items_s_sklearn_normalized",
        "all_items_peak_mb",
        "decode_1_worker_img_per_s",
        "decode_all_cores_img_per_s",
    ):
        assert name in names
    assert lines[-1].startswith("ratio pipeline/model_only=") and "pipeline/naive=" in lines[-1]
    assert "decode_parallel_efficiency=" in lines[-1] and "pipeline/min(model_only,decode)=" in lines[-1]
    assert any("Keras" in line and "tensorflow" in line for line in lines[:2])  # the backend is named
    assert "colour_overhead=" in lines[-1] and "colour_signature_ms" in names
    assert "knn_single_speedup=" in lines[-1] and "knn_single_speedup_vs_normalized=" in lines[-1]
    assert "knn_all_items_speedup=" in lines[-1] and "knn_all_items_speedup_vs_normalized=" in lines[-1]
    assert figures["knn_identical_neighbors"] == 1.0
    assert (tmp_path / "b.json").is_file()
    # the runtime is shown, and both runtime ratios come from the same run
    assert any(line.startswith("precision float32, runtime openvino (LATENCY, f32,") for line in lines)
    for name in ("keras_model_only_img_per_s", "openvino_model_only_img_per_s", "int8_model_only_img_per_s"):
        assert name in names
    assert "openvino/keras=" in lines[-1] and "int8/float32=" in lines[-1]


def test_backbone_table_has_a_runtime_column():
    from simrec.bench import run_model_benchmark

    lines = []
    results = run_model_benchmark(["mobilenet-0.25"], n_images=2, batch_size=2, repeats=1, print_fn=lines.append)
    assert "| runtime |" in lines[1] and "| openvino/keras |" in lines[1]
    assert (
        results["mobilenet-0.25"]["runtime"] == "openvino" and "keras_model_only_img_per_s" in results["mobilenet-0.25"]
    )
    assert lines[3].split("|")[5].strip() == "openvino"


def test_all_items_search_memory_stays_bounded():
    """20,000 items: scratch is capped near 64 MB, far below the 1.6 GB N x N matrix."""
    from simrec.bench import _memory_figures

    peak_mb = _memory_figures(20_000, dim=8)["all_items_peak_mb"]
    assert peak_mb < 64 * 1.25 + 20_000 * 5 * 12 / 1024**2


def test_the_cpu_is_named_with_its_vector_instructions():
    """Two CPUs sold under one name ("AMD EPYC") differ in AVX-512: every figure names which."""
    from pathlib import Path

    from simrec.bench import cpu_name

    info = Path("/proc/cpuinfo")
    if not info.is_file():
        pytest.skip("no /proc/cpuinfo")
    flags = next(line for line in info.read_text().splitlines() if line.startswith("flags")).split()
    name = cpu_name()
    assert "family" in name and ("AVX2" in name) == ("avx2" in flags)
    assert ("AVX-512" in name) == ("avx512f" in flags) and ("AMX" in name) == ("amx_tile" in flags)
