"""``python -m skmeta``: the classic example extended to many related tasks."""

import argparse

from ._demo import SHOTS, run_demo


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m skmeta",
        description="k-NN, per-task and pooled logistic regression against "
        "MetaClassifier on new tasks with a few labelled samples per class.",
    )
    parser.add_argument("--shots", type=int, nargs="+", default=list(SHOTS),
                        help="labelled samples per class of each new task")
    parser.add_argument("--train-tasks", type=int, default=200)
    parser.add_argument("--test-tasks", type=int, default=100)
    parser.add_argument("--task-spread", type=float, default=1.0,
                        help="how much tasks differ (0: identical)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    run_demo(shots=args.shots, n_train_tasks=args.train_tasks,
             n_test_tasks=args.test_tasks, task_spread=args.task_spread,
             random_state=args.seed)


if __name__ == "__main__":
    main()
