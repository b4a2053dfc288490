"""`make run`'s process manager: honcho, given longer to stop than its fixed 5 seconds.

On Ctrl-C honcho sends SIGTERM to every process, then SIGKILL to whatever still runs 5 s later
(a constant, nickstenning/honcho#189). A Celery worker's warm shutdown (finish or hand back its
work, then exit) takes about 7 s even when idle on the filesystem broker, so honcho would kill
it and lose what it had in flight. This is honcho's own command line with a longer grace.

    python -m dashboard.processes start -f Procfile
"""

import sys

from honcho import command, manager

# Beyond this a process that ignored SIGTERM is killed.
STOP_GRACE_SECONDS = 30

if __name__ == "__main__":
    manager.KILL_WAIT = STOP_GRACE_SECONDS
    sys.exit(command.main())
