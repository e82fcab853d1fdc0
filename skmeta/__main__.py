"""``python -m skmeta``: the classic example extended to many related tasks."""

import argparse

from ._demo import SHOTS, run_demo


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seed(text):
    value = int(text)
    if not 0 <= value < 2**32:
        # numpy's RandomState takes seeds of 32 bits
        raise argparse.ArgumentTypeError(
            f"must be between 0 and 2**32 - 1, got {value}")
    return value


def _non_negative_float(text):
    value = float(text)
    if not value >= 0.0 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"must be a finite number at least 0, got {text}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m skmeta",
        description="k-NN and logistic regression per task, one pooled "
        "logistic regression, MetaClassifier and k-NN on MetaEmbedding, on "
        "new tasks with a few labelled samples per class.",
    )
    parser.add_argument("--shots", type=_positive_int, nargs="+",
                        default=list(SHOTS),
                        help="labelled samples per class of each new task "
                        "(distinct values)")
    parser.add_argument("--train-tasks", type=_positive_int, default=200)
    parser.add_argument("--test-tasks", type=_positive_int, default=100)
    parser.add_argument("--task-spread", type=_non_negative_float, default=1.0,
                        help="how much tasks differ (0: identical)")
    parser.add_argument("--seed", type=_seed, default=42)
    args = parser.parse_args(argv)
    if len(set(args.shots)) != len(args.shots):
        parser.error(f"argument --shots: values must be distinct, got "
                     f"{' '.join(map(str, args.shots))}")
    run_demo(shots=args.shots, n_train_tasks=args.train_tasks,
             n_test_tasks=args.test_tasks, task_spread=args.task_spread,
             random_state=args.seed)


if __name__ == "__main__":
    main()
