"""Execute phase notebooks with papermill into a run folder (used by the study runner and the tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tckr.core import paths

KERNEL = "python3"


def execute_notebook(name: str, run_dir: str | Path, parameters: dict[str, Any] | None = None,
                     output: str | Path | None = None, progress: bool = False) -> Path:
    """Run ``notebooks/<name>.ipynb`` headless with ``parameters`` injected after its ``parameters``
    cell; the executed copy goes to ``<run_dir>/notebooks/<name>.ipynb`` (or ``output``)."""
    import papermill as pm  # lazy: optional heavy dependency (papermill), imported only when a notebook is executed

    src = paths.NOTEBOOKS / f"{name}.ipynb"
    if not src.is_file():
        known = sorted(p.stem for p in paths.NOTEBOOKS.glob("*.ipynb"))
        raise FileNotFoundError(f"no notebook {src}; notebooks: {', '.join(known)}")
    run_dir = paths.resolve(run_dir)
    out = Path(output) if output else run_dir / "notebooks" / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    params = {"run_dir": str(run_dir), **(parameters or {})}
    pm.execute_notebook(str(src), str(out), parameters=params, kernel_name=KERNEL, language="python",
                        cwd=str(paths.NOTEBOOKS), progress_bar=progress, log_output=False)
    return out
