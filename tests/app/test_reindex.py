"""Re-indexing keeps the index's own model; vectors made elsewhere; one writer at a time."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pandas as pd
import pytest
from photos import write_image

from simrec import build_index, load_index, recommend, save_index, save_vectors
from simrec.cli import main

FAST = ["--image-size", "32", "-q"]


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A ResNet50 (no top) weights file, saved as a user would save one."""
    import keras

    keras.utils.set_random_seed(5)
    plain = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg", input_shape=(32, 32, 3))
    path = tmp_path_factory.mktemp("weights") / "my_resnet.weights.h5"
    plain.save_weights(path)
    return path


def _meta(out):
    return json.loads((out / "meta.json").read_text())


def test_reindex_without_weights_uses_the_index_own_weights_file(colour_tree, tmp_path, weights_file, capsys):
    out = tmp_path / "idx"
    assert main(["index", str(colour_tree), "--out", str(out), "--weights", str(weights_file), *FAST]) == 0
    before = load_index(out)
    write_image(colour_tree / "red" / "item_9.jpg", (250, 10, 10))
    capsys.readouterr()
    assert main(["index", str(colour_tree), "--out", str(out), *FAST]) == 0  # no --weights
    assert "added 1, updated 0, removed 0, unchanged 12" in capsys.readouterr().out
    after = load_index(out)
    assert after.meta.weights == "file:my_resnet.weights.h5" and after.meta.pretrained
    old = dict(zip(before.catalog["product_id"], before.embeddings))
    for pid, vector in zip(after.catalog["product_id"], after.embeddings):
        if pid in old:
            assert vector.tobytes() == old[pid].tobytes()


