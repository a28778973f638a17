__version__ = "0.1.0"
# The official globus-compute-endpoint release whose commands, files and wire formats this one
# implements: `version` prints it first, for scripts that check the 4.x line.
OFFICIAL_VERSION = "4.19.0"
