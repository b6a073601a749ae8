"""The monitor's compiled one-pass path (monitor/_one_pass.pyx), built where a C compiler is
at hand; without one the install goes on and the monitor takes its general path for every
batch (BENCHMARKS.md: ~1.3x the CPU per event)."""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = cythonize(
    [Extension("monitor._one_pass", ["monitor/_one_pass.pyx"])],
    compiler_directives={"language_level": 3},
    quiet=True,
)
for extension in extensions:
    extension.optional = True  # cythonize does not carry the flag over

setup(ext_modules=extensions)
