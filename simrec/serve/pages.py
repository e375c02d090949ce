"""The web page and the catalog's photos."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse

from simrec.serve import convertors  # noqa: F401  (registers {product_id:product_id})
from simrec.serve.state import ServedGeneration, get_generation

router = APIRouter()
STATIC = Path(__file__).parent / "static"


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    """The page: browse the catalog, click a product, or search with a photo."""
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/images/{product_id:product_id}", responses={404: {"description": "no such product, or it has no photo"}})
async def product_photo(
    product_id: str, generation: Annotated[ServedGeneration, Depends(get_generation)]
) -> FileResponse:
    """A catalog product's photo, with its content type.

    The product id is looked up in the catalog and only that row's photo file is served,
    so no path in the URL ever reaches the file system.
    \f
    ``async``: the lookup and one ``stat`` take microseconds, and ``FileResponse`` reads
    the file off the event loop.

    Raises:
        fastapi.HTTPException: 404: no such product, or it has no photo file.
    """
    path = generation.photo_path(product_id)
    if path is None or not path.is_file():
        raise HTTPException(404, f"no photo for product_id {product_id!r}: it is not in the catalog or has no file")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type)
