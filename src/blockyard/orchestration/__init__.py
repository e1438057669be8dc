"""Orchestration: triggers, the scheduler, workers, the run queue and backfills.

    from blockyard.orchestration import runs, triggers, backfills, status
    from blockyard.orchestration.scheduler import Scheduler
    from blockyard.orchestration.worker import Worker

Submodules are imported on demand; importing this package imports nothing heavy
(the CLI imports `blockyard.orchestration.cli` at start-up). See docs/orchestration.md.
"""
