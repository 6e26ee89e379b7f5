"""The one error type users see.

Anything the user can fix (a bad spec, an unknown stack, a busy port) raises PlinthError with a
headline and, where there is one, the fix. The CLI prints it on one line and exits 1; the
traceback is shown only with PLINTH_DEBUG=1.
"""


class PlinthError(Exception):
    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}; {self.fix}" if self.fix else self.message


def shown(value: object, limit: int = 80) -> str:
    """A value from a user's file as an error quotes it: repr (so a newline or a NUL cannot break
    the one line), and cut short past `limit` characters."""
    text = str(value)
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def one_line(text: str) -> str:
    """`text` as written if it prints on one line (a path, a key), else quoted like `shown`."""
    return text if text.isprintable() else repr(text)
