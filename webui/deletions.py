"""What deleting an object takes with it, in sentences for the confirmation page, and what refuses it.

The refusals read the models' own predicates (the ones the delete actions check), so the page
says up front what the action would answer.
"""

from django.db.models import Count

from experiments_app.models import Run, Test, Variant


def plural(count, noun):
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def named(names, total):
    shown = ", ".join(f"“{name}”" for name in names)
    return shown + (f" and {total - len(names):,} more" if total > len(names) else "")


def application_deletion(application):
    experiments = application.experiments.count()
    runs = Run.objects.filter(experiment__application=application).count()
    tests = Test.objects.filter(run__experiment__application=application).count()
    goes = [
        f"its {plural(application.inference_steps.count(), 'inference step')} and {plural(application.tasks.count(), 'task')}",
        f"its {plural(experiments, 'experiment')}, with their {plural(runs, 'run')} and {plural(tests, 'test result')}",
        "its signing secret: deliveries signed with it stop being sent",
    ]
    running = list(application.running_experiments().values_list("name", flat=True)[:3])
    refusal = f"Experiment {named(running, len(running))} is running; cancel its run first." if running else None
    return {"goes": goes, "refusal": refusal}


def experiment_deletion(experiment):
    variants = Variant.objects.filter(experiment=experiment, parent__isnull=False).count()
    runs = experiment.runs.aggregate(runs=Count("pk"))["runs"]
    tests = Test.objects.filter(run__experiment=experiment).count()
    goes = [f"its baseline and {plural(variants, 'variant')}", f"its {plural(runs, 'run')} and {plural(tests, 'test result')}"]
    refusal = "The experiment is running; cancel its run first." if experiment.is_running() else None
    return {"goes": goes, "refusal": refusal, "keeps": "Its application, steps and tasks stay."}


def step_deletion(step):
    using = step.experiments.all()
    total = using.count()
    refusal = None
    if total:
        names = list(using.values_list("name", flat=True)[:3])
        refusal = f"The step is in the scope of {plural(total, 'experiment')} ({named(names, total)}); remove it there first."
    return {"goes": [], "refusal": refusal, "keeps": "Nothing else is deleted."}


def task_deletion(task):
    selecting = task.experiments.count()
    tests = Test.objects.filter(task=task).count()
    goes = []
    if selecting:
        goes.append(f"its place in the task selection of {plural(selecting, 'experiment')}")
    locking = list(task.locking_experiments().values_list("name", flat=True)[:3])
    refusal = f"The task is used by locked experiment {named(locking, len(locking))}; archive it first." if locking else None
    keeps = f"The {plural(tests, 'test result')} that ran it keep their own copy of its input and expected." if tests else None
    return {"goes": goes, "refusal": refusal, "keeps": keeps}
