"""Default settings shared by every stage, kept in one place."""

from __future__ import annotations

IMAGE_SIZE = 224
"""Side of the square image a photo is decoded to when no backbone says otherwise (each backbone has its
own default, :attr:`simrec.core.backbones.Backbone.image_size`; 224 for ResNet50 and MobileNet)."""

COLOUR_WEIGHT = 0.15
"""The colour weight of a query that asks for none, on an index with colour signatures and exact search.

Chosen on real shop photos with real features (``benchmarks/quality.py``: 4,776 fashion-small
photos, ImageNet MobileNet v1 0.25): the largest gain in colour and in type-and-colour
precision@5 that costs at most 0.01 of type precision@5. 0 ranks by look alone, as before."""

BATCH_SIZE = 32
N_NEIGHBORS = 5
SEED = 0

MAX_IMAGE_PIXELS = 89_478_485
"""Images with more pixels than this are refused (decompression-bomb protection; Pillow's own default)."""

MAX_ZIP_ENTRY_BYTES = 512 * 1024**2
"""Largest uncompressed size accepted for one zip entry."""

MAX_ZIP_TOTAL_BYTES = 64 * 1024**3
"""Largest uncompressed size accepted for a whole zip."""

SEARCH_CHUNK_SIZE = 1024
"""Query rows scored at once by all-items search; bounds memory to chunk x n_items floats."""

SCRATCH_BYTES = 64 * 1024**2
"""Bound on the scratch memory of one block of an all-items search (queries x n_items)."""

DEMO_DIR = "simrec-demo"

DUPLICATE_THRESHOLD = 0.10
"""Largest cosine distance of a candidate duplicate pair when photos verify it.

On the tuning half of fashion-small, every planted copy lies within 0.10 of its original with
MobileNet 0.25 vectors, except copies at half the size of a 60 x 80 photo (up to 0.22; 15 of 40
above 0.10). Those are found by their pixel vectors instead (:data:`PIXEL_THRESHOLD`):
raising this bound to 0.20 would cost about 6x the time of ``simrec duplicates`` and 5x that of a
``distinct`` query (measured on 660 photos: ``docs/duplicates.md``)."""

PHOTO_DUPLICATE_THRESHOLD = 0.045
"""Largest difference (0 to 1) of a photo and its copy once aligned (:mod:`simrec.pipeline.thumbnails`).

Chosen on the tuning half of fashion-small, where 95% of the planted copies of each kind differ by
at most 0.041 (the largest 0.052) and the nearest look-alike products (one template in another
shade) from 0.039: ``benchmarks/duplicates.py`` and ``docs/duplicates.md``."""

VECTOR_DUPLICATE_THRESHOLD = 0.02
"""Largest cosine distance of a duplicate pair judged by the vectors alone (no photos to compare)."""

DUPLICATE_CANDIDATES = 10
"""Nearest other products by the network's vectors looked at for each product's duplicates."""

PIXEL_THRESHOLD = 0.02
"""Largest cosine distance of two photos' pixel vectors (:func:`simrec.pipeline.thumbnails.pixel_vectors`)
that makes them a candidate duplicate pair, whatever the network's vectors say.

On the tuning half of fashion-small, half-size copies lie within 0.012 of their originals this way
(their network vectors, up to 0.22), and 811 pairs of its 2,411 photos within 0.02: few pairs for
the photo check to verify (``benchmarks/duplicates.py --pixel-distances``)."""

PIXEL_CANDIDATES = 3
"""Nearest other products by pixel vector looked at for each product, as it is and mirrored."""

STORED_NEIGHBORS = 20
"""Nearest products stored for every product at each commit (``K``): id queries with ``k <= K`` at the
stored colour weight are answered from them without a scan (see ``docs/precomputed.md``)."""

STORE_NEIGHBORS_UP_TO = 50_000
"""Largest catalog whose neighbors a commit stores by default. The cost grows with the square of the
products: 126 s at 20,000 x 2048 on 2 AMD EPYC cores under load (``benchmarks/precompute.py``), so
about 13 minutes projected at 50,000; larger indexes store them when asked (``simrec neighbors``)."""
