"""Management commands: demo set-up and importing real studies from a folder."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from screening.choices import CaseStatus, Outcome, Role, SourceFormat
from screening.models import AuditEvent, Case, Image, PendingRole, Study
from screening.roles import roles_of
from tests.conftest import SHARED


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_bootstrap_demo_creates_a_user_per_role_with_working_passwords():
    output = run("bootstrap_demo", "--cases", "2", "--size", "128")
    lines = {
        line.split()[1]: line.split()
        for line in output.splitlines()
        if line.startswith("  ") and len(line.split()) == 3
    }
    for username, role in [
        ("radiologist", Role.RADIOLOGIST),
        ("admin", Role.ADMIN),
        ("auditor", Role.AUDITOR),
    ]:
        user = authenticate(username=username, password=lines[username][2])
        assert user is not None and user.groups.filter(name=role).exists()
    cases = Case.objects.all()
    assert cases.count() == 2
    assert all(
        c.is_synthetic and c.status == CaseStatus.AWAITING_AI and c.ai_score is None for c in cases
    )
    assert Image.objects.count() == 8
    assert set(Study.objects.values_list("source_format", flat=True)) == {SourceFormat.SYNTHETIC}


@pytest.mark.django_db
def test_bootstrap_demo_run_twice_adds_no_second_set_of_cases():
    run("bootstrap_demo", "--cases", "1", "--size", "96")
    run("bootstrap_demo", "--cases", "1", "--size", "96")
    assert Case.objects.count() == 1


@pytest.mark.django_db
def test_import_studies_groups_mini_mias_films_by_woman_with_outcomes(admin_user):
    folder = SHARED / "data" / "mini-mias"
    if not (folder / "labels.csv").exists():
        pytest.skip(f"mini-MIAS is not at {folder} (set MAMMO_SHARED_DIR)")
    output = run(
        "import_studies", str(folder), "--mini-mias", "--limit", "3", "--as-user", "admin1"
    )
    assert "Imported 3 studies" in output
    # Films mdb001-mdb006 belong to women 1-3; mdb001 and mdb002 carry benign masses.
    first = Study.objects.get(accession_number="MIAS-001")
    assert first.case is not None
    assert first.images.count() == 2 and first.case.outcome == Outcome.BENIGN
    assert {i.width for i in Image.objects.all()} == {1024}
    assert AuditEvent.objects.filter(action="study_uploaded").count() == 3


@pytest.mark.django_db
def test_import_studies_imports_each_sub_folder_as_a_study(tmp_path, admin_user):
    from tests.factories import png_bytes

    for accession, seeds in {"ACC-A": (1, 2), "ACC-B": (3,)}.items():
        (tmp_path / accession).mkdir()
        for seed in seeds:
            (tmp_path / accession / f"R_MLO_{seed}.png").write_bytes(png_bytes(seed))
    (tmp_path / "ACC-C").mkdir()
    (tmp_path / "ACC-C" / "broken.png").write_bytes(b"not a png")
    output = run("import_studies", str(tmp_path), "--as-user", "admin1")
    assert "Imported 2 studies; 1 refused" in output
    assert Study.objects.get(accession_number="ACC-A").images.count() == 2
    assert not Study.objects.filter(accession_number="ACC-C").exists()


@pytest.mark.django_db
def test_bootstrap_demo_users_act_at_once_and_their_roles_are_audited():
    """The install-time path: no second admin exists yet to confirm anything."""
    run("bootstrap_demo", "--cases", "0", "--size", "96")
    radiologist = get_user_model().objects.get(username="radiologist")
    assert roles_of(radiologist) == {"radiologist"} and not PendingRole.objects.exists()
    granted = AuditEvent.objects.filter(action="roles_changed", actor_name="command line")
    assert granted.count() == 5
    assert granted.get(object_id=str(radiologist.pk)).detail["roles_after"] == ["radiologist"]
