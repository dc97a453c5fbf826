"""MkDocs hook: pages written alongside the site's own (beat, dashboard) join the user guide when present.

The site builds with --strict, where a nav entry to a missing page and a page missing from the nav
are both errors; listing these optional pages here keeps the build green before and after they exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

OPTIONAL_GUIDE_PAGES = [("Periodic tasks (beat)", "beat.md"), ("Dashboard", "dashboard.md")]


def on_config(config: Any) -> Any:
    docs = Path(config["docs_dir"])
    for section in config["nav"] or []:
        if isinstance(section, dict) and "User guide" in section:
            pages = section["User guide"]
            listed = {next(iter(entry.values())) for entry in pages if isinstance(entry, dict)}
            for title, path in OPTIONAL_GUIDE_PAGES:
                if (docs / path).exists() and path not in listed:
                    pages.append({title: path})
    return config
