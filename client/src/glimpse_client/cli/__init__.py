"""The ``glimpse`` command line (the ``cli`` extra: cliff and rich).

``exitcodes``, ``conflict``, ``progress`` and ``taskview`` render results, errors and progress without
cliff, so other front ends can reuse them; ``app`` and the command modules are the cliff part.
"""