def test_reindex_fails_when_the_index_weights_are_missing(colour_tree, tmp_path, weights_file, capsys):
    out = tmp_path / "idx"
    moved = tmp_path / "moved.weights.h5"
    moved.write_bytes(weights_file.read_bytes())
    assert main(["index", str(colour_tree), "--out", str(out), "--weights", str(moved), *FAST]) == 0
    moved.unlink()
    saved = (out / "meta.json").read_text()
    capsys.readouterr()
    assert main(["index", str(colour_tree), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "moved.weights.h5" in err and "--weights" in err and len(err.strip().splitlines()) == 1
    assert (out / "meta.json").read_text() == saved  # nothing re-embedded with other weights


def test_reindex_of_an_imagenet_index_offline_names_the_missing_weights(colour_tree, tmp_path, monkeypatch, capsys):
    out = tmp_path / "idx"
    assert main(["index", str(colour_tree), "--out", str(out), "--weights", "random", *FAST]) == 0
    meta = _meta(out)
    meta.update(weights="imagenet", pretrained=True)  # as if built on Colab with ImageNet weights
    (out / "meta.json").write_text(json.dumps(meta))
    import simrec.app.indexing

    monkeypatch.setattr(simrec.app.indexing, "imagenet_available", lambda model: False)
    capsys.readouterr()
    assert main(["index", str(colour_tree), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "ImageNet weights, which are not cached" in err and "resnet50_weights_tf" in err
    assert _meta(out)["weights"] == "imagenet"


def test_different_weights_or_precision_need_rebuild(colour_tree, tmp_path, weights_file, capsys):
    out = tmp_path / "idx"
    assert main(["index", str(colour_tree), "--out", str(out), "--weights", str(weights_file), *FAST]) == 0
    capsys.readouterr()
    assert main(["index", str(colour_tree), "--out", str(out), "--weights", "random", *FAST]) == 2
    assert "--rebuild" in capsys.readouterr().err
    assert main(["index", str(colour_tree), "--out", str(out), "--precision", "bfloat16", *FAST]) == 2
    assert "precision 'bfloat16' (the index has 'float32')" in capsys.readouterr().err
    assert main(["index", str(colour_tree), "--out", str(out), "--image-size", "48", "-q"]) == 2
    assert "image_size 48" in capsys.readouterr().err
    assert _meta(out)["weights"] == "file:my_resnet.weights.h5"
    assert main(["index", str(colour_tree), "--out", str(out), "--weights", "random", "--rebuild", *FAST]) == 0
    assert _meta(out)["weights"] == "random(seed=0)"


def test_random_weights_do_not_claim_imagenet_was_unavailable(colour_tree, tmp_path, capsys, caplog):
    assert main(["index", str(colour_tree), "--out", str(tmp_path / "idx"), "--weights", "random", *FAST]) == 0
    said = capsys.readouterr().err + caplog.text
    assert "UNTRAINED" in said and "not available" not in said and "cannot be downloaded" not in said


def test_vectors_from_elsewhere_load_query_and_refuse_a_plain_reindex(colour_tree, tmp_path, capsys):
    rng = np.random.default_rng(0)
    products = pd.DataFrame({"product_id": [f"sku/{i}" for i in range(20)], "label": ["a", "b"] * 10})
    vectors = rng.normal(size=(20, 8)).astype(np.float32)
    vectors[3] = vectors[2] * 2  # the same direction: cosine distance 0
    out = save_vectors(products, vectors, tmp_path / "clip", model="clip-vit-b32")
    embedded = load_index(out, verify=True)
    assert embedded.meta.model == "clip-vit-b32" and embedded.embeddings.shape == (20, 8)
    assert recommend(embedded, product_id="sku/2", n_neighbors=1)["product_id"].tolist() == ["sku/3"]
    assert main(["query", str(out), "--id", "sku/2", "-k", "1", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["product_id"] == "sku/3"
    assert main(["query", str(out), "--image", str(next(colour_tree.rglob("*.jpg")))]) == 2
    assert "made outside simrec" in capsys.readouterr().err
    assert main(["index", str(colour_tree), "--out", str(out), "--weights", "random", *FAST]) == 2
    assert "--rebuild" in capsys.readouterr().err
    assert main(["index", str(colour_tree), "--out", str(out), "--weights", "random", "--rebuild", *FAST]) == 0
    assert len(load_index(out)) == 12


def test_an_index_made_with_the_python_api_is_refreshed_incrementally(embedded, colour_tree, tmp_path, extractor):
    out = tmp_path / "idx"
    save_index(embedded, out)
    write_image(colour_tree / "blue" / "item_9.jpg", (0, 0, 250))
    _, report = build_index(colour_tree, out, extractor=extractor, verbose=False)
    assert (report.added, report.unchanged, report.embedded) == (1, 12, 1)


def test_a_second_writer_is_refused_and_readers_are_not_blocked(colour_tree, tmp_path, capsys):
    out = tmp_path / "idx"
    assert main(["index", str(colour_tree), "--out", str(out), "--weights", "random", *FAST]) == 0
    holder = textwrap.dedent(
        f"""
        import sys, time
        from simrec.storage.locking import writer_lock
        with writer_lock({str(out)!r}):
            print("locked", flush=True)
            sys.stdin.readline()
        """
    )
    other = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert main(["index", str(colour_tree), "--out", str(out), *FAST]) == 2
        err = capsys.readouterr().err
        assert f"another simrec process (pid {other.pid}) is writing the index" in err
        assert len(load_index(out)) == 12  # readers go on
        assert main(["query", str(out), "--id", "red/item_1", "-k", "2"]) == 0
    finally:
        other.communicate("done\n", timeout=60)
    other.kill() if other.poll() is None else None
    assert main(["index", str(colour_tree), "--out", str(out), *FAST]) == 0  # released when the holder ends


def test_a_killed_writer_does_not_leave_the_folder_locked(colour_tree, tmp_path):
    out = tmp_path / "idx"
    out.mkdir()
    holder = f"import os, signal\nfrom simrec.storage.locking import writer_lock\nwith writer_lock({str(out)!r}):\n"
    holder += "    os.kill(os.getpid(), signal.SIGKILL)\n"
    assert subprocess.run([sys.executable, "-c", holder]).returncode == -9
    assert main(["index", str(colour_tree), "--out", str(out), "--weights", "random", *FAST]) == 0


def test_backslash_zip_gives_the_same_catalog_as_its_forward_slash_twin(colour_tree, tmp_path):
    from simrec import load_catalog

    catalogs = {}
    for separator in ("/", "\\"):
        zip_path = tmp_path / f"zip{ord(separator)}.zip"
        with zipfile.ZipFile(zip_path, "w") as archive:
            for path in sorted(colour_tree.rglob("*.jpg")):
                archive.write(path, separator.join(path.relative_to(colour_tree.parent).parts))
            archive.writestr("..\\..\\escape.jpg", b"x")
        catalog, skipped = load_catalog(zip_path, extract_to=tmp_path / f"out{ord(separator)}")
        catalogs[separator] = catalog
        assert skipped["reason"].str.contains("climbs out").tolist() == [True]
    forward, backward = catalogs["/"], catalogs["\\"]
    assert backward["product_id"].tolist() == forward["product_id"].tolist()
    assert "red/item_1" in set(backward["product_id"]) and set(backward["label"]) == {"red", "green", "blue"}
    assert not any("\\" in p for p in backward["path"])
    assert not (tmp_path / "escape.jpg").exists()


def test_catalogs_from_load_catalog_concatenate(colour_tree, tmp_path):
    from simrec import load_catalog

    write_image(tmp_path / "more" / "pink" / "item_1.jpg", (250, 150, 200))
    first, _ = load_catalog(colour_tree)
    second, _ = load_catalog(tmp_path / "more")
    both = pd.concat([first, second], ignore_index=True)
    assert len(both) == 13 and not both.attrs


def test_non_finite_model_outputs_become_failures(colour_tree, tmp_path):
    import keras

    from simrec import embed_images

    write_image(colour_tree / "red" / "black.png", (0, 0, 0), size=(32, 32))  # square: no white padding
    pixels = keras.Input((32, 32, 3))
    mean = keras.layers.GlobalAveragePooling2D()(pixels)
    model = keras.Model(pixels, mean / keras.ops.max(mean, axis=-1, keepdims=True))  # 0 / 0 for a black photo
    paths = sorted(str(p) for p in colour_tree.rglob("*.*"))
    result = embed_images(paths, model, batch_size=4, verbose=False)
    assert result.ok.sum() == len(paths) - 1
    (row,) = result.failures.itertuples(index=False)
    assert row.path.endswith("black.png") and "not finite" in row.reason and row.stage == "embed"


def test_photo_queries_without_an_extractor_build_one_model_and_memory_stays_flat(embedded):
    import gc

    import keras

    def models() -> int:
        gc.collect()
        return sum(isinstance(o, keras.Model) for o in gc.get_objects())

    def resident_mb() -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * 4096 / 1024**2

    photo = embedded.catalog["path"].iloc[0]
    recommend(embedded, image=photo, n_neighbors=2)
    recommend(embedded, image=photo, n_neighbors=2)
    count, memory = models(), resident_mb()
    for _ in range(20):
        assert recommend(embedded, image=photo, n_neighbors=2)["product_id"].iloc[0] == "blue/item_1"
    assert models() == count
    assert resident_mb() - memory < 40  # one ResNet50 is about 100 MB


def test_an_internal_bug_is_not_reported_as_a_user_error(embedded, tmp_path, monkeypatch):
    out = save_index(embedded, tmp_path / "idx")
    module = sys.modules["simrec.cli.commands"]  # the command calls the recommend it imported

    def broken(*args, **kwargs):
        raise KeyError("a bug, not the user's fault")

    monkeypatch.setattr(module, "recommend", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["query", str(out), "--id", "red/item_1"])


def test_another_thread_of_the_same_process_is_refused_like_another_process(tmp_path):
    import threading

    from simrec import IndexLockedError
    from simrec.storage.locking import writer_lock

    folder = tmp_path / "idx"
    folder.mkdir()
    seen = []
    with writer_lock(folder):
        with writer_lock(folder):  # the holding thread may take it again
            pass

        def other():
            try:
                with writer_lock(folder):
                    seen.append("entered")
            except IndexLockedError as error:
                seen.append(str(error))

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert len(seen) == 1 and "another thread of this process is writing the index" in seen[0]
    with writer_lock(folder):  # released: free again
        pass


def test_commands_on_a_folder_that_is_no_index_are_one_line_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv in (["colours", str(tmp_path / "missing")], ["colours", str(empty)], ["verify", str(empty)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("simrec: error:") and len(err.strip().splitlines()) == 1
    assert list(empty.iterdir()) == []  # nothing written into a folder that is not an index


@pytest.mark.parametrize("zipped", [False, True])
def test_a_reindex_with_nothing_changed_commits_nothing_and_says_so(colour_tree, colour_zip, tmp_path, zipped, capsys):
    source = colour_zip if zipped else colour_tree
    out = tmp_path / "idx"
    command = ["index", str(source), "--out", str(out), "--weights", "random", *FAST]
    assert main(command) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != ".simrec-lock"}
    written = (out / "meta.json").read_bytes()
    capsys.readouterr()
    assert main(command) == 0
    said = capsys.readouterr().out
    assert "unchanged 12; embedded 0" in said and "nothing changed: nothing committed" in said
    assert (out / "meta.json").read_bytes() == written
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != ".simrec-lock"}
    assert after == before  # nothing written, no extracted folder left
    assert len(load_index(out, verify=True)) == 12


def test_a_renamed_file_with_the_same_bytes_reuses_its_vector(colour_tree, tmp_path, capsys):
    out = tmp_path / "idx"
    command = ["index", str(colour_tree), "--out", str(out), "--weights", "random", *FAST]
    assert main(command) == 0
    before = load_index(out)
    old = before.embeddings[before.row_of("red/item_1")].tobytes()
    (colour_tree / "red" / "item_1.jpg").rename(colour_tree / "red" / "item_7.jpg")
    (colour_tree / "blue" / "item_9.jpg").write_bytes((colour_tree / "blue" / "item_2.jpg").read_bytes())
    capsys.readouterr()
    assert main(command) == 0
    said = capsys.readouterr().out
    assert "added 2, updated 0, removed 1, unchanged 11; embedded 0" in said and "nothing changed" not in said
    after = load_index(out, verify=True)
    assert after.embeddings[after.row_of("red/item_7")].tobytes() == old
    assert "red/item_1" not in set(after.catalog["product_id"]) and len(after) == 13
