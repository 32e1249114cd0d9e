"""The run's configuration seen from code: its schema (``schema.py``) and, for code outside a run (the
bench, the notebook, tests), the same composed config and the objects built from it (``compose.py``)."""
