"""An instance received over DICOM networking and kept on disk until its study is filed."""

from __future__ import annotations

from pathlib import Path


class SpooledInstance:
    """What the upload verb reads, named by its order on the association ("instance 3"),
    never by its UID, so the log and the audit trail carry no original identifier."""

    label = "instance"

    def __init__(self, path: Path, position: int) -> None:
        self.path, self.position = path, position

    @property
    def name(self) -> str:
        return f"{self.label} {self.position + 1}"

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def read(self) -> bytes:
        return self.path.read_bytes()
