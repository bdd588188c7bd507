"""Build the optional compiled hot paths: the per-node driver's (see raysim/engine/compiled.py),
the counter-based uniforms' (raysim/values/_mix.pyx) and the event log's row-group join
(raysim/log/_join.pyx).

Everything else about the package is in pyproject.toml. ``optional=True``: where the
extension cannot be built (no C compiler), the install goes on and raysim runs the
pure-Python driver, which gives the same event log.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "raysim.engine._hotpath",
            ["raysim/engine/_hotpath.pyx"],
            optional=True,
        ),
        Extension(
            "raysim.values._mix",
            ["raysim/values/_mix.pyx"],
            optional=True,
        ),
        Extension(
            "raysim.log._join",
            ["raysim/log/_join.pyx"],
            optional=True,
        ),
    ]
)
