"""The JSON API: health, the product list, and similar products for a product or a photo."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from functools import partial
from typing import Annotated, Any

import numpy as np
import orjson
import pandas as pd
from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from simrec.app.distinct import distinct_neighbors
from simrec.app.duplicates import copy_test_for
from simrec.app.export import results_payload
from simrec.app.querying import QueryPlan, plan_query, recommend, stored_answer
from simrec.core.colour_signature import colour_signature
from simrec.core.defaults import COLOUR_WEIGHT, N_NEIGHBORS
from simrec.core.errors import ImageDecodeError
from simrec.pipeline.images import load_image
from simrec.serve import convertors  # noqa: F401  (registers {product_id:product_id})
from simrec.serve.schemas import ErrorDetail, Health, ProductPage, Similar, TextSimilar
from simrec.serve.state import ServedGeneration, Service, deadline_of, get_generation, get_service

router = APIRouter()
ServiceDep = Annotated[Service, Depends(get_service)]
GenerationDep = Annotated[ServedGeneration, Depends(get_generation)]
K = Annotated[int, Query(ge=1, description="number of similar products")]
ColourWeight = Annotated[
    float | None,
    Query(
        ge=0,
        le=1,
        description="0 ranks by look, 1 by the product's colour alone, between: a blend "
        f"(default: {COLOUR_WEIGHT:g} on an index with colour signatures and exact search, else 0)",
    ),
]
Distinct = Annotated[
    bool, Query(description="leave out duplicates (copies of the same photo) of the query and of better results")
]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "unknown product_id (the detail suggests close matches)"},
    422: {"model": ErrorDetail, "description": "k, offset or limit out of range"},
    503: {
        "model": ErrorDetail,
        "description": "busy: not answered within this server's time limit; retry after Retry-After seconds",
    },
}


@router.get("/health", response_model=Health)
async def health(generation: GenerationDep) -> dict[str, Any]:
    """Whether the index is open, which generation of it answers, its size, and what made its vectors."""
    return generation.describe()


@router.get("/api/products", response_model=ProductPage, responses={422: ERRORS[422]})
async def list_products(
    generation: GenerationDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    label: Annotated[str | None, Query(description="only products with this label")] = None,
) -> dict[str, Any]:
    """One page of the catalog, in index order, optionally of one label."""
    # async: a few list lookups, answered on the event loop without a trip to a worker thread
    total, rows = generation.product_rows(label, offset, limit)
    ids, labels = generation.ids, generation.label_of
    url = generation.image_url_of
    items = [{"product_id": ids[row], "label": labels[row], "image_url": url(row)} for row in rows]
    page = {
        "total": total,
        "offset": offset,
        "limit": limit,
        "labels": generation.labels,
        "items": items,
        "warning": generation.warning(),
    }
    return json_response(page)


@router.get("/api/products/{product_id:product_id}/similar", response_model=Similar, responses=ERRORS)
async def similar_to_product(
    product_id: str,
    request: Request,
    service: ServiceDep,
    generation: GenerationDep,
    k: K = N_NEIGHBORS,
    colour_weight: ColourWeight = None,
    distinct: Distinct = False,
) -> dict[str, Any]:
    """The k catalog products most like a catalog product (itself left out): ``simrec query --id``.
    \f
    A stored answer is looked up on the event loop; a scan, and the close matches of an
    unknown product, run in a worker thread.

    Raises:
        InvalidArgumentError: ``k`` or ``colour_weight`` out of range, or a colour weight above 0 on an index without
            colour signatures (answered 422).
        UnknownProductError: No such product (answered 404, with close matches).
        ServiceBusy: No answer came by the request's deadline (answered 503).
    """
    embedded = generation.embedded
    # every refusal before queueing, in plan_query's order; an unknown product's 404 (its close matches
    # compare the id with every product's) is found off the event loop
    plan_for = partial(
        plan_query,
        embedded,
        k,
        product_id=product_id,
        rows=generation.rows,
        colour_weight=colour_weight,
        look=generation.search,
    )
    plan = plan_for() if product_id in generation.rows else await run_in_threadpool(plan_for)
    row = plan.row
    query = {"product_id": product_id, "label": generation.label_of[row], "image_url": generation.image_url_of(row)}
    stored = stored_answer(embedded, plan.search, row, plan.n_neighbors, plan.colour_weight, distinct)
    if stored is not None:  # looked up in the generation's stored neighbors: no scan, no queue
        return json_response(_payload(generation, *stored, query))
    deadline = deadline_of(request, service)
    return await run_in_threadpool(_scan_product, service, generation, product_id, row, plan, query, distinct, deadline)


def _scan_product(
    service: Service,
    generation: ServedGeneration,
    product_id: str,
    row: int,
    plan: QueryPlan,
    query: dict[str, Any],
    distinct: bool,
    deadline: float,
) -> dict[str, Any] | Response:
    """The answer of :func:`similar_to_product` by a scan: ``recommend`` for distinct, else the batch queue.

    Raises:
        ServiceBusy: No answer came by ``deadline`` (answered 503).
    """
    if distinct:
        results = recommend(
            generation.embedded,
            product_id=product_id,
            n_neighbors=plan.n_neighbors,
            colour_weight=plan.colour_weight,
            search=plan.search,
            distinct=True,
        )
        return _answer(generation, results)
    distances, indices = service.batcher.query(generation, row, plan.n_neighbors, deadline, plan.colour_weight)
    return json_response(_payload(generation, distances, indices, query))


@router.post(
    "/api/similar",
    response_model=Similar,
    responses={
        409: {"model": ErrorDetail, "description": "the index holds vectors made outside simrec: no photo queries"},
        413: {"model": ErrorDetail, "description": "the upload is larger than this server's upload limit"},
        415: {"model": ErrorDetail, "description": "the file is not an image"},
        422: {"model": ErrorDetail, "description": "k out of range, or a damaged or too large image"},
        503: ERRORS[503],
    },
)
def similar_to_photo(
    request: Request,
    service: ServiceDep,
    generation: GenerationDep,
    image: Annotated[UploadFile, File(description="a photo")],
    k: K = N_NEIGHBORS,
    colour_weight: ColourWeight = None,
    distinct: Distinct = False,
) -> dict[str, Any]:
    """The k catalog products most like an uploaded photo: ``simrec query --image``.
    \f
    Raises:
        IndexIntegrityError: The index holds vectors made outside simrec (answered 409).
        fastapi.HTTPException: 415 or 422 for an upload that cannot be decoded.
        InvalidArgumentError: ``k`` above the number of products, ``colour_weight`` out of range, or a colour weight
            above 0 on an index without colour signatures (answered 422).
        ServiceBusy: No place to decode, or no answer, came by the request's deadline (answered 503).
    """
    embedded = generation.embedded
    plan = plan_query(embedded, k, photo=True, colour_weight=colour_weight, look=generation.search)  # before the upload
    k, colour_weight = plan.n_neighbors, plan.colour_weight
    deadline = deadline_of(request, service)
    pixels = _decode_upload(image, int(embedded.meta.image_size), service, deadline)
    if distinct:  # the photo's vector, then the answer recommend(distinct=True) gives
        vector = service.photo_batcher.embed(generation, pixels, deadline)
        colours = {"colours": colour_signature(pixels)} if colour_weight > 0 else {}
        test = copy_test_for(embedded)
        distances, indices = distinct_neighbors(test, plan.search, k, query_vector=vector, search_options=colours)
    else:
        distances, indices = service.photo_batcher.query(generation, pixels, k, colour_weight, deadline)
    query = {"product_id": None, "label": "", "image_url": None}  # as recommend() describes an in-memory photo
    return json_response(_payload(generation, distances, indices, query))


@router.get(
    "/api/search",
    response_model=TextSimilar,
    responses={
        409: {"model": ErrorDetail, "description": "the index's preset is not there or cannot be downloaded"},
        422: {"model": ErrorDetail, "description": "k out of range, or an index without a text tower"},
    },
)
def search_by_text(
    generation: GenerationDep,
    text: Annotated[str, Query(min_length=1, max_length=1000, description="words, e.g. red checked shirt")],
    k: K = N_NEIGHBORS,
    colour_weight: ColourWeight = None,
    distinct: Distinct = False,
) -> dict[str, Any]:
    """The k catalog products a text describes best: ``simrec query --text`` (SigLIP and CLIP indexes).
    \f
    Raises:
        InvalidArgumentError: ``k`` or ``colour_weight`` out of range, or an index whose backbone has no text tower or
            was embedded with untrained weights (answered 422).
        MissingFileError: The index's preset folder is not there (answered 409).
    """
    embedded = generation.embedded
    plan = plan_query(embedded, k, photo=True, colour_weight=colour_weight, look=generation.search)
    results = recommend(
        embedded,
        text=text,
        n_neighbors=plan.n_neighbors,
        colour_weight=plan.colour_weight,
        search=plan.search,
        distinct=distinct,
    )
    return _answer(generation, results)


def _decode_upload(upload: UploadFile, image_size: int, service: Service, deadline: float) -> np.ndarray:
    """Decode an upload with the same checks as a catalog photo (format, size, pixel count), through the gate."""
    # load_image reads files; the temporary copy lives in the system's temp folder, never the index's.
    handle, temporary = tempfile.mkstemp(prefix="simrec-upload-")
    try:
        with os.fdopen(handle, "wb") as copy:
            shutil.copyfileobj(upload.file, copy)
        with service.decode_gate.admit(temporary, deadline):
            return load_image(temporary, image_size)
    except ImageDecodeError as error:
        status = 415 if error.reason.startswith(("not an image", "file is empty")) else 422
        raise HTTPException(
            status, f"the uploaded file {upload.filename!r} cannot be used: {error.reason}; send a JPEG, PNG or WebP"
        ) from None
    finally:
        os.unlink(temporary)


def json_response(payload: dict[str, Any]) -> Response:
    """``payload`` as the JSON its route's response model describes, without validating it again.

    The routes build their answers from plain lists, exactly in the shape and order of
    :mod:`simrec.serve.schemas` (a test compares them with the models' own JSON), so the
    models only describe ``/docs``; validating every answer through them cost more than
    the rest of a product page. orjson writes it in a twentieth of the time ``json.dumps``
    takes, and the same bytes as ``json.dumps(payload, ensure_ascii=False,
    separators=(",", ":"))`` (tested): floats come as :func:`json_float` fragments.
    """
    return Response(orjson.dumps(payload), media_type="application/json")


def json_float(value: float) -> orjson.Fragment:
    """``value`` as Python's ``json`` writes it (``1e-07``, where orjson alone writes ``1e-7``).

    Raises:
        ValueError: ``value`` is NaN or infinite, which JSON cannot hold.
    """
    if not math.isfinite(value):
        raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
    return orjson.Fragment(float.__repr__(value))


def _payload(generation: ServedGeneration, distances: np.ndarray, indices: np.ndarray, query: dict) -> dict[str, Any]:
    """What :func:`_answer` gives for these neighbors, built from plain lists (no DataFrame on the hot path)."""
    ids, labels, url = generation.ids, generation.label_of, generation.image_url_of
    results = [
        {
            "rank": rank,
            "product_id": ids[i],
            "label": labels[i],
            "distance": json_float(distance),
            "image_url": url(i),
        }
        for rank, (i, distance) in enumerate(zip(indices.tolist(), np.asarray(distances, np.float64).tolist()), 1)
    ]
    return {"query": query, "results": results, "warning": generation.warning()}


def _answer(generation: ServedGeneration, results: pd.DataFrame) -> dict[str, Any]:
    """The JSON of ``simrec query``, with photo URLs instead of the server's file paths."""
    payload = results_payload(results)
    query = payload["query"]
    query.pop("path", None)
    if query.get("product_id") is not None:
        query["image_url"] = generation.image_url(query["product_id"])
    for result in payload["results"]:
        result.pop("path", None)
        result["image_url"] = generation.image_url(result["product_id"])
    return payload
