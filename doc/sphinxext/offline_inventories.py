"""Intersphinx inventories built from the installed packages, offline.

The documentation is built on machines without internet access, where
intersphinx cannot download ``objects.inv`` from scikit-learn, NumPy or
joblib. This writes equivalent inventories by introspecting the installed
packages: every public class and function with the URL its project's
documentation gives it, plus the few glossary terms and labels that
scikit-learn docstrings we inherit refer to. Links still point to the
projects' online documentation.
"""

import importlib
import inspect
import pkgutil
import warnings
import zlib
from pathlib import Path

_HEADER = (
    "# Sphinx inventory version 2\n"
    "# Project: {project}\n"
    "# Version: {version}\n"
    "# The remainder of this file is compressed using zlib.\n"
)


def _public_objects(package, skip=()):
    """``(qualified name, role)`` of public classes and functions."""
    seen = set()
    root = importlib.import_module(package)
    modules = [root]
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts) or any(s in info.name for s in skip):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                modules.append(importlib.import_module(info.name))
        except Exception:  # optional dependencies of a submodule
            continue
    for module in modules:
        names = getattr(module, "__all__", None) or [
            n for n in dir(module) if not n.startswith("_")]
        for name in names:
            obj = getattr(module, name, None)
            if inspect.isclass(obj):
                role = "py:class"
            elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
                role = "py:function"
            else:
                continue
            full = f"{module.__name__}.{name}"
            if full not in seen:
                seen.add(full)
                yield full, role
        yield module.__name__, "py:module"


def write_inventory(path, project, version, entries):
    """Write ``entries`` = [(name, role, uri, display)] as an objects.inv."""
    lines = "".join(f"{name} {role} 1 {uri} {display}\n"
                    for name, role, uri, display in entries)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_HEADER.format(project=project, version=version).encode()
                     + zlib.compress(lines.encode()))
    return str(path)


def sklearn_inventory(path):
    import sklearn

    entries = []
    skip = ("tests", "externals", "experimental")  # experimental: import shims
    for name, role in _public_objects("sklearn", skip=skip):
        if role == "py:module":
            entries.append((name, role, f"api/{name}.html", "-"))
        else:
            entries.append((name, role,
                            f"modules/generated/{name}.html#{name}", "-"))
    for term in ("random_state", "n_jobs", "meta-estimator", "Glossary",
                 "estimator", "cross-validation estimator", "sample_weight",
                 "metadata routing", "transformer", "scorer"):
        anchor = term.replace(" ", "-")
        entries.append((term, "std:term", f"glossary.html#term-{anchor}", "-"))
    entries.append(("metadata_routing", "std:label",
                    "metadata_routing.html#metadata-routing", "Metadata Routing"))
    entries.append(("user_guide", "std:label", "user_guide.html", "User Guide"))
    # referred to by the inherited docstring of set_output (TaskScaler)
    entries.append(("df_output_transform", "std:label",
                    "modules/df_output_transform.html#df-output-transform",
                    "Pandas/Polars Output for Transformers"))
    entries.append(("sphx_glr_auto_examples_miscellaneous_plot_set_output.py",
                    "std:label",
                    "auto_examples/miscellaneous/plot_set_output.html"
                    "#sphx-glr-auto-examples-miscellaneous-plot-set-output-py",
                    "Introducing the set_output API"))
    return write_inventory(path, "scikit-learn", sklearn.__version__, entries)


def joblib_inventory(path):
    import joblib

    entries = [(name, role, f"generated/{name}.html#{name}", "-")
               for name, role in _public_objects("joblib", skip=("test",))
               if role != "py:module"]
    return write_inventory(path, "joblib", joblib.__version__, entries)


def numpy_inventory(path):
    import numpy

    entries = []
    for name in dir(numpy):
        obj = getattr(numpy, name)
        if name.startswith("_"):
            continue
        role = "py:class" if inspect.isclass(obj) else "py:function"
        entries.append((f"numpy.{name}", role,
                        f"reference/generated/numpy.{name}.html#numpy.{name}", "-"))
    entries.append(("numpy.random.RandomState", "py:class",
                    "reference/random/legacy.html#numpy.random.RandomState", "-"))
    return write_inventory(path, "NumPy", numpy.__version__, entries)
