"""Output files written aside: a command's JSON Lines outputs appear whole or not at all."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import TracebackType

from infra.errors import InputError
from schemas.codec import JsonLinesWriter


class OutputFiles:
    """JSON Lines files, each written aside (``.NAME.partial`` in the same folder) and renamed into
    place only when the run succeeded: a run that fails part-way leaves no output behind, not even an
    empty file, and never half of one; earlier outputs of the same names stay as they were."""

    def __init__(self, *paths: Path) -> None:
        self.paths = paths
        self.partials = tuple(path.with_name(f".{path.name}.partial") for path in paths)
        self._writers: list[JsonLinesWriter] = []

    def __enter__(self) -> tuple[JsonLinesWriter, ...]:
        """The writers, one per path, in order."""
        for path, partial in zip(self.paths, self.partials, strict=True):
            try:
                self._writers.append(JsonLinesWriter(partial))
            except OSError as error:
                self._discard()
                raise InputError(f"cannot write {path}: {error.strerror or error}") from None
        return tuple(self._writers)

    def __exit__(
        self, kind: type[BaseException] | None, _error: BaseException | None, _trace: TracebackType | None
    ) -> None:
        if kind is not None:
            self._discard()
            return
        for writer in self._writers:
            writer.close()
        for partial, path in zip(self.partials, self.paths, strict=True):
            partial.replace(path)

    def _discard(self) -> None:
        for writer in self._writers:
            writer.close()
        for partial in self.partials:
            # Not only a missing file: a folder that is a file (NotADirectoryError) or unreadable
            # must not turn the one-line error this cleans up after into a traceback.
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
