import os

from celery import Celery, bootsteps, signals
from celery.beat import EmbeddedService
from click import Option

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
# Django's system checks run in the web process and in `manage.py migrate`; run again at worker
# start they import the whole URLconf (API, pages, admin), about 15 MB a worker never uses.
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")

app = Celery("dashboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class BeatThread(bootsteps.StartStopStep):
    """`celery worker --beat-thread`: the beat scheduler as a thread of this worker.

    Celery's own `--beat` forks a process for it, a whole interpreter's worth of memory to wake
    the sweeper every few seconds; celery's threaded scheduler does the same in this process."""

    label = "BeatThread"
    conditional = True

    def __init__(self, worker, beat_thread=False, **kwargs):
        self.enabled = beat_thread
        super().__init__(worker, **kwargs)

    def create(self, worker):
        return EmbeddedService(worker.app, thread=True, schedule_filename=worker.schedule_filename)


app.user_options["worker"].add(Option(["--beat-thread"], is_flag=True, default=False, help="Run the beat scheduler as a thread."))
app.steps["worker"].add(BeatThread)


worker_main_process = {}


@signals.worker_init.connect
def remember_the_worker_main_process(**kwargs):
    worker_main_process["pid"] = os.getpid()


@signals.worker_process_init.connect
def leave_the_parents_process_group(**kwargs):
    """Process managers (honcho, foreman) stop a process by signalling its whole group. A prefork
    child must hear only from its parent, which lets it finish or hand back its task on a warm
    shutdown; it still dies with its parent (celery sets PDEATHSIG). With `--pool solo` this
    signal comes in the main process, which stays where its manager put it."""
    if os.getpid() != worker_main_process.get("pid"):
        os.setpgid(0, 0)
