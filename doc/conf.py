"""Sphinx configuration of the skmeta documentation."""

import os
import sys
from datetime import date

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("sphinxext"))

from offline_inventories import (  # noqa: E402
    joblib_inventory,
    numpy_inventory,
    sklearn_inventory,
)

import skmeta  # noqa: E402

project = "skmeta"
author = "The skmeta developers"
copyright = f"{date.today().year}, {author}"
release = skmeta.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py"]
html_theme = "pydata_sphinx_theme"
html_theme_options = {
    "github_url": None,
    "navigation_with_keys": False,
}

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# Builds run without internet access: the inventories are generated from the
# installed packages (see sphinxext/offline_inventories.py); links still go to
# each project's online documentation.
_inventories = os.path.join(os.path.dirname(__file__), "_build", "inventories")
intersphinx_mapping = {
    "sklearn": ("https://scikit-learn.org/stable",
                sklearn_inventory(os.path.join(_inventories, "sklearn.inv"))),
    "numpy": ("https://numpy.org/doc/stable",
              numpy_inventory(os.path.join(_inventories, "numpy.inv"))),
    "joblib": ("https://joblib.readthedocs.io/en/latest",
               joblib_inventory(os.path.join(_inventories, "joblib.inv"))),
}

# The School example loads its data with skmeta.datasets.fetch_school, which
# reads the file named by SKMETA_SCHOOL_DATA: point it at the project's copy
# next to the repository, when there is one, so that the build never
# downloads it.
_school = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                       "shared", "data", "school.npz")
if os.path.isfile(_school):
    os.environ.setdefault("SKMETA_SCHOOL_DATA", os.path.normpath(_school))

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"plot_",
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("skmeta",),
    "backreferences_dir": "generated/backreferences",
    "remove_config_comments": True,
    "plot_gallery": os.environ.get("SKMETA_PLOT_GALLERY", "True"),
}
