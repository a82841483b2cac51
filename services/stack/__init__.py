"""The embedded stack: every component as a supervised local process (``lumenal up``).

Top layer: it starts services as processes and never imports their code.
"""
