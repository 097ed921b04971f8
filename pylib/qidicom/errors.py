"""Errors a user sees. Each names the file, field or JSON path and what is wrong."""


class QidicomError(Exception):
    """An input or conversion problem, with a message meant for the person running qidicom."""


class InputError(QidicomError):
    """A file could not be read, or is not what the conversion needs."""


class MetadataError(QidicomError):
    """The metadata JSON is malformed or breaks the schema; ``problems`` lists every issue."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []


class GeometryError(QidicomError):
    """An image grid does not match the reference series it must lie on."""
