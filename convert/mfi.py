"""``python -m convert.mfi``: the command line the README has always shown for the certificate.

The certificate runs the deployed graph on the event simulator for its measured column, so it
lives in the top layer (:mod:`targets.mfi`); this module only keeps the old command line
working. It is the one upward import in the code base, declared as such in the import-linter
contract (pyproject.toml, ``[tool.importlinter]``).
"""

import sys

from core.cli import run_cli

if __name__ == "__main__":
    # Only when run as the command: importing convert.mfi as a module must not load the top
    # layer (targets) into the convert layer.
    from targets.mfi import main

    sys.exit(run_cli("convert.mfi", main))
