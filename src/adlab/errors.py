"""The one error type for mistakes a user can cause (bad data, bad config, bad checkpoint)."""


class AdlabError(Exception):
    """A user-caused problem. The message names the input and what was expected.

    Command-line entry points print it on one line and exit with status 2.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
