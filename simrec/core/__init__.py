"""The bottom layer: errors, defaults, argument checks, the colour signature, plain records and file safety.

Nothing here imports another part of simrec, nor any heavy library (numpy, pandas and
Pillow only), so every layer above may use it.
"""
