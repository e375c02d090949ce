"""Filesystems that refuse folder fsync or file locks (Google Drive in Colab, network mounts)."""

from __future__ import annotations

import errno
import logging
import os
import stat

import pytest
from photos import write_image

import simrec.core.durability
from simrec import NotWritableError, build_index, load_index


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(simrec.core.durability, "_warned", set())


def _refuse_folder_fsync(monkeypatch, code):
    real = os.fsync

    def fsync(descriptor):
        if stat.S_ISDIR(os.fstat(descriptor).st_mode):
            raise OSError(code, os.strerror(code))
        real(descriptor)

    monkeypatch.setattr(simrec.core.durability.os, "fsync", fsync)


def _refuse_locks(monkeypatch, code):
    import fcntl

    def flock(descriptor, operation):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", flock)


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOTSUP, errno.ENOLCK])
def test_refused_folder_fsync_and_locks_still_save_load_and_reindex(
    code, colour_tree, tmp_path, extractor, monkeypatch, caplog
):
    _refuse_folder_fsync(monkeypatch, code)
    _refuse_locks(monkeypatch, code)
    out = tmp_path / "drive" / "idx"
    with caplog.at_level(logging.INFO, logger="simrec"):
        build_index(colour_tree, out, extractor=extractor, verbose=False)
        write_image(colour_tree / "red" / "item_9.jpg", (250, 0, 0))
        _, report = build_index(colour_tree, out, extractor=extractor, verbose=False)
    assert (report.added, report.unchanged) == (1, 12)
    assert len(load_index(out, verify=True)) == 13
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "filesystem" in r.message]
    assert len([w for w in warnings if "folder fsync" in w]) == 1  # once, not at every write
    assert len([w for w in warnings if "file locks" in w]) == 1
    assert "cannot guarantee" in warnings[0]
    infos = [r for r in caplog.records if r.levelno == logging.INFO and "not supported here" in r.getMessage()]
    assert infos  # later refusals are still recorded in the log


def test_any_other_fsync_error_stops_the_write_and_keeps_the_previous_index(
    colour_tree, tmp_path, extractor, monkeypatch
):
    out = tmp_path / "idx"
    build_index(colour_tree, out, extractor=extractor, verbose=False)
    before = sorted(os.listdir(out))
    write_image(colour_tree / "red" / "item_9.jpg", (250, 0, 0))

    def failing(descriptor):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(simrec.core.durability.os, "fsync", failing)
    with pytest.raises(NotWritableError, match=r"cannot write the index .*Input/output error.*previous generation"):
        build_index(colour_tree, out, extractor=extractor, verbose=False)
    monkeypatch.undo()
    assert sorted(os.listdir(out)) == before
    assert len(load_index(out, verify=True)) == 12
