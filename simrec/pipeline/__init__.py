"""From photos to vectors: listing a source, unpacking a zip, decoding photos, the model and embedding.

The pipeline knows nothing of index folders (that is :mod:`simrec.storage`); Keras and
TensorFlow are imported inside the functions that need them.
"""
