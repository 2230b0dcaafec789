"""Raw primitives with no safety net: wire frames and field codec, CSPRNG sampling, randomness
sources, the ChaCha20 keystream under them (``keystream``: counter limits), ring arithmetic, AES-CTR
mask expansion, Shamir sharing, key agreement / AEAD / signatures.

Nothing here is part of the public API; protocols and stages build the safe layer on top.
"""
