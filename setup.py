"""Setuptools shim: metadata lives in setup.cfg.

The model cards live in the top-level ``zoo/`` folder, which is installed as the
package ``revgnn_dgl._zoo`` so that an installed wheel finds them too.
"""
from setuptools import find_packages, setup

setup(
    package_dir={"revgnn_dgl._zoo": "zoo"},
    packages=find_packages(include=["revgnn_dgl", "revgnn_dgl.*"]) + ["revgnn_dgl._zoo"],
)
