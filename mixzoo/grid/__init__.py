"""Ablation grids: one base recipe + axes -> validated runs -> results table and plot.

    from mixzoo.grid import load_grid, run_grid
    result = run_grid(load_grid("mqar-small"))        # == `mixzoo grid mqar-small`
    print(result.table)

See `spec.py` for the grid file, `runner.py` for the output layout, `executor.py` for
where runs execute.
"""
from .executor import DevicePoolExecutor, Executor, RunJob, SequentialExecutor, execute_job
from .expand import GridPoint, GridValidationError, expand_grid
from .results import read_results
from .runner import GridOutputExists, GridResult, run_grid
from .spec import GridSpec, GridSpecError, list_grids, load_grid

__all__ = ["GridSpec", "GridSpecError", "load_grid", "list_grids", "GridPoint",
           "GridValidationError", "expand_grid", "run_grid", "GridResult", "GridOutputExists",
           "Executor", "SequentialExecutor", "DevicePoolExecutor", "RunJob", "execute_job",
           "read_results"]
