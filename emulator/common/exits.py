"""Exit statuses of the ``etcdlab`` command, so CI can tell what happened."""

COMPLETED = 0  # done; for 'run': completed, and never two leaders of one lease at once
FAILED = 1  # an error ended the command
USAGE = 2  # bad options or input file: nothing was started
UNSAFE = 3  # 'run', 'election': two candidates led one lease at once
DIFFERS = 4  # 'run --fail-on differs': a claim differs from the measurement
# Stopped by a signal: 128 + its number, the shell's convention (130 SIGINT, 143 SIGTERM).

RUN = (
    f"Exit status: {COMPLETED} the run completed and the safety check held (never two "
    f"leaders of one lease at once); {FAILED} the run failed; {USAGE} bad options or "
    f"scenario file (nothing started); {UNSAFE} the safety check failed; {DIFFERS} a claim "
    "differs (only with --fail-on differs); 130/143 stopped by SIGINT/SIGTERM before the "
    "measurement ended (later, a signal is ignored). A run that failed or was stopped "
    "still writes its report, marked as such, with what it measured."
)
