"""Decode photo files into batches of model-ready pixels, ahead of the model.

Two engines give the same arrays, in the same order, with the same per-file failures:

* ``"threads"``: a thread pool (Pillow releases the GIL while it decodes); best on one or
  two cores and for small catalogs, where starting processes costs more than it gains;
* ``"processes"``: a pool of processes, each writing decoded ``uint8`` pixels straight into
  shared memory that the model reads, so nothing is pickled but file names and reasons.
  Decoding then scales with the cores instead of contending for the GIL.

``"auto"`` picks processes for catalogs of at least :data:`PROCESS_MIN_IMAGES` photos on
machines with more than two cores, threads otherwise. A fixed number of batches is decoded
ahead of the model, so memory stays flat however large the catalog. A decoding process
that dies (a crash inside an image decoder, the out-of-memory killer) is reported: the
files of its batch are listed as failures with that reason, a new pool takes over, and
the run goes on.

With ``colours=True`` each photo's colour signature (:mod:`simrec.core.colour_signature`) is computed by
the same worker from the same decoded pixels, so the colour costs no second decode.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import shared_memory

import numpy as np

from simrec.core.colour_signature import N_BINS, colour_signature
from simrec.core.crashpoints import crash_point
from simrec.core.errors import ImageDecodeError, InvalidArgumentError
from simrec.core.records import printable_path
from simrec.core.validation import check_int
from simrec.pipeline.images import load_image

logger = logging.getLogger(__name__)

DECODERS = ("auto", "threads", "processes")
PROCESS_MIN_IMAGES = 1000
MAX_THREADS = 8  # more threads contend for the GIL and get slower
WORKER_DIED = "the decoding process died while reading this file or one beside it (decoder crash or out of memory)"

Batch = tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, str, str]]]


def choose_decoder(decoder: str, n_images: int, n_workers: int | None = None) -> tuple[str, int]:
    """The engine and worker count that ``decoder`` means for ``n_images`` photos here.

    Raises:
        InvalidArgumentError: Unknown ``decoder`` or a worker count below 1.
    """
    if decoder not in DECODERS:
        raise InvalidArgumentError(f"Expected decoder in {DECODERS}, got {decoder!r}")
    if n_workers is not None:
        n_workers = check_int(n_workers, "n_workers", 1)
    cores = os.cpu_count() or 1
    if decoder == "auto":
        decoder = "processes" if cores > 2 and n_images >= PROCESS_MIN_IMAGES else "threads"
    if n_workers is None:
        n_workers = cores if decoder == "processes" else min(MAX_THREADS, cores)
    return decoder, n_workers


def decoded_batches(
    paths: list[str],
    image_size: int,
    batch_size: int,
    *,
    decoder: str = "auto",
    n_workers: int | None = None,
    prefetch: int = 2,
    colours: bool = False,
) -> Iterator[Batch]:
    """Yield ``(row indices, pixels, colours, failures)`` per batch of ``paths``, in order.

    ``pixels`` is ``(len(indices), image_size, image_size, 3)`` uint8; ``colours`` (the colour signatures) is
    ``(len(indices), N_BINS)`` float32 when ``colours=True``, else ``(len(indices), 0)``;
    ``failures`` holds ``(path, reason, "decode")`` for the files that could not be read.

    Raises:
        InvalidArgumentError: Unknown ``decoder`` or a worker count below 1 (before the first batch).
    """
    decoder, n_workers = choose_decoder(decoder, len(paths), n_workers)
    if decoder == "threads":
        yield from _thread_batches(paths, image_size, batch_size, n_workers, prefetch, colours)
        return
    try:
        yield from _process_batches(paths, image_size, batch_size, n_workers, prefetch, colours)
    except _ProcessesUnavailable as unavailable:
        logger.warning("decoding processes cannot start here (%s); decoding with threads instead", unavailable.reason)
        rest = paths[unavailable.begin :]
        threads = min(MAX_THREADS, n_workers)
        for indices, pixels, batch_colours, failures in _thread_batches(
            rest, image_size, batch_size, threads, prefetch, colours
        ):
            yield indices + unavailable.begin, pixels, batch_colours, failures


class _ProcessesUnavailable(Exception):
    """Not one batch could be decoded by a process: the pool cannot start in this program."""

    def __init__(self, begin: int, reason: str) -> None:
        super().__init__(reason)
        self.begin, self.reason = begin, reason


def _decode(path: str, image_size: int, colours: bool = False) -> tuple[np.ndarray, np.ndarray] | ImageDecodeError:
    try:
        pixels = load_image(path, image_size)
    except ImageDecodeError as error:
        return error
    except MemoryError:
        return ImageDecodeError(path, "not enough memory to decode")
    return pixels, (colour_signature(pixels) if colours else np.zeros(0, np.float32))


def _thread_batches(
    paths: list[str], image_size: int, batch_size: int, workers: int, prefetch: int, colours: bool
) -> Iterator[Batch]:
    pending: deque[tuple[int, list[Future]]] = deque()
    width = N_BINS if colours else 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="simrec-decode") as pool:
        try:
            starts = iter(range(0, len(paths), batch_size))

            def submit_next() -> None:
                begin = next(starts, None)
                if begin is not None:
                    chunk = paths[begin : begin + batch_size]
                    pending.append((begin, [pool.submit(_decode, p, image_size, colours) for p in chunk]))

            for _ in range(prefetch + 1):
                submit_next()
            while pending:
                begin, futures = pending.popleft()
                submit_next()
                indices, arrays, colour_rows, failures = [], [], [], []
                for offset, future in enumerate(futures):
                    value = future.result()
                    if isinstance(value, ImageDecodeError):
                        failures.append((printable_path(value.path), value.reason, "decode"))
                    else:
                        indices.append(begin + offset)
                        arrays.append(value[0])
                        colour_rows.append(value[1])
                pixels = np.stack(arrays) if arrays else np.zeros((0, image_size, image_size, 3), np.uint8)
                batch_colours = np.stack(colour_rows) if colour_rows else np.zeros((0, width), np.float32)
                yield np.asarray(indices, dtype=np.int64), pixels, batch_colours, failures
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _decode_into(
    block_name: str, colour_name: str | None, paths: list[str], first: int, image_size: int
) -> dict[int, tuple[str, str]]:
    """In a worker process: decode ``paths`` into slots ``first, first + 1, ...`` of shared blocks."""
    block = _attach(block_name)
    colour_block = _attach(colour_name) if colour_name else None
    failures: dict[int, tuple[str, str]] = {}
    try:
        count = first + len(paths)
        slots = np.ndarray((count, image_size, image_size, 3), np.uint8, buffer=block.buf)
        colours = np.ndarray((count, N_BINS), np.float32, buffer=colour_block.buf) if colour_block else None
        for offset, path in enumerate(paths):
            crash_point(f"decode:{os.path.basename(path)}")
            value = _decode(path, image_size, colours is not None)
            if isinstance(value, ImageDecodeError):
                failures[first + offset] = (printable_path(value.path), value.reason)
                continue
            slots[first + offset] = value[0]
            if colours is not None:
                colours[first + offset] = value[1]
        del slots, colours
    finally:
        block.close()
        if colour_block:
            colour_block.close()
    return failures


def _attach(name: str) -> shared_memory.SharedMemory:
    """Open a block the parent owns and unlinks.

    A worker started by ``spawn`` shares the parent's resource tracker, where the block is
    already registered once; registering it again there changes nothing.
    """
    return shared_memory.SharedMemory(name=name)


def _process_batches(
    paths: list[str], image_size: int, batch_size: int, workers: int, prefetch: int, colours: bool
) -> Iterator[Batch]:
    item = image_size * image_size * 3
    n_slots = prefetch + 1
    blocks = [shared_memory.SharedMemory(create=True, size=max(1, batch_size * item)) for _ in range(n_slots)]
    width = N_BINS if colours else 0
    colour_blocks = [
        shared_memory.SharedMemory(create=True, size=batch_size * N_BINS * 4) for _ in range(n_slots if colours else 0)
    ]
    context = multiprocessing.get_context("spawn")  # never fork a process that runs a model
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    pending: deque[tuple[int, int, list[str], list[Future]]] = deque()
    starts = iter(enumerate(range(0, len(paths), batch_size)))

    def submit(slot: int, chunk: list[str]) -> list[Future]:
        step = max(1, math.ceil(len(chunk) / workers))
        names = blocks[slot].name, colour_blocks[slot].name if colours else None
        return [
            pool.submit(_decode_into, *names, chunk[i : i + step], i, image_size) for i in range(0, len(chunk), step)
        ]

    def submit_next() -> None:
        following = next(starts, None)
        if following is not None:
            number, begin = following
            chunk = paths[begin : begin + batch_size]
            pending.append((begin, number % n_slots, chunk, submit(number % n_slots, chunk)))

    def restart() -> None:
        nonlocal pool
        pool.shutdown(wait=False, cancel_futures=True)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)

    decoded_any = False
    try:
        for _ in range(n_slots):
            submit_next()
        while pending:
            begin, slot, chunk, futures = pending.popleft()
            errors = _gather(futures)
            if errors is None:  # a worker died: try this batch again alone, to tell who it was
                restart()
                errors = _gather(submit(slot, chunk))
                if errors is None and not decoded_any:
                    raise _ProcessesUnavailable(begin, "a decoding process died before decoding anything")
                if errors is None:
                    restart()
                    errors = {offset: (printable_path(path), WORKER_DIED) for offset, path in enumerate(chunk)}
                for i, (other_begin, other_slot, other_chunk, _) in enumerate(pending):
                    pending[i] = (other_begin, other_slot, other_chunk, submit(other_slot, other_chunk))
            decoded_any = True
            good = [offset for offset in range(len(chunk)) if offset not in errors]
            view = np.ndarray((len(chunk), image_size, image_size, 3), np.uint8, buffer=blocks[slot].buf)
            pixels = view[good]  # a copy: the block is refilled by the next submission
            del view
            batch_colours = np.zeros((len(good), 0), np.float32)
            if colours:
                colour_view = np.ndarray((len(chunk), width), np.float32, buffer=colour_blocks[slot].buf)
                batch_colours = colour_view[good]
                del colour_view
            failures = [(path, reason, "decode") for _, (path, reason) in sorted(errors.items())]
            submit_next()
            yield np.asarray([begin + offset for offset in good], dtype=np.int64), pixels, batch_colours, failures
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for block in blocks + colour_blocks:
            block.close()
            block.unlink()


def _gather(futures: list[Future]) -> dict[int, tuple[str, str]] | None:
    """The failures of one batch's futures, or None when a worker process died."""
    errors: dict[int, tuple[str, str]] = {}
    try:
        for future in futures:
            errors.update(future.result())
    except BrokenProcessPool:
        return None
    return errors
