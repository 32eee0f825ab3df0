"""One base class for every error neurodeploy reports to a user.

Every stage raises a subclass of :class:`NeurodeployError` for input it cannot use (a file, a
graph, a checkpoint, a dataset, an option). The one CLI wrapper (:func:`core.cli.run_cli`) turns
any of them into one line on stderr and exit code 2; anything else is a bug and keeps its
traceback. The subclasses are also ``ValueError``s, so ``except ValueError`` in user code that
predates this module keeps working.
"""

from __future__ import annotations


class NeurodeployError(ValueError):
    """Input neurodeploy cannot use; the message names the thing and the fix."""


class UserError(NeurodeployError):
    """A bad command-line argument or input file."""


class GraphError(NeurodeployError):
    """A graph that cannot be imported or executed as it stands (names the node and reason)."""


class DatasetError(NeurodeployError):
    """A dataset name, split or file that cannot be used; the message says what to do."""


class CheckpointError(NeurodeployError):
    """A checkpoint file that cannot be used (missing, truncated, foreign, wrong model)."""


class ExportError(NeurodeployError):
    """A trained model that cannot be written as NIR (unknown layout, unsupported layer)."""


class EnvironmentMissingError(NeurodeployError):
    """A second environment (the Lava one) is missing or broken; the message says how to fix."""


class ConfigError(NeurodeployError):
    """A model configuration that cannot be built (names the field and the valid values)."""
