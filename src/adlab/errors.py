"""The one error type for mistakes a user can cause (bad data, bad config, bad checkpoint)."""


class AdlabError(Exception):
    """A user-caused problem. The message names the input and what was expected.

    Command-line entry points print it on one line and exit with status 2.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def excerpt(text: object, limit: int = 200) -> str:
    """Another library's message quoted inside an adlab line: its first non-empty line, cut at a word
    boundary with "..." when longer than `limit`, so that no message ends mid-word or mid-sentence unmarked."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    first = lines[0] if lines else type(text).__name__
    if len(first) <= limit:
        return first + (" ..." if len(lines) > 1 and not first.endswith((".", ":")) else "")
    cut = first[:limit].rsplit(" ", 1)[0] if " " in first[:limit] else first[:limit]
    return cut.rstrip(",;: ") + " ..."
