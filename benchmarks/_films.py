"""Studies of synthetic films as an upload receives them, shared by the pipeline benchmarks."""

from __future__ import annotations

import io

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage


def study_files(seed: int) -> list[SimpleUploadedFile]:
    """A four-view screening study (16-bit PNGs named by laterality and view); odd seeds
    carry a malignant lesion."""
    from ml.synthetic import screening_study

    files = []
    for film in screening_study(seed, malignant=seed % 2 == 1):
        buffer = io.BytesIO()
        PILImage.fromarray(film.pixels).save(buffer, format="PNG")
        name = f"{film.laterality}_{film.view}.png"
        files.append(SimpleUploadedFile(name, buffer.getvalue(), content_type="image/png"))
    return files
