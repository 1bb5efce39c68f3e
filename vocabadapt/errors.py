"""The project's exception types.

Every error a user can cause (a bad config, a bad input file, a missing model) is one of these, with a
message that says what to change. The CLI turns them into a clean message and an exit code; anything
else is a bug and keeps its traceback.
"""


class VocabadaptError(Exception):
    """Base class of every user-facing error. `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(VocabadaptError):
    """The config file (or a --set override) is invalid. Holds every problem found, not just the first."""

    exit_code = 2

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        lines = [f"{source}: {len(self.problems)} problem(s) in the config:"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class InputError(VocabadaptError):
    """An input file or directory (corpus, tokenizer, model, QA set) is missing or malformed."""

    exit_code = 2


class StageError(VocabadaptError):
    """A pipeline stage failed for a reason that retrying will not fix (data or configuration)."""


class TransientError(VocabadaptError):
    """A failure worth retrying (an interrupted download); the download retries itself, not the stage."""


class RunLockedError(VocabadaptError):
    """Another live vocabadapt process holds the run directory."""

    exit_code = 3
