"""The documentation site builds with `mkdocs build --strict` (no broken links), and generated pages are current."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import settings_reference


@pytest.mark.timeout(300)
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    assert done.returncode == 0, "\n".join(warnings) or done.stderr
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "zh" / "first-steps" / "index.html").exists()


def test_configuration_reference_is_up_to_date() -> None:
    page = settings_reference.PAGE
    assert page.read_text(encoding="utf-8") == settings_reference.render(), (
        f"{page.relative_to(ROOT)} is out of date: run .venv/bin/python scripts/settings_reference.py"
    )


def test_every_setting_is_described() -> None:
    from celeriac.config import SETTINGS

    missing = sorted(set(SETTINGS) - set(settings_reference.DESCRIPTIONS))
    assert not missing, f"add a description to scripts/settings_reference.py for: {', '.join(missing)}"


def test_celeriac_only_settings_are_those_celery_lacks() -> None:
    from celery.app.defaults import NAMESPACES, flatten

    from celeriac.config import SETTINGS

    celery_settings = {key for key, _ in flatten(NAMESPACES)}
    assert set(SETTINGS) - celery_settings == settings_reference.CELERIAC_ONLY
