"""The local runtime: moto, the Claude stand-in, API Gateway's emulation, the demo (README: Try it; docs/local.md).

The Lambda and container code is not a package of this checkout's root: the Makefile puts ``lambda_src`` and
``container_src`` on ``PYTHONPATH``, and so does importing this package, so that ``python -m local.serve``
from the repository root runs as written, without the Makefile.
"""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
# In PYTHONPATH's order (lambda_src first), ahead of site-packages as PYTHONPATH would be.
for _part in reversed(("lambda_src", "container_src")):
    if str(_ROOT / _part) not in sys.path:
        sys.path.insert(0, str(_ROOT / _part))
