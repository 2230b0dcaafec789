"""Integrations of secfl into other engines (``secfl.integrations.flower``: the optional ``secfl[flower]``)."""
