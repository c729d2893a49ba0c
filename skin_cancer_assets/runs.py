"""What the run queue and the sensors know of runs: each job's kind and the statuses of a run not yet finished.

Each job tags its runs with its kind; every instance file lets one run of each kind be in
progress at a time and three runs in all, so two elections run one after the other and a
deploy finds a slot while an election and a monitoring run are in progress. A run without the
tag (an asset materialized from the UI's graph) counts only against the three.
"""

import dagster as dg

RUN_KIND = "skin_cancer/kind"
"""Run tag the instance files' run queue limits per kind of run."""
ELECTION, DEPLOY, MONITORING = "election", "deploy", "monitoring"
"""The kinds of run the instance files limit."""

UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
"""A sensor asks for no run of a job while one of these is on record."""
