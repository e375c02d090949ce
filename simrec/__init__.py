"""simrec: recommend products that look alike, from their photos.

A pre-trained image network (ResNet50 by default, or another backbone) turns each product
photo into a vector; a query's nearest neighbors by cosine distance are its recommendations.
TensorFlow and Matplotlib are imported only by the functions that need them, so ``import simrec``
is fast.
"""

from simrec.app.duplicates import DuplicateReport, find_duplicates
from simrec.app.evaluate import evaluate, label_from, sweep_colour_weight
from simrec.app.indexing import BuildReport, build_index
from simrec.app.plot import plot_colour_sweep, plot_recommendation_grid, plot_recommendations
from simrec.app.querying import recommend
from simrec.app.sync import SyncReport, sync_index
from simrec.app.synthetic import make_synthetic_catalog
from simrec.core.colour_signature import colour_signature
from simrec.core.errors import (
    DatabaseError,
    DiskFullError,
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
from simrec.core.index_meta import IndexMeta
from simrec.core.records import extractor_info
from simrec.core.version import __version__
from simrec.embedded_catalog import EmbeddedCatalog
from simrec.pipeline.catalog import load_catalog
from simrec.pipeline.embedding import EmbeddingResult, embed_images
from simrec.pipeline.images import load_image
from simrec.pipeline.model import build_extractor
from simrec.search.blend import ColourBlendNeighbors
from simrec.search.exact import CosineNeighbors
from simrec.storage.following import IndexFollower, follow_index
from simrec.storage.index_folder import load_index, save_index, save_vectors, verify_index

__all__ = [
    "BuildReport",
    "DatabaseError",
    "DiskFullError",
    "DuplicateReport",
    "EmbeddedCatalog",
    "EmbeddingResult",
    "ImageDecodeError",
    "IndexFollower",
    "IndexMeta",
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
    "SyncReport",
    "UnsafeArchiveError",
    "__version__",
    "build_extractor",
    "build_index",
    "colour_signature",
    "embed_images",
    "evaluate",
    "find_duplicates",
    "extractor_info",
    "follow_index",
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
    "sync_index",
    "verify_index",
]
