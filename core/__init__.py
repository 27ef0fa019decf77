"""Pure modules that both the engine (``workers``) and the app (``experiments``) use.

What lives here imports no Django and nothing else of Wattlab, so either side may
import it without the two depending on each other: the engine's contract, the
coverage maths and verdicts, the trace codec and the metric patterns.
"""
