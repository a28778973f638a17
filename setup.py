from setuptools import setup

# All metadata lives in setup.cfg; this file lets older tools build the project.
setup()
