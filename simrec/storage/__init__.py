"""The index folder: its format, the one commit point, loading, verifying, and the writer lock.

Storage turns an :class:`simrec.EmbeddedCatalog` into files and back; it never runs a model.
"""
