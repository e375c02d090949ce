"""Serve one index over HTTP: a JSON API and a web page, with FastAPI on uvicorn.

``simrec serve INDEX_DIR`` runs :func:`create_app` under uvicorn. The index is opened
read-only and memory-mapped; nothing is ever written to its folder. Importing this
package imports FastAPI, so ``import simrec`` never does.
"""

from simrec.serve.app import create_app

__all__ = ["create_app"]
