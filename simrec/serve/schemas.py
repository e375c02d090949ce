"""The JSON the service answers with, as pydantic models (they also describe ``/docs``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str = Field(description='"ok" while the index is open')
    generation: str | None = Field(
        description="the generation of the index answering (000003-1f2e3d4c); it changes "
        "when a re-index commits, without a restart"
    )
    items: int = Field(description="products in the index")
    model: str | None = Field(description="what made the vectors, e.g. resnet50")
    weights: str | None = Field(description="imagenet, random(seed=0), a weights file, or external")
    pretrained: bool = Field(description="False when the vectors come from untrained weights")
    warning: str | None = Field(description="shown beside every result when the weights are untrained")


class Product(BaseModel):
    product_id: str
    label: str
    image_url: str | None = Field(description="the product's photo, or null when the index holds no photo for it")


class ProductPage(BaseModel):
    total: int = Field(description="products matching the label filter")
    offset: int
    limit: int
    labels: list[str] = Field(description="every label in the index, for a filter")
    items: list[Product]
    warning: str | None


class QueryInfo(BaseModel):
    product_id: str | None = Field(description="the catalog product asked about, or null for a photo")
    label: str
    image_url: str | None = Field(default=None, description="its photo, for a catalog product")


class Result(BaseModel):
    rank: int = Field(description="1 = closest")
    product_id: str
    label: str
    distance: float = Field(description="cosine distance, 0 = same direction, at most 2")
    image_url: str | None


class Similar(BaseModel):
    query: QueryInfo
    results: list[Result]
    warning: str | None


class TextQueryInfo(BaseModel):
    text: str = Field(description="the words searched with")
    product_id: None = Field(default=None, description="always null: the query is no catalog product")
    label: str = ""


class TextSimilar(BaseModel):
    query: TextQueryInfo
    results: list[Result]
    warning: str | None


class ErrorDetail(BaseModel):
    detail: str = Field(description="what went wrong and what to do about it")
