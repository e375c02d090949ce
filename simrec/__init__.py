"""simrec: recommend products that look alike, from their photos.

A pre-trained ResNet50 turns each product photo into a 2048-d vector; a query's nearest
neighbours by cosine distance are its recommendations. TensorFlow and Matplotlib are
imported only by the functions that need them, so ``import simrec`` is fast.
"""

from simrec.build import BuildReport, build_index
from simrec.catalog import load_catalog
from simrec.colour import ColourBlendNeighbors, colour_signature
from simrec.embed import EmbeddingResult, embed_images
from simrec.embedded import EmbeddedCatalog
from simrec.errors import (
    ImageDecodeError,
    IndexIntegrityError,
    IndexLockedError,
    InvalidArgumentError,
    MissingDependencyError,
    MissingFileError,
    NotWritableError,
    SimrecError,
    UnknownProductError,
    UnsafeArchiveError,
)
from simrec.evaluate import evaluate, label_from, sweep_colour_weight
from simrec.images import load_image
from simrec.model import build_extractor, extractor_info
from simrec.neighbors import CosineNeighbors
from simrec.plot import plot_colour_sweep, plot_recommendation_grid, plot_recommendations
from simrec.recommend import recommend
from simrec.store import load_index, save_index, save_vectors, verify_index
from simrec.synthetic import make_synthetic_catalog

__version__ = "0.1.0"

__all__ = [
    "BuildReport",
    "EmbeddedCatalog",
    "EmbeddingResult",
    "ImageDecodeError",
    "IndexIntegrityError",
    "IndexLockedError",
    "InvalidArgumentError",
    "MissingDependencyError",
    "MissingFileError",
    "NotWritableError",
    "UnknownProductError",
    "ColourBlendNeighbors",
    "CosineNeighbors",
    "SimrecError",
    "UnsafeArchiveError",
    "__version__",
    "build_extractor",
    "build_index",
    "colour_signature",
    "embed_images",
    "evaluate",
    "extractor_info",
    "label_from",
    "load_catalog",
    "load_image",
    "load_index",
    "make_synthetic_catalog",
    "plot_colour_sweep",
    "plot_recommendation_grid",
    "plot_recommendations",
    "recommend",
    "save_index",
    "save_vectors",
    "sweep_colour_weight",
    "verify_index",
]
