"""Nearest-neighbor search over vectors: exact cosine, a blend of look and colour, and approximate (faiss).

Search knows arrays only: no index folders, no models. faiss is imported only by
:mod:`simrec.search.approximate`, inside the functions that need it.
"""
