"""Thread and process decoding give the same pixels, in order, with the same failures."""

from __future__ import annotations

import numpy as np
import pytest
from photos import write_image

from simrec.pipeline.decode import WORKER_DIED, choose_decoder, decoded_batches


@pytest.fixture
def mixed(tmp_path):
    """Good photos in several formats and sizes, with bad files among them."""
    paths = []
    for i in range(11):
        suffix = (".jpg", ".png", ".webp")[i % 3]
        paths.append(write_image(tmp_path / f"photo_{i}{suffix}", (20 * i, 200 - 15 * i, 90), size=(30 + 7 * i, 40)))
        if i == 3:
            (tmp_path / "empty.jpg").write_bytes(b"")
            paths.append(tmp_path / "empty.jpg")
        if i == 7:
            (tmp_path / "text.png").write_text("not a photo")
            paths.append(tmp_path / "text.png")
    paths.append(tmp_path / "missing.jpg")
    return [str(p) for p in paths]


def _collect(batches):
    indices, pixels, failures = [], [], []
    for batch_indices, batch_pixels, _, batch_failures in batches:
        indices.extend(batch_indices.tolist())
        pixels.append(batch_pixels)
        failures.extend(batch_failures)
    return indices, np.concatenate(pixels), failures


def test_processes_give_byte_identical_pixels_in_order_with_the_same_failures(mixed):
    threads = _collect(decoded_batches(mixed, 48, 4, decoder="threads", n_workers=2))
    processes = _collect(decoded_batches(mixed, 48, 4, decoder="processes", n_workers=2))
    assert processes[0] == threads[0] == sorted(threads[0])
    assert processes[1].dtype == np.uint8 and processes[1].tobytes() == threads[1].tobytes()
    assert processes[2] == threads[2]

    assert [reason.split()[0] for _, reason, _ in threads[2]] == ["file", "not", "file"]
    assert len(threads[0]) + len(threads[2]) == len(mixed)


def test_a_decoding_process_that_dies_is_reported_and_the_run_goes_on(mixed, monkeypatch):
    monkeypatch.setenv("SIMREC_CRASH_AT", "decode:photo_4.png")  # that worker kills itself, as kill -9 would
    indices, pixels, failures = _collect(decoded_batches(mixed, 48, 4, decoder="processes", n_workers=2))
    died = [path for path, reason, _ in failures if reason == WORKER_DIED]
    assert any(path.endswith("photo_4.png") for path in died)
    assert len(died) <= 4  # only the batch it was in
    assert len(indices) + len(failures) == len(mixed) and len(pixels) == len(indices)
    reference = _collect(decoded_batches(mixed, 48, 4, decoder="threads", n_workers=1))
    kept = [reference[0].index(i) for i in indices]
    assert pixels.tobytes() == reference[1][kept].tobytes()


def test_auto_keeps_threads_on_two_cores_and_small_catalogs(monkeypatch):
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert choose_decoder("auto", 100_000) == ("threads", 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert choose_decoder("auto", 100) == ("threads", 8)
    assert choose_decoder("auto", 5_000) == ("processes", 16)
    with pytest.raises(ValueError, match="Expected decoder in"):
        choose_decoder("gpu", 10)


def test_embeddings_do_not_depend_on_the_decoder(mixed, extractor):
    from simrec import embed_images

    threads = embed_images(mixed, extractor, batch_size=4, verbose=False, decoder="threads")
    processes = embed_images(mixed, extractor, batch_size=4, verbose=False, decoder="processes", n_workers=2)
    assert np.array_equal(threads.ok, processes.ok)
    np.testing.assert_array_equal(threads.embeddings[threads.ok], processes.embeddings[processes.ok])
    assert threads.failures.equals(processes.failures)


def test_colour_signatures_come_with_the_pixels_from_both_engines(mixed):
    from simrec.core.colour_signature import colour_signature

    for decoder in ("threads", "processes"):
        for indices, pixels, colours, _ in decoded_batches(mixed, 48, 4, decoder=decoder, colours=True):
            assert colours.shape == (len(indices), 324)
            for photo, signature in zip(pixels, colours):
                assert signature.tobytes() == colour_signature(photo).tobytes()


def test_where_processes_cannot_start_threads_take_over(mixed, tmp_path):
    """A program read from standard input cannot be re-imported by spawned workers."""
    import json
    import os
    import subprocess
    import sys

    script = (
        "import json, sys\nfrom simrec.pipeline.decode import decoded_batches\n"
        f"paths = {json.dumps(mixed)}\n"
        "batches = list(decoded_batches(paths, 48, 4, decoder='processes', n_workers=2))\n"
        "print(json.dumps([[i for b in batches for i in b[0].tolist()], len([f for b in batches for f in b[3]])]))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-"], input=script, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    decoded, failed = json.loads(done.stdout.strip().splitlines()[-1])
    reference = _collect(decoded_batches(mixed, 48, 4, decoder="threads"))
    assert decoded == reference[0] and failed == len(reference[2])
    assert "decoding with threads instead" in done.stderr
