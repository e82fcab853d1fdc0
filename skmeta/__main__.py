"""``python -m skmeta``: the classic example extended to many related tasks."""

import argparse

from ._demo import SHOTS, demo_rows, run_demo

# beyond these the demo's tasks no longer fit in memory (shots, rows) or
# their features overflow (spread); ten million rows of 20 features are 1.6 GB
MAX_SHOTS = 1000
MAX_TASK_SPREAD = 1e6
MAX_ROWS = 10_000_000


def _integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _count(low, high=None):
    def check(text):
        value = _integer(text)
        if value < low or (high is not None and value > high):
            bound = f"at least {low}" if high is None else (
                f"between {low} and {high}")
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value
    return check


def _seed(text):
    value = _integer(text)
    if not 0 <= value < 2**32:
        # numpy's RandomState takes seeds of 32 bits
        raise argparse.ArgumentTypeError(
            f"must be between 0 and 2**32 - 1, got {value}")
    return value


def _task_spread(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= MAX_TASK_SPREAD:
        raise argparse.ArgumentTypeError(
            f"must be between 0 and {MAX_TASK_SPREAD:g}, got {text}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m skmeta",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="k-NN and logistic regression per task, one pooled "
        "logistic regression, MetaClassifier and k-NN on MetaEmbedding, on "
        "new tasks with a few labelled samples per class.",
    )
    parser.add_argument("--shots", type=_count(1, MAX_SHOTS), nargs="+",
                        default=list(SHOTS),
                        help="labelled samples per class of each new task "
                        "(distinct values)")
    parser.add_argument("--train-tasks", type=_count(1), default=200,
                        help="tasks the meta-learners are trained on (40 "
                        "samples each)")
    parser.add_argument("--test-tasks", type=_count(1), default=100,
                        help="new tasks every approach learns from its shots")
    parser.add_argument("--task-spread", type=_task_spread, default=1.0,
                        help="how much tasks differ (0: identical)")
    parser.add_argument("--seed", type=_seed, default=42,
                        help="seed of the tasks drawn (printed)")
    args = parser.parse_args(argv)
    if len(set(args.shots)) != len(args.shots):
        parser.error(f"argument --shots: values must be distinct, got "
                     f"{' '.join(map(str, args.shots))}")
    rows = demo_rows(args.train_tasks, args.test_tasks, max(args.shots))
    if rows > MAX_ROWS:
        parser.error(
            f"--train-tasks {args.train_tasks} and --test-tasks "
            f"{args.test_tasks} (with --shots up to {max(args.shots)}) draw "
            f"{rows:,} samples, more than {MAX_ROWS:,}: ask for fewer tasks")
    run_demo(shots=args.shots, n_train_tasks=args.train_tasks,
             n_test_tasks=args.test_tasks, task_spread=args.task_spread,
             random_state=args.seed)


if __name__ == "__main__":
    main()
