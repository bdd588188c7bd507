"""Value types: clocks, version vectors, CRDTs, the consistent-hash ring, histories, streams.

Pure data and functions over it (numpy at most): no engine, no Ray, no pyarrow, no pandas.
"""
