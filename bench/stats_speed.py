"""CPU time of `compare` and of one live-monitoring update on a large run.

    .venv/bin/python bench/stats_speed.py [--tasks 100000] [--repetitions 5]

compare runs once when a run closes; the brief is "well under 1 s of CPU" for 100,000 tasks
× 5 repetitions. Data: task pass rates ~ Beta(0.6, 0.4), an A/A pair of runs (fixed seed).
"""

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments_app import stats


def runs(tasks, repetitions, seed=1):
    rng = random.Random(seed)
    variant, baseline = {}, {}
    for task in range(tasks):
        rate = rng.betavariate(0.6, 0.4)
        variant[f"task-{task}"] = stats.task_summary(sum(rng.random() < rate for _ in range(repetitions)), repetitions)
        baseline[f"task-{task}"] = stats.task_summary(sum(rng.random() < rate for _ in range(repetitions)), repetitions)
    return variant, baseline


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repetitions", type=int, default=5)
    arguments = parser.parse_args()
    for repetitions in sorted({1, arguments.repetitions}):
        variant, baseline = runs(arguments.tasks, repetitions)
        started = time.process_time()
        result = stats.compare(variant, baseline)
        elapsed = time.process_time() - started
        print(f"compare, {arguments.tasks:,} tasks × {repetitions}: {elapsed:.2f} s CPU ({result['test']})")
    state = stats.live_start(arguments.tasks)
    started = time.process_time()
    for _ in range(1000):
        state = stats.live_update(state, random.choice([-1, -0.2, 0, 0.2, 1]))
        stats.live_summary(state)
    print(f"live update + summary: {(time.process_time() - started):.3f} ms CPU each (mean over the first 1,000 tasks)")


if __name__ == "__main__":
    main()
