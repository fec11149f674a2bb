"""Make JupyterLab open the chapters (``chapters/*.py``, Jupytext py:percent) as notebooks on a double click.

``make lab`` runs this first. It writes the documented Jupytext setting (Document Manager → ``defaultViewers``:
``{"python": "Jupytext Notebook"}``) into the environment's JupyterLab ``settings/overrides.json``, keeping any other
override there; users can still change it in Settings → Settings Editor.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PLUGIN = "@jupyterlab/docmanager-extension:plugin"


def write_overrides(app_dir: Path) -> Path:
    """Add the Jupytext default viewer to ``<app_dir>/settings/overrides.json``; return the file's path."""
    path = app_dir / "settings" / "overrides.json"
    try:
        overrides = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        sys.exit(f"lab_settings: {path} is not valid JSON: fix or delete it, then run `make lab` again")
    viewers = overrides.setdefault(PLUGIN, {}).setdefault("defaultViewers", {})
    if viewers.get("python") != "Jupytext Notebook":
        viewers["python"] = "Jupytext Notebook"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(overrides, indent=2) + "\n")
    return path


if __name__ == "__main__":
    print(f"lab_settings: chapters/*.py open as notebooks ({write_overrides(Path(sys.prefix, 'share/jupyter/lab'))})")
