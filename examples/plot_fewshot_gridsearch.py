"""
================================================
Tuning a meta-learner with few-shot splits
================================================

:class:`~skmeta.model_selection.FewShotSplit` holds out whole tasks and gives
the training side a few samples of each: exactly the situation of a new
store or patient. Used as ``cv`` in :class:`~sklearn.model_selection.GridSearchCV`,
it tunes the base estimator's own penalty (``estimator__C``) and the transfer
strength (``gamma``) for that situation.

The data sit in a DataFrame with a string ``"store"`` column. A
:class:`~sklearn.compose.ColumnTransformer` scales the numeric columns and
passes the store through; :class:`~skmeta.MetaClassifier` reads it with
``task_column="store"``, which is what makes scorers task-aware.
"""

# %%
# A data frame with a task column
# -------------------------------
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skmeta import MetaClassifier
from skmeta.datasets import make_meta_classification
from skmeta.model_selection import FewShotSplit

X, y, tasks = make_meta_classification(
    n_tasks=60, n_samples_per_task=40, n_features=8, n_informative=3,
    n_redundant=2, task_spread=1.0, as_frame=True, random_state=0)
X = X.rename(columns={"task": "store"})
X["store"] = "store-" + X["store"].astype(str)
X.head()

# %%
# The pipeline
# ------------
numeric = [c for c in X.columns if c != "store"]
preprocess = ColumnTransformer(
    [("scale", StandardScaler(), numeric), ("store", "passthrough", ["store"])],
    verbose_feature_names_out=False,
).set_output(transform="pandas")
model = Pipeline([
    ("preprocess", preprocess),
    ("meta", MetaClassifier(LogisticRegression(), task_column="store")),
])

# %%
# Grid search over few-shot splits
# --------------------------------
# Each split holds out 20% of the stores and gives the model 5 samples per
# class of each; the score is the ROC AUC on the rest of their samples.
search = GridSearchCV(
    model,
    {"meta__gamma": [0.1, 1.0, 10.0], "meta__estimator__C": [0.1, 1.0]},
    cv=FewShotSplit(n_splits=5, n_shots=5, random_state=0),
    scoring="roc_auc",
)
search.fit(X, y, groups=X["store"])
print("best parameters:", search.best_params_)
print(f"best few-shot ROC AUC: {search.best_score_:.3f}")

# %%
# The whole table of results
results = pd.DataFrame(search.cv_results_)
results[["param_meta__gamma", "param_meta__estimator__C", "mean_test_score",
         "std_test_score"]].sort_values("mean_test_score", ascending=False)

# %%
# Zero-shot evaluation
# --------------------
# With ``n_shots=0`` the held-out stores contribute nothing to training and
# are predicted by the prior model (scikit-learn's
# :class:`~sklearn.model_selection.GroupKFold` gives the same kind of split,
# in fixed folds).
zero_shot = GridSearchCV(model, {"meta__gamma": [1.0]},
                         cv=FewShotSplit(n_splits=5, n_shots=0, random_state=0),
                         scoring="roc_auc").fit(X, y, groups=X["store"])
print(f"zero-shot ROC AUC: {zero_shot.best_score_:.3f}")
