"""The JSON API: health, the product list, and similar products for a product or a photo."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, File, HTTPException, Query, UploadFile

from simrec.app.duplicates import copy_test_for, distinct_positions
from simrec.app.export import results_payload
from simrec.app.querying import recommend, results_frame
from simrec.core.defaults import N_NEIGHBORS
from simrec.core.errors import ImageDecodeError, InvalidArgumentError
from simrec.embedded_catalog import neighbors_for
from simrec.pipeline.images import load_image
from simrec.serve.schemas import ErrorDetail, Health, ProductPage, Similar
from simrec.serve.state import Service, get_service

router = APIRouter()
ServiceDep = Annotated[Service, Depends(get_service)]
K = Annotated[int, Query(ge=1, description="number of similar products")]
ColourWeight = Annotated[
    float, Query(ge=0, le=1, description="0 ranks by look, 1 by the product's colour alone, between: a blend")
]
Distinct = Annotated[
    bool, Query(description="leave out duplicates (copies of the same photo) of the query and of better results")
]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "unknown product_id (the detail suggests close matches)"},
    422: {"model": ErrorDetail, "description": "k, offset or limit out of range"},
}


@router.get("/health", response_model=Health)
def health(service: ServiceDep) -> dict[str, Any]:
    """Whether the index is open, its size, and what made its vectors."""
    return service.describe()


@router.get("/api/products", response_model=ProductPage, responses={422: ERRORS[422]})
def list_products(
    service: ServiceDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    label: Annotated[str | None, Query(description="only products with this label")] = None,
) -> dict[str, Any]:
    """One page of the catalog, in index order, optionally of one label."""
    total, page = service.products(label, offset, limit)
    items = [
        {"product_id": pid, "label": lab, "image_url": service.image_url(pid)}
        for pid, lab in zip(page["product_id"].astype(str), page["label"].astype(str))
    ]
    return {
        "total": total,
        "offset": offset,
        "limit": limit,
        "labels": service.labels,
        "items": items,
        "warning": service.warning(),
    }


@router.get("/api/products/{product_id:path}/similar", response_model=Similar, responses=ERRORS)
def similar_to_product(
    product_id: str,
    service: ServiceDep,
    k: K = N_NEIGHBORS,
    colour_weight: ColourWeight = 0.0,
    distinct: Distinct = False,
) -> dict[str, Any]:
    """The k catalog products most like a catalog product (itself left out): ``simrec query --id``."""
    embedded = service.embedded
    row = service.rows.get(product_id)
    if distinct:
        search = None if colour_weight > 0 else service.batcher.search
        results = recommend(
            embedded, product_id=product_id, n_neighbors=k, colour_weight=colour_weight, search=search, distinct=True
        )
        return _answer(service, results)
    if colour_weight > 0:
        return _answer(service, recommend(embedded, product_id=product_id, n_neighbors=k, colour_weight=colour_weight))
    if row is None or k > len(embedded) - 1:
        # recommend() raises the command line's own error: the close matches, or the largest k.
        return _answer(service, recommend(embedded, product_id=product_id, n_neighbors=k))
    distances, indices = service.batcher.query(row, k)
    catalog = embedded.catalog
    query = {"product_id": product_id, "path": catalog.at[row, "path"], "label": catalog.at[row, "label"]}
    return _answer(service, results_frame(catalog, distances, indices, query, embedded.warning))


@router.post(
    "/api/similar",
    response_model=Similar,
    responses={
        409: {"model": ErrorDetail, "description": "the index holds vectors made outside simrec: no photo queries"},
        413: {"model": ErrorDetail, "description": "the upload is larger than --max-upload-mb"},
        415: {"model": ErrorDetail, "description": "the file is not an image"},
        422: {"model": ErrorDetail, "description": "k out of range, or a damaged or too large image"},
    },
)
def similar_to_photo(
    service: ServiceDep,
    image: Annotated[UploadFile, File(description="a photo")],
    k: K = N_NEIGHBORS,
    colour_weight: ColourWeight = 0.0,
    distinct: Distinct = False,
) -> dict[str, Any]:
    """The k catalog products most like an uploaded photo: ``simrec query --image``."""
    embedded = service.embedded
    image_size = embedded.meta.get("image_size")
    if not image_size:
        raise HTTPException(
            409,
            f"this index holds vectors from {embedded.meta.get('model')!r}, made outside simrec, so it cannot "
            "embed photos; ask for a catalog product's similar products instead",
        )
    if k > len(embedded):
        raise InvalidArgumentError(
            f"Expected n_neighbors <= {len(embedded)} (products in the catalog), got n_neighbors = {k}"
        )
    if colour_weight > 0:
        neighbors_for(embedded, colour_weight)  # refuses an index without colour signatures, before the upload
    pixels = _decode_upload(image, int(image_size))
    if distinct:  # from the photo's 2k + 10 nearest
        fetch = min(len(embedded), 2 * k + 10)
        distances, indices = service.photo_batcher.query(pixels, fetch, colour_weight)
        kept = distinct_positions(copy_test_for(embedded), indices, k)
        distances, indices = distances[kept], indices[kept]
    else:
        distances, indices = service.photo_batcher.query(pixels, k, colour_weight)
    query = {"product_id": None, "label": ""}  # as recommend() describes an in-memory photo
    return _answer(service, results_frame(embedded.catalog, distances, indices, query, embedded.warning))


def _decode_upload(upload: UploadFile, image_size: int) -> np.ndarray:
    """Decode an upload with the same checks as a catalog photo (format, size, pixel count)."""
    # load_image reads files; the temporary copy lives in the system's temp folder, never the index's.
    handle, temporary = tempfile.mkstemp(prefix="simrec-upload-")
    try:
        with os.fdopen(handle, "wb") as copy:
            shutil.copyfileobj(upload.file, copy)
        return load_image(temporary, image_size)
    except ImageDecodeError as error:
        status = 415 if error.reason.startswith(("not an image", "file is empty")) else 422
        raise HTTPException(
            status, f"the uploaded file {upload.filename!r} cannot be used: {error.reason}; send a JPEG, PNG or WebP"
        ) from None
    finally:
        os.unlink(temporary)


def _answer(service: Service, results: pd.DataFrame) -> dict[str, Any]:
    payload = results_payload(results)
    query = payload["query"]
    if query.get("product_id") is not None:
        query["image_url"] = service.image_url(query["product_id"])
    for result in payload["results"]:
        result["image_url"] = service.image_url(result["product_id"])
    return payload
