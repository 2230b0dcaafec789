"""Protocol attacks against secfl's own secure sums (``secfl audit protocol``).

``run``: ``run_protocol_audit`` and ``format_report`` (the threat model is in its docstring); ``cases``:
every attempt by protocol; ``base``: ``Attempt`` and its helpers; ``harness``: the SecAgg / SecAgg+
instances the attempts drive; ``secagg``, ``instances``, ``clients``, ``faults``, ``he``: the attempts.
"""
