"""Integer codes that select a datafit inside the kernels.

The hot kernels take plain arrays and branch on these small integers rather
than receiving compiled datafit objects: a kernel that takes a jitted function
or a jitclass as an argument misses numba's disk cache and recompiles in every
process (see DESIGN.md, "Compile time is user time").
"""

SQUARED = 0
"""Half squared error ``(y - z)**2 / 2``."""

LOGISTIC = 1
"""Binary log-loss with ``y`` in {0, 1}: ``log(1 + exp(z)) - y * z``."""

MULTINOMIAL = 2
"""Multinomial log-loss with ``y`` the class index: ``logsumexp(z) - z[y]``."""

POISSON = 3
"""Half Poisson deviance with log link: ``exp(z) - y * z + y * log(y) - y``."""
