"""Summarise py-spy collapsed stacks (bench/run.py --profile, sampled without --idle, so on-CPU
threads only): the share of samples per frame, inclusive.

    python bench/profile_top.py PROFILE [--match experiments_app] [--top 30]
"""

import argparse
import re
from collections import Counter


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--match", default="", help="only frames whose text contains this")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    inclusive, total = Counter(), 0
    with open(args.profile) as profile:
        lines = profile.readlines()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        count = int(count)
        frames = stack.split(";")
        total += count
        for frame in {re.sub(r":\d+\)", ")", frame) for frame in frames}:
            inclusive[frame] += count
    print(f"{total} busy samples")
    for frame, count in inclusive.most_common():
        if args.match in frame:
            print(f"{100 * count / total:5.1f}%  {frame[:150]}")
            args.top -= 1
            if not args.top:
                break


if __name__ == "__main__":
    main()
