import numpy as np
import pandas as pd
import pytest

from simrec import CosineNeighbors, evaluate


def test_perfect_clusters_score_one():
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 10
    data = np.vstack([c + rng.normal(0, 0.1, size=(4, 3)) for c in centres])
    labels = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    report = evaluate(CosineNeighbors().fit(data), labels, n_neighbors=3)
    assert report["precision_at_k"] == pytest.approx(1.0) and report["map_at_k"] == pytest.approx(1.0)
    assert report["n"] == 12 and set(report["per_label"]) == {"a", "b", "c"}
    assert report["chance_precision"] == pytest.approx(3 / 11)


def test_hand_computed_precision_and_average_precision():
    # Points on a line; cosine needs directions, so use angles.
    angles = np.radians([0, 5, 10, 60, 65])
    data = np.c_[np.cos(angles), np.sin(angles)]
    labels = ["x", "y", "x", "y", ""]  # the unlabelled item is never a query
    report = evaluate(CosineNeighbors().fit(data), labels, n_neighbors=2)
    # item0 neighbors: 1(y), 2(x) -> P=1/2, AP=(1/2)/min(2,1)=0.5
    # item1 neighbors: 0(x), 2(x) -> P=0, AP=0
    # item2 neighbors: 1(y), 0(x) -> P=1/2, AP=0.5
    # item3 neighbors: 4(''), 2(x) -> P=0, AP=0
    assert report["n"] == 4
    assert report["precision_at_k"] == pytest.approx(0.25)
    assert report["map_at_k"] == pytest.approx(0.25)
    assert report["per_label"]["x"] == {"n": 2, "precision_at_k": 0.5, "map_at_k": 0.5}


def test_evaluate_errors():
    index = CosineNeighbors().fit(np.eye(3))
    with pytest.raises(ValueError, match="Expected 3 labels"):
        evaluate(index, ["a", "b"])
    with pytest.raises(ValueError, match="No label is shared"):
        evaluate(index, ["a", "b", "c"], n_neighbors=1)
    with pytest.raises(ValueError, match="n_neighbors"):
        evaluate(index, ["a", "a", "b"], n_neighbors=3)


@pytest.mark.parametrize("missing", ["", None, float("nan"), np.nan, pd.NA])
def test_missing_labels_are_unlabelled_not_a_class(missing):
    angles = np.radians([0, 5, 12, 60, 65, 67])
    data = np.c_[np.cos(angles), np.sin(angles)]
    labels = pd.Series(["x", "x", missing, "y", "y", missing], dtype=object)
    report = evaluate(CosineNeighbors().fit(data), labels, n_neighbors=1)
    assert report["n"] == 4 and report["n_unlabelled"] == 2
    assert set(report["per_label"]) == {"x", "y"}
    # item 4 (y) has the unlabelled item 5 nearest: a miss; items 2 and 5 are no "nan" class.
    assert report["per_label"]["y"]["precision_at_k"] == pytest.approx(0.5)


def test_the_string_nan_is_a_label():
    report = evaluate(CosineNeighbors().fit(np.eye(4) + 0.1), ["nan", "nan", "a", "a"], n_neighbors=1)
    assert report["n_unlabelled"] == 0 and set(report["per_label"]) == {"nan", "a"}


def test_cli_evaluate_prints_the_unlabelled_count(tmp_path, capsys, embedded):
    from simrec import save_index
    from simrec.cli import main

    embedded.catalog.loc[embedded.catalog["product_id"] == "red/item_1", "label"] = ""
    save_index(embedded, tmp_path / "index")
    assert main(["evaluate", str(tmp_path / "index"), "-k", "2"]) == 0
    assert "1 items without a label" in capsys.readouterr().out


def test_labels_from_a_table_join_by_product_id_then_by_file_name(tmp_path):
    from simrec.app.evaluate import labels_from_table

    table = tmp_path / "styles.csv"
    table.write_text("id,articleType,baseColour\n15970,Shirts,Navy Blue\n39386,Jeans,\nred/a,Bags,Red\n")
    ids = ["images/15970", "images/39386", "red/a", "images/1"]
    assert labels_from_table(ids, table, "articleType").tolist() == ["Shirts", "Jeans", "Bags", ""]
    assert labels_from_table(ids, table, "baseColour").tolist() == ["Navy Blue", "", "Red", ""]
    with pytest.raises(ValueError, match=r"has no the column 'colour'; its columns: id, articleType, baseColour"):
        labels_from_table(ids, table, "colour")
    with pytest.raises(ValueError, match=r"no product_id of the index \(e.g. 'x/9'\) nor its file name"):
        labels_from_table(["x/9"], table, "articleType")
    with pytest.raises(FileNotFoundError, match="labels_csv file not found"):
        labels_from_table(ids, tmp_path / "missing.csv", "articleType")
    (tmp_path / "twice.csv").write_text("product_id,type\na,x\na,y\n")
    with pytest.raises(ValueError, match=r"repeats 1 ids in 'product_id', e.g. 'a'"):
        labels_from_table(["a"], tmp_path / "twice.csv", "type")


def test_joint_labels_share_every_label_and_unlabelled_stays_unlabelled():
    from simrec.app.evaluate import distinguishes, joint_labels

    joint = joint_labels({"type": ["shirt", "shirt", "bag", ""], "colour": ["red", "blue", "red", "red"]})
    assert joint.tolist() == ["shirt & red", "shirt & blue", "bag & red", ""]
    assert distinguishes(["a", "a", "b"]) and not distinguishes(["a", "a", "a"]) and not distinguishes(["", "", ""])
