"""Setuptools: metadata lives in setup.cfg; here only what setup.cfg cannot say.

The repository's top-level ``zoo/`` (model cards and bundled weights, browsable on the
repository page) is installed as the data package ``revgnn_dgl.zoo.cards``: in a wheel its files
are copied there, and an editable install maps the package to the checkout's ``zoo/``.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["revgnn_dgl", "revgnn_dgl.*"]) + ["revgnn_dgl.zoo.cards"],
    package_dir={"revgnn_dgl.zoo.cards": "zoo"},
)
