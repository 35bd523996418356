"""User-facing errors.

`NeuFaceInputError` subclasses `SystemExit` so that `ns-train` (and every other entry point) stops
with the one-line message alone, without a traceback, and exits non-zero. Tests catch it by type.
"""


class NeuFaceInputError(SystemExit):
    """Bad user input (missing file, wrong key, size mismatch, unreadable image)."""

    def __init__(self, path, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"neuface-ns: {path}: {problem}")


class TrainingDivergedError(SystemExit):
    """The loss became NaN / inf: stop with one line instead of writing a broken checkpoint."""


class ConfigError(SystemExit):
    """An inconsistent configuration (e.g. from command-line flags): one line, no traceback."""

    def __init__(self, problem: str):
        self.problem = problem
        super().__init__(f"neuface-ns: configuration: {problem}")
