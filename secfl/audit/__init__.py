"""Audits of secfl's own defenses: ``secfl audit privacy`` (``secfl.audit.privacy``) and ``secfl audit protocol``
(``secfl.audit.protocol``). Import the modules themselves; this package re-exports nothing.
"""
