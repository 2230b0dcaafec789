"""Raw primitives with no safety net (wire codec, CSPRNG sampling, ring arithmetic).

Nothing here is part of the public API; protocols and stages build the safe layer on top.
"""
