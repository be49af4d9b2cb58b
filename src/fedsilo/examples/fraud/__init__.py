"""Federated fraud detection on Medicare providers: the fedsilo example.

Several sites (groups of states) hold claims aggregates of their own providers and may not
pool them. Each site trains a logistic regression on its own records; the federation server
averages the models (FedAvg) and evaluates every round on a test set it keeps. The modules:

- ``data``: the synthetic provider dataset, its schema and CSV loading;
- ``claims``: the public CMS-derived claims files, aggregated into the provider table;
  ``claims_fixture`` writes generated files in their layout;
- ``prepare``: feature scaling, the server's test split, site partitions, SMOTE, channels;
- ``model``: a logistic regression's parameters as the arrays the federation exchanges;
- ``client``: the site's client and its script-mode entry point;
- ``server_side``: the server's evaluation on its test set and the FedAvg strategy;
- ``baselines``: what pooling the data, or each site alone, would give;
- ``scoring``: the report's figures, their bootstrap intervals and the "always legitimate"
  baseline;
- ``plot`` and ``demo``: the end-to-end run on one machine and its report.
"""

from __future__ import annotations
