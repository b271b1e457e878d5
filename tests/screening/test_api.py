"""API: OpenAPI schema, token auth, case detail with images and AI results."""

from __future__ import annotations

import yaml
from django.urls import reverse
from rest_framework.authtoken.models import Token

from tests.factories import case_with_images


def test_the_openapi_schema_describes_every_endpoint(api, auditor):
    api.force_authenticate(auditor)
    response = api.get(reverse("api-schema"))
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    for path in (
        "/api/cases/",
        "/api/cases/{id}/",
        "/api/cases/{id}/reads/",
        "/api/studies/",
        "/api/model-versions/",
        "/api/model-versions/{id}/activate/",
    ):
        assert path in schema["paths"], path


def test_a_token_authenticates_like_a_session(api, radiologist):
    token = Token.objects.create(user=radiologist)
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get(reverse("api-case-list")).status_code == 200


def test_anonymous_api_calls_get_401_not_a_redirect(api):
    response = api.get(reverse("api-case-list"))
    assert response.status_code == 401


def test_case_detail_carries_images_and_ai_results(api, auditor):
    case = case_with_images(images=2, score=0.42)
    api.force_authenticate(auditor)
    body = api.get(reverse("api-case-detail", args=[case.pk])).json()
    assert body["ai_score"] == 0.42 and body["case_ai_result"]["status"] == "done"
    images = body["studies"][0]["images"]
    assert len(images) == 2
    assert all(i["ai_result"]["probability"] == 0.42 for i in images)
    assert api.get(images[0]["url"]).status_code == 200
    assert api.get(images[0]["ai_result"]["heatmap_url"]).status_code == 200


def test_16_bit_images_are_stretched_to_8_bits_for_the_browser(client, radiologist):
    import io

    import numpy as np
    from django.core.files.base import ContentFile
    from PIL import Image as PILImage

    from tests.factories import ImageFactory, png_bytes

    content = png_bytes(seed=4, size=64, bit16=True)
    image = ImageFactory(bit_depth=16, file=ContentFile(content, name="x.png"))
    client.force_login(radiologist)
    response = client.get(reverse("image-file", args=[image.pk]))
    shown = np.asarray(PILImage.open(io.BytesIO(response.content)))
    assert shown.dtype == np.uint8 and shown.max() == 255 and shown.min() == 0
