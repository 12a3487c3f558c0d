"""``python -m jobpipe``: the same as the ``jobpipe`` command."""

from jobpipe.cli import run

run()
