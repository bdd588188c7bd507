"""The protocol API: the bases a protocol derives from, the contexts it acts through, the registry.

Importing it loads neither Ray, pyarrow, pandas nor the engine.
"""
