"""The model zoo's cards and bundled weights, one folder per model (``NAME/card.yaml``,
``NAME/weights.safetensors``); see README.md here.

This folder is installed as the package data ``revgnn_dgl.zoo.cards`` (``setup.py`` maps it),
so an installed wheel and an editable checkout find the cards the same way. It holds no code.
"""
