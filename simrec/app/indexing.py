"""Build or refresh an index folder from a catalog source: what ``simrec index`` does.

On an existing index only new or changed photos are embedded (a photo is unchanged when
its ``product_id``, size and SHA-256 are the same), removed ones are dropped, and the
vectors and colour signatures of the rest are copied unchanged (an index made before
simrec stored signatures gets them for its unchanged photos by decoding those photos,
without the model). Re-indexing keeps the index's own model: its
weights, precision and image size are reused, and asking for different ones needs
``rebuild=True``. A zip is extracted into the index folder under the new generation's
name (``images-GEN/``), which the previous generation never refers to, so an interrupted
run leaves the previous index and its photos as they were.

An approximate-search structure (``simrec ann``) is kept up to date in the same commit:
IVF types add and remove vectors without retraining, HNSW is rebuilt; the report's
``ann`` line says which. ``engine="ray"`` embeds the new or changed photos on a Ray
cluster (:mod:`simrec.pipeline.ray_engine`) instead of in this process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from simrec.app.precompute import with_stored_neighbors
from simrec.core.backbones import DEFAULT_BACKBONE, backbone
from simrec.core.crashpoints import crash_point
from simrec.core.defaults import BATCH_SIZE, IMAGE_SIZE, SEED
from simrec.core.deprecation import renamed_keyword
from simrec.core.durability import is_no_room, no_room_error
from simrec.core.errors import (
    DiskFullError,
    IndexIntegrityError,
    InvalidArgumentError,
    MissingFileError,
    NotWritableError,
)
from simrec.core.hub_backbones import HUB_BACKBONES, is_model_file, model_label
from simrec.core.index_meta import REUSE_KEYS, IndexMeta, weights_name
from simrec.core.records import FAILURE_COLUMNS, ExtractorInfo, extractor_info
from simrec.core.validation import check_path_argument
from simrec.embedded_catalog import EmbeddedCatalog, assemble, fingerprint_columns
from simrec.pipeline.catalog import load_catalog
from simrec.pipeline.embedding import embed_images
from simrec.pipeline.model import build_extractor, imagenet_available
from simrec.pipeline.runtime import calibration_photos, needs_calibration, use_openvino
from simrec.storage.index_folder import load_index, new_generation, read_meta, remove_unreferenced, save_index
from simrec.storage.locking import writer_lock
from simrec.storage.photo_store import object_name

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)


@dataclass
class BuildReport:
    """What :func:`build_index` did. ``candidates == indexed + skipped``."""

    candidates: int
    indexed: int
    skipped: int
    added: int
    updated: int
    removed: int
    unchanged: int
    embedded: int
    seconds: float
    embed_seconds: float
    ann: str = ""
    """What happened to the ann structure ("" when the index has none)."""
    committed: bool = True
    """False when nothing changed: no new generation was written, the folder is as it was."""

    def to_dict(self) -> dict:
        return asdict(self)


@renamed_keyword("out", "index_dir")
def build_index(
    source: str | os.PathLike,
    index_dir: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = "auto",
    model: str | None = None,
    batch_size: int = BATCH_SIZE,
    seed: int | None = None,
    image_size: int | None = None,
    precision: str | None = None,
    preprocessing: str | None = None,
    rebuild: bool = False,
    metadata: str | os.PathLike | None = None,
    extractor: keras.Model | None = None,
    verbose: bool = True,
    engine: str = "local",
    engine_options: dict[str, Any] | None = None,
    runtime: str = "auto",
) -> tuple[EmbeddedCatalog, BuildReport]:
    """Index a zip or folder of photos into ``index_dir``, reusing an existing index there.

    Args:
        source: ``.zip`` file or folder of photos.
        index_dir: Index folder (created if missing); a zip is extracted into it.
        weights: ``"auto"`` (default): the existing index's own weights, or for a new
            index ImageNet when available, else untrained with a warning. Otherwise as
            in :func:`simrec.build_extractor` (``"imagenet"``, ``"random"``/None, a file).
        model: The backbone (a name of :data:`simrec.core.backbones.BACKBONES`; default:
            the existing index's own, else ``"resnet50"``).
        batch_size: Images per model call.
        seed: Seed for untrained weights (default: the index's, else 0).
        image_size: Side of the square model input (default: the index's, else the backbone's own).
        precision: As in :func:`simrec.build_extractor` (default: the index's, else "auto").
        preprocessing: For a ``.keras`` model file, as in :func:`simrec.build_extractor` (default: the index's,
            else inside the model).
        rebuild: Embed everything again, with the model, weights, precision and image size
            asked for, even if an index is already there.
        metadata: Optional CSV joined on ``product_id``.
        extractor: A ready extractor (then ``model``, ``weights``, ``seed``, ``precision``
            and ``image_size`` are unused).
        verbose: Show progress bars.
        engine: ``"local"`` (this process) or ``"ray"`` (Ray Data; ``pip install simrec[ray]``).
        engine_options: For ``"ray"``: ``address``, ``workers``, ``gpus_per_worker``
            (see :func:`simrec.pipeline.ray_engine.embed_images_ray`).
        runtime: What executes the network, as in :func:`simrec.build_extractor` (``"auto"``,
            ``"keras"``, ``"openvino"``). It is not part of the index's model: an index embedded
            with one is kept and extended with the other. int8 is calibrated on up to
            :data:`~simrec.pipeline.runtime.CALIBRATION_PHOTOS` photos spread over the catalog.

    Returns:
        ``(embedded, report)``.

    Raises:
        MissingFileError: ``source`` does not exist, or the existing index's weights are not available here.
        NotWritableError: ``index_dir`` cannot be written.
        DiskFullError: The disk of ``index_dir`` has no room left (or is read-only); the previous generation stays, and
            nothing of this run is left behind.
        IndexLockedError: Another process is writing ``index_dir``.
        InvalidArgumentError: ``source`` holds no usable image, ``source`` or ``index_dir`` is empty, ``index_dir`` is
            inside the source folder, an unknown ``model`` or ``engine``, or the model, weights, precision or image size
            differ from the existing index's without ``rebuild``, or a bad ``runtime`` (or one the network does not
            run on).
        UnsafeArchiveError: A zip ``source`` is not a readable zip.
        MissingDependencyError: ``engine="ray"`` without Ray, an existing index with an ann structure without faiss,
            or ``runtime="openvino"``/``precision="int8"`` without OpenVINO (or NNCF).
        TypeError: ``extractor`` was not made by :func:`simrec.build_extractor`.
        IndexIntegrityError: What was written does not read back as written (nothing was committed).
    """
    started = time.perf_counter()
    _check_arguments(source, index_dir, model)
    embed = _embed_function(engine, engine_options or {})
    source, index_dir = _checked_folders(Path(source), Path(index_dir))
    asked = {
        "model": model,
        "weights": weights,
        "seed": seed,
        "image_size": image_size,
        "precision": precision,
        "preprocessing": preprocessing,
    }
    with _full_disk_named(index_dir):
        _check_writable(index_dir)
        with writer_lock(index_dir):
            crash_point("locked")
            generation = new_generation(index_dir)
            photos = index_dir / f"images-{generation}"
            with _removed_on_failure(photos):
                plan = _plan(source, index_dir, photos, extractor, asked, rebuild, runtime, metadata)
                built = _embed(plan, embed, batch_size, verbose)
                ann_how, committed = _commit(plan, built, generation, verbose)
        report = _report(plan, built, ann_how, committed, time.perf_counter() - started)
        if ann_how:
            logger.info("%s", ann_how)
        return load_index(index_dir, mmap=True), report


def add_colours(index_dir: str | os.PathLike, *, batch_size: int = BATCH_SIZE, verbose: bool = True) -> EmbeddedCatalog:
    """Give an index colour signatures, computed from its photos, without the model.

    This is ``simrec colours``: for an index made before simrec stored signatures, whose
    signatures were made by another recipe, or written by :func:`simrec.save_vectors` with a
    ``path`` column that names readable photos. The photos are decoded exactly as
    ``simrec index`` decodes them, so the signatures equal those of a rebuild; the
    embeddings are kept as they are and the result is committed as a new generation.

    Args:
        index_dir: The index folder.
        batch_size: Photos decoded per batch.
        verbose: Show a progress bar.

    Returns:
        The index as saved, loaded again.

    Raises:
        MissingFileError: The folder is not an index, or a photo of the index is gone or unreadable (the message names
            it); embed the index again from its source then (``rebuild=True``).
        IndexIntegrityError: The index is damaged.
        InvalidArgumentError: Vectors made outside simrec with rows that name no photo.
        IndexLockedError: Another process is writing the index.
        NotWritableError: The folder cannot be written.
        DiskFullError: The disk has no room left (or is read-only); the previous generation stays.
    """
    from simrec.core.colour_signature import SIGNATURE_METHOD
    from simrec.pipeline.embedding import compute_colours

    index_dir = Path(index_dir)
    read_meta(index_dir)  # a clear error for a folder that is not an index, before anything is written
    with writer_lock(index_dir):
        embedded = load_index(index_dir, mmap=True)
        outside = embedded.meta.made_outside
        paths = embedded.catalog["path"].fillna("").astype(str)
        if outside and (paths == "").any():
            raise InvalidArgumentError(
                f"{index_dir} holds vectors from {embedded.meta.model!r} made outside simrec, and "
                f"{int((paths == '').sum())} of its rows name no photo in the path column: colour signatures "
                "need every row's photo"
            )
        # Vectors made outside simrec have no input size: their photos are decoded at simrec's default,
        # which the signature (made from at most 64 x 64 pixels) barely depends on.
        size = int(embedded.meta.image_size or IMAGE_SIZE)
        colours, failures = compute_colours(paths.tolist(), size, batch_size=batch_size, verbose=verbose)
        if len(failures):
            first = failures.iloc[0]
            remedy = (
                "write the index again with save_vectors, with a path column that names readable photos"
                if outside
                else "embed the index again from its source (rebuild=True)"
            )
            raise MissingFileError(
                f"cannot add colour signatures to {index_dir}: {len(failures)} photos cannot be read, e.g. "
                f"{first['path']} ({first['reason']}); {remedy}",
                parameters=() if outside else ("rebuild",),
            )
        meta = embedded.meta.replace(colour_signature=SIGNATURE_METHOD)
        updated = EmbeddedCatalog(
            embedded.catalog,
            embedded.embeddings,
            meta,
            embedded.failures,
            embedded.inverse_norms,
            colours,
            embedded.ann,
        )
        save_index(with_stored_neighbors(updated), index_dir)
        del embedded, updated  # release the arrays of the previous generation
    return load_index(index_dir, mmap=True)


def _check_arguments(source: str | os.PathLike, index_dir: str | os.PathLike, model: str | None) -> None:
    """Refuse empty paths and an unknown backbone name, before anything is read or written."""
    check_path_argument(source, "source")
    check_path_argument(index_dir, "index_dir")
    if model is not None and model not in HUB_BACKBONES and not is_model_file(model):
        backbone(model)  # an unknown name is reported before anything else


def _checked_folders(source: Path, index_dir: Path) -> tuple[Path, Path]:
    """``(source, index_dir)`` once the source exists and the index folder lies outside it."""
    if not source.exists():
        raise MissingFileError(f"catalog source not found: {source}")
    _check_outside_source(source, index_dir)
    return source, index_dir


@dataclass
class _Plan:
    """What one run does, decided under the writer lock before anything is embedded.

    Attributes:
        source: The catalog source.
        index_dir: The index folder.
        photos: Where a zip's photos are extracted (``images-GEN/``), removed if the run fails.
        extractor: The model that embeds the new or changed photos.
        info: What the index records of ``extractor``.
        catalog: One row per usable photo, with its fingerprint (``size_bytes``, ``sha256``).
        skipped: The files the catalog could not use (``FAILURE_COLUMNS``).
        previous: The index already in the folder (memory-mapped), or None.
        reuse_rows: For each catalog row, the row of ``previous`` whose vector it reuses; -1: embed it.
        status: For each catalog row, ``"added"``, ``"updated"`` or ``"unchanged"``.
    """

    source: Path
    index_dir: Path
    photos: Path
    extractor: Any
    info: ExtractorInfo
    catalog: pd.DataFrame
    skipped: pd.DataFrame
    previous: EmbeddedCatalog | None
    reuse_rows: np.ndarray
    status: np.ndarray


def _plan(
    source: Path,
    index_dir: Path,
    photos: Path,
    extractor: keras.Model | None,
    asked: dict[str, Any],
    rebuild: bool,
    runtime: str,
    metadata: str | os.PathLike | None,
) -> _Plan:
    """Decide the run: the extractor (the index's own unless ``rebuild``), the catalog, and the rows to reuse."""
    previous_meta = None if rebuild else _existing_meta(index_dir)
    extractor, info = _choose_extractor(previous_meta, index_dir, extractor, asked, rebuild, runtime)
    is_zip = source.is_file() and source.suffix.lower() == ".zip"
    catalog, skipped = load_catalog(source, extract_to=photos if is_zip else None, metadata=metadata)
    crash_point("catalogued")
    catalog = catalog.assign(**fingerprint_columns(catalog["path"]))
    previous = _previous_index(index_dir) if previous_meta is not None else None
    reuse_rows, status = _match(catalog, previous)
    return _Plan(source, index_dir, photos, extractor, info, catalog, skipped, previous, reuse_rows, status)


def _choose_extractor(
    previous_meta: IndexMeta | None,
    index_dir: Path,
    extractor: keras.Model | None,
    asked: dict[str, Any],
    rebuild: bool,
    runtime: str,
) -> tuple[keras.Model, ExtractorInfo]:
    """The extractor that embeds this run and what the index records of it; one the index can keep, or an error."""
    if extractor is None:
        extractor = build_extractor(**_extractor_spec(previous_meta, index_dir, **asked), runtime=runtime)
    info = extractor_info(extractor)
    if previous_meta is not None:
        _check_same_model(previous_meta, info, index_dir)
        if previous_meta.ann:
            from simrec.search.approximate import import_faiss

            import_faiss()  # the structure is kept up to date: a missing faiss is reported before embedding
    elif rebuild and _had_ann(index_dir):
        logger.warning(
            "rebuilding drops the index's approximate-search structure: build it again with 'simrec ann %s'",
            index_dir,
        )
    return extractor, info


@dataclass
class _Built:
    """What :func:`_embed` made of a plan.

    Attributes:
        embedded: The new generation, as it would be committed.
        ok: For each catalog row of the plan, whether it is in ``embedded``.
        result: The embedding of the new or changed photos (:class:`simrec.pipeline.embedding.EmbeddingResult`).
        removed: Products of the previous generation that the catalog no longer holds.
    """

    embedded: EmbeddedCatalog
    ok: np.ndarray
    result: Any
    removed: int


def _embed(plan: _Plan, embed: Any, batch_size: int, verbose: bool) -> _Built:
    """Embed the new or changed photos, copy the reused rows, and assemble the new generation."""
    catalog, previous, reuse_rows = plan.catalog, plan.previous, plan.reuse_rows
    todo = np.flatnonzero(reuse_rows < 0)
    reused = np.flatnonzero(reuse_rows >= 0)
    if len(todo) and needs_calibration(plan.extractor):
        calibration = calibration_photos(catalog["path"].tolist(), plan.info.image_size)
        use_openvino(plan.extractor, calibration=calibration, strict=True)
    dim = int(plan.extractor.output_shape[-1])
    # One (n_items, dim) array holds everything; a full build embeds straight into it.
    embeddings = np.empty((len(catalog), dim), dtype=np.float32)
    full = len(todo) == len(catalog)
    result = embed(
        catalog["path"].iloc[todo].tolist(),
        plan.extractor,
        batch_size=batch_size,
        verbose=verbose,
        out=embeddings if full else None,
    )
    if not full:
        embeddings[todo] = result.embeddings
    if len(reused):
        embeddings[reused] = previous.embeddings[reuse_rows[reused]]
    ok = np.ones(len(catalog), dtype=bool)
    ok[todo] = result.ok
    colours = _aligned_colours(catalog, previous, reuse_rows, todo, result, plan.info.image_size, batch_size, verbose)
    ok &= np.isfinite(colours.values).all(axis=1)  # a reused photo that can no longer be read
    embedded = assemble(
        catalog,
        embeddings[ok] if not ok.all() else embeddings,
        ok,
        [plan.skipped, result.failures, colours.failures],
        plan.info,
        colours=colours.values[ok],
        source=str(plan.source.absolute()),
    )
    removed = 0 if previous is None else int((~previous.catalog["product_id"].isin(catalog["product_id"])).sum())
    return _Built(embedded, ok, result, removed)


def _commit(plan: _Plan, built: _Built, generation: str, verbose: bool) -> tuple[str, bool]:
    """Save ``built`` as the new generation, its ann structure kept up to date; when nothing changed, only tidy up.

    Returns:
        ``(ann line, committed)``: what happened to the ann structure ("" when none), and whether a
        new generation was written.
    """
    index_dir = plan.index_dir
    status = plan.status[built.ok]
    unchanged = _nothing_changed(plan.previous, built.embedded, status, built.removed, plan.photos, index_dir)
    ann_how = "" if unchanged else _keep_ann(plan.previous, built.embedded, _first_uses(plan.reuse_rows), built.ok)
    plan.previous = None  # release the memory map before the old files are removed
    if unchanged:  # only tidy up: this run's extracted photos, an interrupted run's leftovers
        shutil.rmtree(plan.photos, ignore_errors=True)
        remove_unreferenced(index_dir)
        logger.info("nothing changed in %s: nothing committed", plan.source)
    else:
        save_index(with_stored_neighbors(built.embedded, verbose=verbose), index_dir, generation=generation)
    return ann_how, not unchanged


def _report(plan: _Plan, built: _Built, ann_how: str, committed: bool, seconds: float) -> BuildReport:
    """The :class:`BuildReport` of a run."""
    counts = pd.Series(plan.status[built.ok]).value_counts()
    embedded = built.embedded
    return BuildReport(
        candidates=len(embedded) + len(embedded.failures),
        indexed=len(embedded),
        skipped=len(embedded.failures),
        added=int(counts.get("added", 0)),
        updated=int(counts.get("updated", 0)),
        removed=built.removed,
        unchanged=int(counts.get("unchanged", 0)),
        embedded=int(built.result.ok.sum()),
        seconds=seconds,
        embed_seconds=built.result.seconds,
        ann=ann_how,
        committed=committed,
    )


@dataclass
class _Colours:
    """Colour signatures aligned with the catalog, and the photos they could not be computed for (or None)."""

    values: np.ndarray
    failures: pd.DataFrame | None


def _aligned_colours(
    catalog: pd.DataFrame,
    previous: EmbeddedCatalog | None,
    reuse_rows: np.ndarray,
    todo: np.ndarray,
    result: Any,
    image_size: int,
    batch_size: int,
    verbose: bool,
) -> _Colours:
    """``(len(catalog), N_BINS)`` signatures: new rows from this run, reused rows copied or computed."""
    from simrec.core.colour_signature import N_BINS, SIGNATURE_METHOD
    from simrec.pipeline.embedding import compute_colours

    colours = np.full((len(catalog), N_BINS), np.nan, dtype=np.float32)
    colours[todo] = result.colours
    reused = np.flatnonzero(reuse_rows >= 0)
    if not len(reused):
        return _Colours(colours, None)
    same_recipe = previous.meta.colour_signature in (None, SIGNATURE_METHOD)
    if previous.colours is not None and same_recipe:
        colours[reused] = previous.colours[reuse_rows[reused]]
        return _Colours(colours, None)
    logger.info("the index has no colour signatures: computing them for %d unchanged photos", len(reused))
    paths = catalog["path"].iloc[reused].tolist()
    colours[reused], failures = compute_colours(paths, image_size, batch_size=batch_size, verbose=verbose)
    return _Colours(colours, failures)


def _had_ann(index_dir: Path) -> bool:
    """Whether the index in ``index_dir`` has an ann structure (False when there is no readable index)."""
    try:
        return bool(read_meta(index_dir).ann)
    except (MissingFileError, IndexIntegrityError):
        return False


def _embed_function(engine: str, options: dict[str, Any]):
    """The function that embeds a list of files: same arguments and result as :func:`simrec.embed_images`."""
    if engine == "local":
        if options:
            raise InvalidArgumentError(
                f"{', '.join(sorted(options))} only apply to engine 'ray'", parameters=(*sorted(options), "engine")
            )
        return embed_images
    if engine == "ray":
        import functools

        from simrec.pipeline.ray_engine import embed_images_ray, import_ray

        import_ray()  # a missing Ray is reported before anything is written
        return functools.partial(embed_images_ray, **options)
    raise InvalidArgumentError(f"Expected engine 'local' or 'ray', got {engine!r}")


def _keep_ann(
    previous: EmbeddedCatalog | None, embedded: EmbeddedCatalog, reuse_rows: np.ndarray, ok: np.ndarray
) -> str:
    """Carry the previous index's ann structure over to ``embedded``; one line saying how, or ""."""
    if previous is None or previous.ann is None:
        return ""
    from simrec.search.approximate import read_ann, serialize, update_ann

    if len(embedded) < 2:
        embedded.set_ann(None, None)
        return "ann structure dropped: fewer than 2 items"
    new_row = np.cumsum(ok) - 1  # catalog row -> row of the embedded catalog
    old_to_new = np.full(len(previous), -1, dtype=np.int64)
    reused = np.flatnonzero((reuse_rows >= 0) & ok)  # a reused photo dropped now leaves the structure too
    old_to_new[reuse_rows[reused]] = new_row[reused]
    added = new_row[(reuse_rows < 0) & ok]
    index, info, how = update_ann(
        read_ann(previous.ann),
        previous.meta.ann,
        embedded.embeddings,
        embedded.neighbors._inv_norms,
        old_to_new,
        added,
    )
    embedded.set_ann(serialize(index), info)
    return how


def _existing_meta(index_dir: Path) -> IndexMeta | None:
    """``meta.json`` of the index already in ``index_dir``, or None for a new or unreadable one."""
    try:
        meta = read_meta(index_dir)
    except MissingFileError:
        return None
    except IndexIntegrityError as error:
        logger.warning("the index in %s cannot be read (%s); embedding everything", index_dir, error)
        return None
    if meta.made_outside:
        raise InvalidArgumentError(
            f"the index {index_dir} holds vectors from {meta.model!r} made outside simrec; "
            "pass rebuild=True to replace them with simrec's own",
            parameters=("rebuild",),
        )
    return meta


def _extractor_spec(
    previous: IndexMeta | None,
    index_dir: Path,
    model: str | None,
    weights: Any,
    seed: int | None,
    image_size: int | None,
    precision: str | None,
    preprocessing: str | None = None,
) -> dict[str, Any]:
    """Arguments of :func:`build_extractor`: the existing index's own unless asked otherwise."""
    if previous is None:
        return {
            "model": model or DEFAULT_BACKBONE,
            "weights": weights,
            "image_size": image_size,
            "seed": SEED if seed is None else seed,
            "precision": precision or "auto",
            "preprocessing": preprocessing,
        }
    # A model file given again is where the index's model is now (its checksum says whether it changed).
    moved = model if model is not None and is_model_file(model) else weights
    own_weights, own_seed = _own_weights(previous, index_dir, moved)
    asked = {
        "model": model and model_label(model),
        "weights": None if weights == "auto" else weights_name(weights, seed),
        "precision": None if precision in (None, "auto") else precision,
        "image_size": image_size,
    }
    own = {
        "model": previous.model,
        "weights": previous.weights,
        "precision": previous.precision,
        "image_size": previous.image_size,
    }
    different = [key for key, value in asked.items() if value is not None and value != own[key]]
    if different:
        details = ", ".join(f"{key} {asked[key]!r} (the index has {own[key]!r})" for key in different)
        raise InvalidArgumentError(
            f"the index {index_dir} was embedded differently: you asked for {details}; pass rebuild=True "
            "to embed everything again that way, or leave it out to keep the index's own",
            parameters=("rebuild",),
        )
    return {
        "model": own["model"],
        "weights": own_weights,
        "image_size": int(own["image_size"]),
        "seed": own_seed,
        "precision": own["precision"],
        "preprocessing": previous.preprocessing if is_model_file(previous.model) else None,
    }


def _own_weights(previous: IndexMeta, index_dir: Path, weights: Any) -> tuple[Any, int]:
    """The weights argument that rebuilds the index's extractor, or an error naming what is missing."""
    explicit_file = weights not in ("auto", "imagenet", "random", None)
    moved = Path(weights) if explicit_file else None
    own, seed = previous.weights_argument(moved)
    if own == "imagenet" and not imagenet_available(previous.model):
        raise MissingFileError(
            f"the index {index_dir} was embedded with {previous.model}'s ImageNet weights, which are not cached here "
            f"and cannot be downloaded: copy {backbone(previous.model).weights_file} into ~/.keras/models/ "
            "(or $KERAS_HOME/models/), or pass rebuild=True with other weights",
            parameters=("rebuild",),
        )
    return own, seed


def _check_same_model(previous: IndexMeta, info: ExtractorInfo, index_dir: Path) -> None:
    """Refuse an extractor that embeds differently from the index's own (its vectors could not be mixed)."""
    different = previous.differences(info, REUSE_KEYS)
    if different:
        raise InvalidArgumentError(
            f"the index {index_dir} was embedded differently ({'; '.join(different)}); pass rebuild=True "
            "to embed everything again",
            parameters=("rebuild",),
        )


@contextlib.contextmanager
def _full_disk_named(index_dir: Path):
    """Wherever the disk fills up (extracting, locking, saving), one message that names the index folder."""
    try:
        yield
    except DiskFullError as error:
        if error.os_error is None:
            raise
        raise no_room_error(index_dir, error.os_error, "the previous generation is unchanged") from error


@contextlib.contextmanager
def _removed_on_failure(path: Path):
    """Remove ``path`` (this run's extracted photos) when the block fails, and let the error through."""
    try:
        yield
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def _previous_index(index_dir: Path) -> EmbeddedCatalog | None:
    """The index already in ``index_dir``; None, with a warning, when it cannot be opened (everything is embedded)."""
    try:
        return load_index(index_dir, mmap=True)
    except IndexIntegrityError as error:
        logger.warning("the index in %s cannot be opened (%s); embedding everything", index_dir, error)
        return None


def _check_outside_source(source: Path, index_dir: Path) -> None:
    """Refuse an index folder inside the folder it indexes: its files would be scanned as photos."""
    if not source.is_dir():
        return
    real_source, real_index_dir = source.resolve(), index_dir.resolve()
    if real_index_dir == real_source or real_index_dir.is_relative_to(real_source):
        raise InvalidArgumentError(
            f"index_dir {index_dir} is inside the source folder {source}: the index's own files would be scanned as "
            f"photos and a new folder beside the labels changes them; choose a folder outside it, e.g. "
            f"index_dir={source.absolute().parent / (source.absolute().name + '-index')}",
            parameters=("index_dir",),
        )


def _check_writable(index_dir: Path) -> None:
    """Create ``index_dir`` if missing and write a test file in it, or a clear error (a full disk named as one)."""
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=index_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        if is_no_room(error):
            raise no_room_error(index_dir, error) from None
        raise NotWritableError(f"cannot write to the index folder {index_dir}: {error.strerror or error}") from None


def _match(catalog: pd.DataFrame, previous: EmbeddedCatalog | None) -> tuple[np.ndarray, np.ndarray]:
    """For each catalog row: the previous row to reuse (-1: embed) and added/updated/unchanged.

    A row is reused when the previous generation holds the same bytes (size and SHA-256),
    under its ``product_id`` (unchanged) or another one (a renamed or copied file: added or
    updated, but not embedded again: the same bytes give the same vector).
    """
    n = len(catalog)
    reuse = np.full(n, -1, dtype=np.int64)
    status = np.full(n, "added", dtype=object)
    if previous is None or "sha256" not in previous.catalog.columns:
        return reuse, status
    old = previous.catalog
    position = {pid: i for i, pid in enumerate(old["product_id"])}
    old_size, old_hash = old["size_bytes"].astype(np.int64).to_numpy(), old["sha256"].to_numpy()
    by_content: dict[tuple[int, str], int] = {}
    for i, key in enumerate(zip(old_size.tolist(), old_hash.tolist())):
        by_content.setdefault(key, i)
    for row, (pid, size, digest) in enumerate(zip(catalog["product_id"], catalog["size_bytes"], catalog["sha256"])):
        i = position.get(pid)
        if i is not None and old_size[i] == size and old_hash[i] == digest:
            reuse[row], status[row] = i, "unchanged"
            continue
        if i is not None:
            status[row] = "updated"
        reuse[row] = by_content.get((int(size), str(digest)), -1)
    return reuse, status


def _first_uses(reuse_rows: np.ndarray) -> np.ndarray:
    """``reuse_rows`` with each previous row reused only once (by its first row); the others -1.

    For the ann structure, which moves each previous vector to one new row.
    """
    first = reuse_rows.copy()
    seen = set()
    for row, old in enumerate(reuse_rows.tolist()):
        if old >= 0:
            if old in seen:
                first[row] = -1
            seen.add(old)
    return first


def _nothing_changed(
    previous: EmbeddedCatalog | None,
    embedded: EmbeddedCatalog,
    status: np.ndarray,
    removed: int,
    extracted: Path,
    index_dir: Path,
) -> bool:
    """Whether committing ``embedded`` would store what the folder already holds.

    Every product unchanged (same id, size and SHA-256), none removed, the same failures,
    the same catalog columns and values, the same photos (a zip's photos already in the
    photo store under their checksum), from the same source.
    """
    if previous is None or removed or not (status == "unchanged").all() or len(embedded) != len(previous):
        return False
    if previous.meta.source != embedded.meta.source:
        return False
    old, new = previous.catalog, embedded.catalog
    if list(old.columns) != list(new.columns) or not old["product_id"].equals(new["product_id"]):
        return False
    for column in new.columns:
        if column == "path":
            continue
        if [str(v) for v in old[column]] != [str(v) for v in new[column]]:
            return False
    inside = str(extracted.absolute()) + os.sep
    paths = [
        str((index_dir / object_name(digest, Path(path).suffix)).absolute()) if path.startswith(inside) else path
        for path, digest in zip(new["path"].astype(str), new["sha256"].astype(str))
    ]
    if paths != old["path"].astype(str).tolist():
        return False
    held = str(index_dir.absolute()) + os.sep
    if not all(os.path.isfile(path) for path in paths if path.startswith(held)):
        return False  # a photo gone from the folder: the commit puts it back
    old_failures, new_failures = previous.failures, embedded.failures
    return len(old_failures) == len(new_failures) and all(
        [str(v) for v in old_failures[c]] == [str(v) for v in new_failures[c]] for c in FAILURE_COLUMNS
    )
